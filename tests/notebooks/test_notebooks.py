"""Every notebook runs top to bottom, offline, at a small scale."""
import glob
import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO, xla_flags

NOTEBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))
pytestmark = pytest.mark.slow


def _run(name: str, monkeypatch) -> list:
  """The notebook's outputs, after checking it raised nothing and did not flood its output (a progress bar or
  the logs would). The kernel inherits this environment, on one CPU device as on a user's laptop."""
  monkeypatch.setenv("XLA_FLAGS", xla_flags(1))
  path = os.path.join(REPO, "notebooks", name)
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(path)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  print(f"{name}: {len(outputs)} output chunks")
  assert len(outputs) <= 12, "a progress bar or the logs flood the notebook's output"
  return outputs


def _text(outputs: list) -> str:
  return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def test_every_notebook_has_a_test():
  assert NOTEBOOKS == ["attention_maps.ipynb", "pretrained_and_your_own_data.ipynb", "quickstart.ipynb"]


# The quickstart continues the shared contrastive smoke run (conftest.clip_smoke_run), so it shares its worker.
@pytest.mark.xdist_group("clip_smoke")
def test_quickstart(shapes_data_dir, clip_smoke_run, tmp_path, monkeypatch):
  """Configs read MMJAX_DATA_DIR for the dataset location, and MMJAX_WORKDIR hands the quickstart a copy of the
  smoke run it would train (training itself is tested by tests/experiments), which it resumes: it evaluates the
  finished run, restores it on one device and plots."""
  workdir = str(tmp_path / "run")
  shutil.copytree(clip_smoke_run[0], workdir)
  monkeypatch.setenv("MMJAX_DATA_DIR", shapes_data_dir)
  monkeypatch.setenv("MMJAX_WORKDIR", workdir)
  outputs = _run("quickstart.ipynb", monkeypatch)
  assert any("image/png" in o.get("data", {}) for o in outputs), "the retrieval grid was not drawn"


def test_pretrained_and_your_own_data(monkeypatch):
  """The two pretrained towers name all six photos zero-shot (ConSE), then a caption model trains on a small
  folder (smoke) and captions its images from their files."""
  monkeypatch.setenv("MMJAX_NOTEBOOK_SMALL", "1")
  outputs = _run("pretrained_and_your_own_data.ipynb", monkeypatch)
  text = _text(outputs)
  assert "coffee    espresso 0.95" in text
  assert ("{'coffee': 'a cup of coffee', 'chelsea': 'a cat', 'rocket': 'a rocket', 'astronaut': 'an astronaut', "
          "'china': 'a temple', 'flower': 'a flower'}") in text
  assert "'eval/test/bleu4'" in text
  assert any("image/png" in o.get("data", {}) for o in outputs), "the captioned images were not drawn"


# The caption smoke run fine-tunes the contrastive one (conftest), so it shares its worker.
@pytest.mark.xdist_group("clip_smoke")
def test_attention_maps(shapes_data_dir, caption_smoke_run, vqa_smoke_run, monkeypatch):
  """The caption and VQA smoke runs stand in for the two runs the notebook would train (it only reads them): it
  draws a heat map per generated word and the VQA answers' maps, and prints the colour words' hit rate, the image
  vs question shares and the fusion's per-modality attention."""
  monkeypatch.setenv("MMJAX_DATA_DIR", shapes_data_dir)
  monkeypatch.setenv("MMJAX_CAPTION_WORKDIR", caption_smoke_run[1])
  monkeypatch.setenv("MMJAX_VQA_WORKDIR", vqa_smoke_run[1])
  outputs = _run("attention_maps.ipynb", monkeypatch)
  text = _text(outputs)
  for line in ("caption: reused", "colour words: the argmax patch is a cell with an object of that colour for",
               "the answer word's attention on the image:", "fusion layer 0: image tokens → image"):
    assert line in text
  assert sum("image/png" in o.get("data", {}) for o in outputs) == 2, "a heat-map figure is missing"
