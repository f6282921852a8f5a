"""Every notebook runs top to bottom, offline, on the small test dataset."""
import glob
import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))

# The quickstart continues the shared contrastive smoke run (conftest.clip_smoke_run), so it shares its worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clip_smoke")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, shapes_data_dir, clip_smoke_run, tmp_path, monkeypatch):
  """The kernel inherits this environment: configs read MMJAX_DATA_DIR for the dataset location, a single CPU
  device is what a user's laptop has, and MMJAX_WORKDIR hands the quickstart a copy of the smoke run it would
  train (training itself is tested by tests/experiments), which it resumes: it evaluates the finished run,
  restores it on one device and plots."""
  workdir = str(tmp_path / "run")
  shutil.copytree(clip_smoke_run[0], workdir)
  monkeypatch.setenv("MMJAX_DATA_DIR", shapes_data_dir)
  monkeypatch.setenv("MMJAX_WORKDIR", workdir)
  monkeypatch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"].replace("--xla_force_host_platform_device_count=8", ""))
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(path)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any("image/png" in o.get("data", {}) for o in outputs), "the retrieval grid was not drawn"
  print(f"{os.path.basename(path)}: {len(outputs)} output chunks")
  assert len(outputs) <= 12, "a progress bar or the logs flood the notebook's output"
