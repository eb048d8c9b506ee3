"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A failed write (full disk, permission, crash mid-write) leaves the previous file untouched.
"""
from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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
