"""The structure docs/ARCHITECTURE.md describes, checked on the code: imports only point down the
layers, no module reaches into another module's private (_underscore) names, train.py holds the
training loop only, and no dashboard page parses a process's output."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The layers, bottom first; a module may import from its own layer or any layer below it.
LAYERS = [
    {"errors", "files", "categories", "strokes", "models", "recipe", "checkpoints", "browser", "paint"},
    {"formats", "raster", "download"},
    {"runs"},
    {"seedlogs", "convert", "datasets", "predict", "probes", "steps"},
    {"train"},
    {"chunks", "evaluate", "export", "mlflow_export"},
    {"jobs"},
    {"cli", "__main__", "__init__"},
]
LAYER_OF = {name: index for index, layer in enumerate(LAYERS) for name in layer}
SOURCES = sorted(p for folder in ("pipeline", "dashboard", "scripts", "bench") for p in (REPO / folder).rglob("*.py"))


def imported_pipeline_modules(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pipeline":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("pipeline."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline."))
    return found


def test_every_pipeline_module_has_a_layer():
    modules = {p.stem for p in (REPO / "pipeline").glob("*.py")}
    assert modules - set(LAYER_OF) == set(), "add the new module to LAYERS and docs/ARCHITECTURE.md"


@pytest.mark.parametrize("path", sorted((REPO / "pipeline").glob("*.py")), ids=lambda p: p.stem)
def test_imports_only_point_down(path):
    tree = ast.parse(path.read_text())
    mine = LAYER_OF[path.stem]
    upward = sorted(m for m in imported_pipeline_modules(tree) if LAYER_OF.get(m, -1) > mine)
    assert not upward, f"pipeline/{path.name} (layer {mine}) imports {upward} from a layer above"


def private_uses(tree: ast.AST) -> list[str]:
    """`from x import _name` and `module._name` where `module` is an imported module."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pipeline import runs` binds a module; `from x import y` might: assume it does.
            modules.update(a.asname or a.name for a in node.names)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules and base.id not in ("self", "cls"):
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_uses_another_modules_private_names(path):
    assert private_uses(ast.parse(path.read_text())) == []


def test_the_private_name_check_can_fail():
    code = "from pipeline import checkpoints as ckpt\nfrom pipeline.raster import _x\nckpt._pack(1)\n"
    assert private_uses(ast.parse(code)) == ["from pipeline.raster import _x", "ckpt._pack (line 3)"]


def test_train_holds_the_loop_only():
    source = (REPO / "pipeline" / "train.py").read_text()
    assert len(source.splitlines()) <= 330
    tree = ast.parse(source)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    # Creating, branching and locking runs, and choosing a dataset, live elsewhere.
    assert names.isdisjoint({"create_run", "branch_run", "make_config", "run_chunks", "dataset_spec",
                             "load_dataset", "cache_root"})
    assert "RunLock" not in source and "append_event(self.run_dir, \"chunk" not in source


@pytest.mark.parametrize("path", sorted((REPO / "dashboard").rglob("*.py")), ids=lambda p: p.name)
def test_no_dashboard_page_parses_process_output(path):
    source = path.read_text()
    assert "last_json_object" not in source and "stdout.read" not in source
    # A regex in a page may only work on what the user typed, never on a command's output.
    patterns = re.findall(r"re\.(?:compile|match|search|findall|finditer|sub)\(", source)
    assert not patterns, f"{path.name} uses regular expressions: read machine-readable files instead"


def test_architecture_doc_names_every_module():
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    missing = sorted(m for m in LAYER_OF if not m.startswith("__") and f"`{m}`" not in doc)
    assert not missing, f"docs/ARCHITECTURE.md does not describe {missing}"
