"""Every top-level dependency in requirements.txt imports on this machine (tensorflowjs included)."""

import importlib

import pytest

MODULES = [
    "tensorflow", "keras", "tensorflowjs", "ydf", "numpy", "pandas", "plotly", "streamlit",
    "streamlit_drawable_canvas", "cairocffi", "tqdm", "kaleido",
]


@pytest.mark.parametrize("module", MODULES)
def test_imports(module):
    importlib.import_module(module)


def test_pipeline_importable_from_anywhere(tmp_path, monkeypatch):
    # Streamlit puts dashboard/ on sys.path, not the repo root: the package must be installed.
    monkeypatch.chdir(tmp_path)
    import pipeline

    assert pipeline.__version__
