"""Every top-level dependency in requirements.txt imports on this machine (tensorflowjs included)."""

import importlib
import subprocess
import sys
from pathlib import Path

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


def test_the_draw_canvas_component_registers_inside_streamlit():
    # The Draw page's canvas is an inline components-v2 element; it must mount in a runtime.
    from streamlit.testing.v1 import AppTest

    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from dashboard.views import draw\n"
        "draw._canvas_objects()\n"
    )
    app = AppTest.from_string(script).run(timeout=60)
    assert not app.exception, app.exception


def test_pipeline_importable_from_anywhere(tmp_path, monkeypatch):
    # Streamlit puts dashboard/ on sys.path, not the repo root: the package must be installed.
    monkeypatch.chdir(tmp_path)
    import pipeline

    assert pipeline.__version__
