"""The base of the project's tfds builders, whose every example is generated offline: nothing is downloaded."""
import tensorflow_datasets as tfds


class GeneratedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder that downloads nothing. Subclasses pass `skip_registration=True` too: mmjax finds
  its builders through mmjax.data.registry, and a name in tfds' registry would clash with tfds' own catalogue
  (its `fashion_mnist`), which tfds imports when a prepared dataset is opened by name (mmjax.data.prepared).

  No checksums to find: without `url_infos = None`, tfds 4.9.10 looks for them beside the builder's code and
  imports the `importlib_resources` backport, which it only declares for Python < 3.9. And no download to
  announce: tfds prints "Downloading and preparing dataset Unknown size ..." and "... downloaded and prepared"
  to stdout, which would mislead; mmjax.data.prepare says what happens instead.
  """
  url_infos = None

  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass
