"""Every top-level dependency in requirements.txt imports on this machine (tensorflowjs included)."""

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "tensorflow", "keras", "ydf", "numpy", "pandas", "plotly", "streamlit", "cairocffi", "tqdm",
    "kaleido",
]


@pytest.mark.parametrize("module", MODULES)
def test_imports(module):
    importlib.import_module(module)


def test_tensorflowjs_imports_without_a_terminal():
    # The converter's tensorflow_decision_forests import takes a different path (IPython) when
    # stdout is not a terminal, which is how export jobs run: import it exactly that way.
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflowjs; print(tensorflowjs.__version__)"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("4.22.0")


def test_drawable_canvas_registers_inside_streamlit():
    # Components v2 resolve their assets from the package manifest, which Streamlit only scans
    # inside a runtime (server or AppTest): a bare import outside one is expected to fail.
    from streamlit.testing.v1 import AppTest

    script = (
        "from streamlit_drawable_canvas import st_canvas\n"
        "result = st_canvas(height=100, width=100, key='probe')\n"
    )
    app = AppTest.from_string(script).run(timeout=60)
    assert not app.exception, app.exception


def test_pipeline_importable_from_anywhere(tmp_path, monkeypatch):
    # Streamlit puts dashboard/ on sys.path, not the repo root: the package must be installed.
    monkeypatch.chdir(tmp_path)
    import pipeline

    assert pipeline.__version__
