"""Exclusive locks on a folder's lock file (`FolderLock`), so that two writers never work on one folder at once:
a detection run on its review project (`DetectionLock`: overlapping `irsam detect` jobs, a command while the app
detects), an export on its data set (`app.core.export`). `FolderLock` is model.folder_lock's (a training run locks
its --out with it too)."""
from __future__ import annotations

from pathlib import Path

from model.folder_lock import FolderLock

# held (flock) by a detection run for its whole run: PROJECT/detect.lock, there only meanwhile (`DetectionLock`)
DETECT_LOCK = "detect.lock"


class DetectionRunningError(Exception):
    """Another detection run holds the project's `DetectionLock`."""


class DetectionLock(FolderLock):
    """The lock on PROJECT/detect.lock, held by a detection run from before it opens or creates the project to its
    end: two runs into one project at once (overlapping cron jobs, a command while the app detects) would each
    report its own run while the project holds proposals of both, its project.json naming the last. The second is
    refused at once (`DetectionRunningError`, naming the project and the run holding it), before it writes
    anything. Where the project's folder cannot be made the run goes on unlocked and says why it cannot write."""

    def __init__(self, folder: str | Path, holder: str = "irsam detect"):
        super().__init__(folder, DETECT_LOCK, holder)

    def refused(self, other: str) -> Exception:
        return DetectionRunningError(f"another detection run{other} is writing to the project {self.folder} now: "
                                     "nothing was written; run this one again when it has finished")

