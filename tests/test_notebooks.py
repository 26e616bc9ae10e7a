"""The notebooks themselves run as tests (nbmake, see pytest.ini); here: git holds them without outputs,
and the README lists every one of them."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_six_notebooks_are_there_and_in_the_readme():
    names = [path.stem for path in NOTEBOOKS]
    assert names == ["01_quickstart", "02_transfer_learning", "03_qat_tflite", "04_export_serving", "05_detection",
                     "06_segmentation"]
    readme = (ROOT / "README.md").read_text()
    assert all(f"notebooks/{name}.ipynb" in readme for name in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and not any(cell.outputs or cell.execution_count for cell in code)
