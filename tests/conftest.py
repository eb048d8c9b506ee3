"""GUI fixtures: a small generated 16-bit sequence, a tiny IRSAM checkpoint, and the real review window."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PySide6 import QtCore

from tests.hang_watchdog import HangWatchdog

# Before pytest-qt makes the QApplication: GL views made by different tests then share shader programs
# (the app sets the same in app.main).
QtCore.QCoreApplication.setAttribute(QtCore.Qt.AA_ShareOpenGLContexts)

_watchdog: HangWatchdog | None = None


def pytest_configure(config):
    global _watchdog
    _watchdog = HangWatchdog()


def pytest_unconfigure(config):
    if _watchdog is not None:
        _watchdog.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _watchdog.arm(item.nodeid)
    yield
    _watchdog.disarm()


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node, call, report):
    """pytest's faulthandler plugin cancels every pending traceback dump when a test fails, the watchdog's exit
    included: armed again, a failed test whose teardown then hangs still ends the run."""
    if isinstance(node, pytest.Item):
        _watchdog.arm(node.nodeid)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item):
    """Before pytest-qt closes the test's widgets: the `window` discards an edit it could not save instead of asking
    what to do with it, a question nobody answers once the test is over (one that failed midway, say); tests of
    that question close the window themselves."""
    from PySide6 import QtWidgets

    window = getattr(item, "funcargs", {}).get("window")
    if window is not None:
        window.review_tools._ask_about_unsaved_edits = lambda *a: QtWidgets.QMessageBox.Discard
    return (yield)


@pytest.fixture(autouse=True)
def _gui_thread_garbage_collection(request):
    """GUI tests run as the app does: cyclic garbage is freed in the GUI thread (app.main_thread_gc), and
    what the test left (its closed windows) is deleted and collected there before the next test starts. Not for
    tests of the collector itself (`own_gc_collector`): this one's timer would race theirs."""
    if "qtbot" not in request.fixturenames or request.node.get_closest_marker("own_gc_collector"):
        yield
        return
    from PySide6 import QtWidgets

    from app.main_thread_gc import MainThreadGarbageCollector

    collector = MainThreadGarbageCollector()
    collector.start()
    yield
    QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
    collector.stop()


@pytest.fixture(scope="session")
def sequence_16bit(tmp_path_factory):
    """Folder with images/ (16-bit PNG) and masks/ (ground truth) from the project's synthetic generator."""
    from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence

    config = SyntheticConfig(n_frames=60, height=96, width=128, n_targets=(2, 2), empty_fraction=0.0)
    return write_sequence(generate_sequence(config, seed=3), tmp_path_factory.mktemp("seq16"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real IRSAM checkpoint (tiny config, random weights): it has WPMD and GAD feature maps.

    Seeded: the tests that read its detections get the same network whichever tests ran before."""
    import torch

    from model.build import build_irsam
    from model.checkpoint import save_checkpoint
    from model.config import tiny

    path = tmp_path_factory.mktemp("weights") / "tiny_random.pt"
    config = tiny()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = build_irsam(config)
    save_checkpoint(path, network, config, {"note": "random weights for GUI tests"})
    return path


@pytest.fixture
def private_shortcuts(tmp_path, monkeypatch) -> Path:
    """shortcuts.json of the windows a test makes: in the test's folder, not the user's config folder."""
    from app.widgets import shortcuts_dialog

    path = tmp_path / "config" / "shortcuts.json"
    monkeypatch.setattr(shortcuts_dialog, "shortcuts_path", lambda: path)
    return path


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, request, private_shortcuts):
    """The real main window, with its own settings and shortcuts files and no modal message boxes (they are
    recorded). Its look at
    the project on disk every DISK_POLL_MS is stopped unless the test is marked `disk_poll`: it fires at whatever
    point a test has reached, and a first look takes files written just before opening as another instance's."""
    from PySide6 import QtCore, QtWidgets

    from app.main_window import MainWindow

    messages = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda *a, **k: messages.append(a[2]))
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    win = MainWindow(settings)
    if request.node.get_closest_marker("disk_poll") is None:
        win.disk_timer.stop()
    win.messages = messages
    win.resize(1200, 800)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


@pytest.fixture
def fresh_sequence(sequence_16bit, tmp_path):
    """A private copy of the sequence: its review project (a sibling folder) starts empty."""
    import shutil

    return shutil.copytree(sequence_16bit, tmp_path / "sequence")


@pytest.fixture
def review(window, fresh_sequence, qtbot):
    """The window on a project whose predictions are the ground truth; frame 0 shown, keys to the frame view."""
    from tests.gui_review_helpers import open_project, predict_ground_truth

    predict_ground_truth(fresh_sequence)
    open_project(window, qtbot, fresh_sequence)
    return window


@pytest.fixture
def processes():
    """The processes a test starts: killed (SIGKILL, by pid) and reaped at its end, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def refusing_writes(review, monkeypatch):
    """While the returned set holds True, every project write fails (a full disk, a dropped network share)."""
    from app.core.project import ProjectWriteError

    project = review.session.project
    write = project._write
    refusing = {True}

    def maybe_refuse(action):
        if refusing:
            raise ProjectWriteError("disk full (simulated)")
        write(action)

    monkeypatch.setattr(project, "_write", maybe_refuse)
    return refusing
