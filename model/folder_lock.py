"""Exclusive locks on a folder's lock file (`FolderLock`), so that two writers never work on one folder at once.

Shared by the model (model.train: one `irsam train` into an --out at a time) and the app (app.core.locks: detection
runs on a review project, exports into a data set); it lives here because the model imports nothing of the app.
`lock_holder` tells, without taking the lock, whether a writer holds one now (the app's fine-tune dialog asks it
before it exports and starts a training)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FolderLock:
    """An exclusive non-blocking flock on FOLDER/NAME. The holder writes "<pid> <holder>" into the file, so a writer
    refused names the one that holds it (`refused`, which subclasses turn into their own error). The kernel drops
    the lock when its process ends, so a killed writer never leaves the folder locked; the file is removed on
    release (a folder holds none between writers), and one left by a killed writer locks as usual.

    Where the lock file cannot be made or locked (a folder this user may only read, a file system without locks)
    the writer goes on unlocked, as before locks, and `held` is False; `cannot_make` may refuse instead where the
    folder cannot be made. The folders made to hold the lock file are removed on release when nothing else was
    written in them. Use: `with Lock(...):`, or `acquire()` then `release()`."""

    def __init__(self, folder: str | Path, name: str, holder: str):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.holder = holder
        self.fd: int | None = None
        self.created: list[Path] = []  # folders made to hold the lock file, deepest first

    @property
    def held(self) -> bool:
        return self.fd is not None

    def refused(self, other: str) -> Exception:
        """The error for a folder another writer holds; `other`: " (HOLDER, pid N)", or "" when it is not known."""
        raise NotImplementedError

    def cannot_make(self, error: OSError) -> None:
        """Where the folder cannot be made: go on unlocked (the writer then says why it cannot write), or raise."""

    def acquire(self) -> FolderLock:
        self.created = []
        for folder in (self.folder, *self.folder.parents):
            if folder.exists():
                break
            self.created.append(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self.cannot_make(error)
            return self
        for _ in range(20):
            made = True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                made = False
                try:
                    fd = os.open(self.path, os.O_RDWR)
                except FileNotFoundError:  # removed meanwhile by the writer that held it
                    continue
                except OSError:
                    return self
            except OSError:
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = holder_of(fd)
                os.close(fd)
                self.release()
                raise self.refused(other) from None
            except OSError:  # a file system without locks: no lock file either
                if made:
                    self.path.unlink(missing_ok=True)
                os.close(fd)
                return self
            try:  # the writer that held it may have removed the file meanwhile: then lock the one there now
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()} {self.holder}\n".encode())
                except OSError:  # the lock holds without it; a writer refused just cannot name this one
                    pass
                return self
            os.close(fd)
        return self

    def release(self) -> None:
        """Remove the lock file and unlock; remove the folders made for it when nothing else was written in them."""
        if self.fd is not None:
            # while locked: a writer that opened this file meanwhile locks it once it is closed, finds it gone and
            # makes another (acquire)
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the writer wrote there
                break
        self.created = []

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder_of(fd: int) -> str:
    """" (HOLDER, pid N)" from the lock file a run holds, "" when it has not written it (yet)."""
    try:
        line = os.pread(fd, 256, 0).decode("utf-8", "replace").partition("\n")[0]
    except OSError:
        return ""
    pid, _, holder = line.partition(" ")
    if not pid.isdigit():
        return ""
    return f" ({holder + ', ' if holder else ''}pid {pid})"


def lock_holder(path: str | Path) -> str | None:
    """Whether a writer holds the `FolderLock` on the lock file `path` now, without creating, changing or keeping
    anything: None when none does (no file, one left by a killed writer, or one that cannot be opened or locked),
    else `holder_of`'s " (HOLDER, pid N)" ("" while the holder has not written it yet).

    It takes a shared lock for a moment to find out: a writer acquiring the lock at that very moment is refused
    (naming the holder written in the file), as it would be by any other writer."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # none (a folder no writer holds), or unreadable: nothing to tell
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder_of(fd)
        except OSError:  # a file system without locks: writers go on unlocked there
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
