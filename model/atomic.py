"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A failed write (full disk, permission, crash mid-write) leaves the previous file untouched. A new file
gets the mode open() would give it (0o666 less the umask); a replaced file keeps its mode.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    umask = _umask_from_proc()
    if umask is None:  # os.umask is read by setting it, which races with threads creating files: once, here
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


_UMASK_AT_IMPORT = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it (from /proc where there is one)."""
    umask = _umask_from_proc()
    return _UMASK_AT_IMPORT if umask is None else umask


def write_temporary_beside(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a new temporary file in `path`'s folder (created if missing), fsynced, with the mode
    `path` has (or, new, would get from open()); returns the temporary file, for the caller to rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                os.fchmod(f.fileno(), mode)  # mkstemp makes it 0600
            except OSError as e:  # file systems without Unix modes (FAT, some network and FUSE mounts)
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`path` holds `data` whole or keeps what it held: written beside it, then renamed over it. Whatever `path` is
    (a symbolic link, a FIFO) is replaced, never written through: a link planted in a project folder must not make
    its writes land elsewhere. Outputs the user names go through `write_output_file`."""
    tmp = write_temporary_beside(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_create_bytes(path: str | os.PathLike, data: bytes) -> bool:
    """`path` made to hold `data` whole, unless a file appeared there first: then it is left as it is and False is
    returned. Written beside it, then hard-linked into place (a link fails where a name exists). On a file system
    without hard links the check and the rename are two steps, so a file made between them is replaced."""
    tmp = write_temporary_beside(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        if os.path.lexists(path):
            return False
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_output_file(path: str | os.PathLike, data: bytes) -> None:
    """A file the user named on the command line (`eval --json`), written as the shell's `>` would place it: through a
    symbolic link to its target, and into a FIFO or a device (`--json /dev/stdout`, a pipe), which cannot be
    replaced; a regular file is still written atomically (`atomic_write_bytes`)."""
    try:
        mode = os.stat(path).st_mode  # (through links: /dev/stdout -> /proc/self/fd/1 -> a pipe, which has no path)
    except FileNotFoundError:
        mode = None
    if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        with open(path, "wb") as f:
            f.write(data)
        return
    atomic_write_bytes(os.path.realpath(path), data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_values(value):
    """`value` with each NaN or infinity (Pd without a target, an AUC without a curve) as null: JSON has none."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_values(item) for item in value]
    return value


def encode_json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, encode_json(obj))


def encode_png(image: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of a 2-D uint8/uint16 (or HxWx3 uint8) array, lossless.

    `text`: ASCII keyword -> ASCII value pairs stored as tEXt chunks right after the header.
    """
    import cv2

    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG needs uint8 or uint16, got {image.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError("PNG encoding failed")
    data = buf.tobytes()
    if not text:
        return data
    chunks = b"".join(_png_chunk(b"tEXt", key.encode("ascii") + b"\0" + value.encode("ascii"))
                      for key, value in text.items())
    header_end = 8 + 12 + 13  # signature, then the IHDR chunk (13 bytes of data)
    return data[:header_end] + chunks + data[header_end:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def atomic_write_png(path: str | os.PathLike, image: np.ndarray, text: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, encode_png(image, text))


def atomic_write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
