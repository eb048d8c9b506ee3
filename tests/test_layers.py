"""The layers of docs/architecture.md: the model imports nothing of the app, and the core (with the session,
measures and editor built on it) runs without Qt."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules(folder: str) -> list[str]:
    return sorted(f"{folder.replace('/', '.')}.{p.stem}" for p in (REPO / folder).glob("*.py") if p.stem != "__init__")


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = (f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
            "print('\\n'.join(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def _imported_names(folder: str) -> dict[str, set[str]]:
    """Every module each file of `folder` imports, at any depth (a function's own imports too: importing the
    module does not run those), by file name."""
    imported = {}
    for path in sorted((REPO / folder).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        imported[path.name] = names
    return imported


def _importing(folder: str, prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """The files of `folder` importing a module that starts with one of `prefixes` (or `app` itself), and those."""
    found = {file: sorted(n for n in names if n == "app" or n.startswith(prefixes))
             for file, names in _imported_names(folder).items()}
    return {file: names for file, names in found.items() if names}


def test_the_model_imports_nothing_of_the_app():
    loaded = _loaded_after_importing(_modules("model"))
    assert {"model.train", "model.checkpoint", "model.evaluate"} <= loaded
    assert not [name for name in loaded if name == "app" or name.startswith("app.")]
    assert _importing("model", ("app.",)) == {}


def test_the_core_session_and_editor_run_without_qt():
    loaded = _loaded_after_importing(_modules("app/core") + ["app.session", "app.measure", "app.editing"])
    assert "app.core.project" in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")]


def test_the_core_imports_nothing_built_on_it():
    built_on_the_core = ("app.session", "app.editing", "app.measure", "app.commands", "app.cli", "app.widgets",
                         "app.main", "PySide6", "pyqtgraph")
    assert _importing("app/core", built_on_the_core) == {}
