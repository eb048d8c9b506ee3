"""Last line of defence against a hung test: stacks, then exit, even when no Python code can run.

pytest-timeout (pyproject: 300 s, signal method) fails a test stuck in Python code. A thread blocked in C
while holding the GIL (Qt, GL, X11) stops every Python thread, pytest-timeout's included; CI then waits
its full 90 minutes and prints nothing. Per test, this module arms:

- `faulthandler.dump_traceback_later(exit=True)`: a C thread that needs no GIL prints every thread's
  Python stack to the real stderr and ends the process;
- before it, a small watcher process (this file run as a script) that attaches gdb to the stuck pytest
  and prints every thread's native stack (what Qt, GL or torch is waiting for).
"""
from __future__ import annotations

import faulthandler
import os
import shutil
import subprocess
import sys
import tempfile
import time

# "NATIVE,EXIT" seconds; the environment variable is for the watchdog's own test
NATIVE_STACKS_AFTER_S, EXIT_AFTER_S = map(float, os.environ.get("IRSAM_HANG_WATCHDOG_S", "320,345").split(","))


class HangWatchdog:
    def __init__(self):
        self.report = os.fdopen(os.dup(2), "w")  # the real stderr, before pytest captures fd 2 per test
        fd, heartbeat_path = tempfile.mkstemp(prefix="irsam-pytest-heartbeat-")
        os.close(fd)
        self.heartbeat_path = heartbeat_path
        self.watcher = None
        if shutil.which("gdb"):
            self.watcher = subprocess.Popen(
                [sys.executable, __file__, str(os.getpid()), heartbeat_path, str(NATIVE_STACKS_AFTER_S)],
                stdin=subprocess.DEVNULL, stdout=self.report, stderr=self.report)

    def arm(self, test_id: str) -> None:
        with open(self.heartbeat_path, "w", encoding="utf-8") as f:
            f.write(test_id)
        faulthandler.dump_traceback_later(EXIT_AFTER_S, exit=True, file=self.report)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()

    def close(self) -> None:
        self.disarm()
        if self.watcher is not None:
            self.watcher.terminate()
            self.watcher.wait()
        os.unlink(self.heartbeat_path)
        self.report.close()


def watch(pid: int, heartbeat_path: str, after_s: float) -> None:
    """Print the native stacks of `pid` (this process's parent) once per test that has been running longer
    than `after_s`; return when the parent has gone (a zombie parent still answers kill(pid, 0))."""
    dumped_for = None
    while os.getppid() == pid:
        time.sleep(2)
        try:
            stamp = os.stat(heartbeat_path).st_mtime
            with open(heartbeat_path, encoding="utf-8") as f:
                test_id = f.read()
        except OSError:
            continue
        if time.time() - stamp > after_s and stamp != dumped_for:
            dumped_for = stamp
            print(f"\n+++ {test_id} has run for over {after_s:.0f} s: native stacks of every thread +++",
                  flush=True)
            subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "set pagination off",
                            "-ex", "thread apply all bt 25"], stdin=subprocess.DEVNULL, timeout=120)
            print("+++ end of native stacks +++", flush=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
