"""The suite's hang watchdog (tests/hang_watchdog.py): a test blocked in C code holding the GIL, which no
Python-level timeout can interrupt, still ends the run with every thread's stacks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCKING_TEST = '''
import ctypes

def test_blocks_in_c_holding_the_gil():
    libc = ctypes.PyDLL(None)  # a PyDLL call keeps the GIL
    mutex = ctypes.create_string_buffer(64)  # zeros: an unlocked default pthread mutex
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # deadlock; signals do not interrupt it
'''


def _run_stuck(tmp_path, test_text: str, watchdog_s: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run `test_text` as test_stuck.py under the suite's conftest (pytest-timeout at 2 s, the watchdog at
    `watchdog_s`, "NATIVE,EXIT"); the finished run and the seconds it took."""
    test_file = tmp_path / "test_stuck.py"
    test_file.write_text(test_text)
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-o", "timeout=2", str(test_file)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "IRSAM_HANG_WATCHDOG_S": watchdog_s})
    return run, time.monotonic() - start


@pytest.mark.slow
def test_a_test_stuck_holding_the_gil_ends_the_run_with_its_stacks(tmp_path):
    run, elapsed = _run_stuck(tmp_path, BLOCKING_TEST, "4,12")
    assert run.returncode != 0 and elapsed < 60
    # pytest-timeout's alarm (2 s) could not fire: the faulthandler watchdog ended the run
    assert "Timeout (0:00:12)!" in run.stderr
    assert "test_stuck.py\", line 8 in test_blocks_in_c_holding_the_gil" in run.stderr
    if shutil.which("gdb"):
        assert "test_stuck.py::test_blocks_in_c_holding_the_gil has run for over 4 s" in run.stderr
        assert "+++ end of native stacks +++" in run.stderr
        # the blocked frame, unless this machine forbids attaching (then gdb says so: ptrace)
        assert "pthread_mutex_lock" in run.stderr or "ptrace" in run.stderr


FAILED_THEN_STUCK = '''
import ctypes
import pytest

@pytest.fixture
def blocks_at_teardown():
    yield
    libc = ctypes.PyDLL(None)
    mutex = ctypes.create_string_buffer(64)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)

def test_fails_then_blocks_in_teardown(blocks_at_teardown):
    assert False
'''


@pytest.mark.slow
def test_a_failed_test_stuck_in_its_teardown_ends_the_run(tmp_path):
    """pytest cancels pending traceback dumps when a test fails (its faulthandler plugin): the watchdog is armed
    again, or a failed test whose teardown waits forever (a modal dialog on closing) holds CI for 90 minutes."""
    run, elapsed = _run_stuck(tmp_path, FAILED_THEN_STUCK, "60,8")
    assert run.returncode != 0 and elapsed < 60
    assert "Timeout (0:00:08)!" in run.stderr
    assert "test_stuck.py\", line 11 in blocks_at_teardown" in run.stderr
