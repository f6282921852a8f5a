"""Every notebook runs top to bottom, offline, on the small test dataset."""
import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, shapes_data_dir, monkeypatch):
  # The kernel inherits this environment: configs read MMJAX_DATA_DIR for the dataset location,
  # and a single CPU device is what a user's laptop has.
  monkeypatch.setenv("MMJAX_DATA_DIR", shapes_data_dir)
  monkeypatch.setenv("XLA_FLAGS", "")
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(path)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any("image/png" in o.get("data", {}) for o in outputs), "the retrieval grid was not drawn"
