"""Every top-level dependency in requirements.txt imports on this machine (tensorflowjs included)."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

MODULES = [
    "tensorflow", "keras", "ydf", "numpy", "pandas", "plotly", "streamlit", "cairocffi", "tqdm",
    "kaleido", "numba",
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


def test_pipeline_importable_from_anywhere(tmp_path):
    # Streamlit puts dashboard/ on sys.path, not the repo root: the package must be installed. Checked in
    # a fresh interpreter started outside the checkout without PYTHONPATH: in this process `pipeline` is
    # already imported and sys.path holds the checkout (`python -m pytest` adds the working directory).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__version__); print(pipeline.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    version, location = result.stdout.splitlines()
    assert version
    # This checkout's package (`make install` runs `pip install -e .`), not some other installed copy.
    assert Path(location).resolve().parent == (REPO / "pipeline").resolve(), location
