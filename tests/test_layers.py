"""The layers of docs/architecture.md: the model imports nothing of the app, and the core (with the session,
measures and editor built on it) runs without Qt."""
from __future__ import annotations

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


def test_the_model_imports_nothing_of_the_app():
    loaded = _loaded_after_importing(_modules("model"))
    assert {"model.train", "model.checkpoint", "model.evaluate"} <= loaded
    assert not [name for name in loaded if name == "app" or name.startswith("app.")]


def test_the_core_session_and_editor_run_without_qt():
    loaded = _loaded_after_importing(_modules("app/core") + ["app.session", "app.measure", "app.editing"])
    assert "app.core.project" in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")]


def test_the_core_imports_nothing_built_on_it():
    loaded = _loaded_after_importing(_modules("app/core"))
    assert "app.core.finetune" in loaded
    built_on_the_core = ("app.session", "app.editing", "app.measure", "app.commands", "app.cli", "app.widgets",
                         "app.main")
    assert not [name for name in loaded if name.startswith(built_on_the_core)]
