"""The benchmarks and scripts against the project's API: every name they import from app/, model/ or tests/ still
exists (imports inside functions included, which no import of the module would reach), and the cheapest
benchmark runs through the project code it measures."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"app", "model", "tests"}
SCRIPTS = sorted(REPO.glob("benchmarks/*.py")) + sorted(REPO.glob("scripts/*.py"))


def project_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from app... / model... / tests... import name` in the file, at any depth."""
    return [(node.module, alias.name)
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
            and node.module.split(".")[0] in PROJECT_PACKAGES
            for alias in node.names]


def test_the_scripts_are_found():
    names = {p.name for p in SCRIPTS}
    assert {"bench_disk_poll.py", "eval_sirst.py", "main_screenshot.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_name_imported_from_the_project_exists(path):
    missing = [f"{module}.{name}" for module, name in project_imports(path)
               if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"{path.relative_to(REPO)} imports names the project no longer has: {missing}"


def test_disk_poll_benchmark_runs(monkeypatch, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_disk_poll", REPO / "benchmarks" / "bench_disk_poll.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["bench_disk_poll.py", "--frames", "12"])
    bench.main()
    out = capsys.readouterr().out
    assert "12 proposals written" in out
    # another instance replaced one proposal and one committed mask: the window's look reports both frames
    assert "(2 frames reported)" in out
    assert "summarise the queue" in out
    assert not any(tmp_path.iterdir()), "the benchmark's temporary project was left behind"
