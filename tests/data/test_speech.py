"""espeak-ng synthesis: the shared front of every dataset that speaks."""
import numpy as np
import pytest

from mmjax import errors
from mmjax.data import speech


def test_speak_is_deterministic_trimmed_and_scaled():
  voice = speech.Voice("m3", 160, 50)
  clip = speech.speak("seven", voice, 8000)
  again = speech.speak("seven", voice, 8000)
  np.testing.assert_array_equal(clip, again)
  assert clip.dtype == np.float32 and 0.2 * 8000 < len(clip) < 1.0 * 8000  # One word, silence trimmed.
  np.testing.assert_allclose(np.sqrt(np.mean(clip.astype(np.float64) ** 2)), speech.TARGET_RMS, rtol=1e-4)
  assert np.abs(clip[:20]).max() > 0.001  # Starts on speech, not on trimmed silence.


def test_speak_many_keeps_order_and_voices_differ():
  slow, fast = speech.Voice("f2", 120, 50), speech.Voice("f2", 220, 50)
  clips = speech.speak_many([("one two three", slow), ("one two three", fast)], 16000,
                            max_samples=16000 * 3)
  assert len(clips[0]) > 1.3 * len(clips[1])  # Slower speech is longer.
  np.testing.assert_array_equal(clips[1], speech.speak("one two three", fast, 16000))
  short = speech.speak("one two three", slow, 16000, max_samples=4000)
  assert len(short) == 4000


def test_missing_espeak_is_a_user_error(monkeypatch):
  monkeypatch.setattr(speech.shutil, "which", lambda name: None)
  with pytest.raises(errors.UserError, match="apt-get install espeak-ng"):
    speech.espeak_binary()
