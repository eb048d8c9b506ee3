"""Frame sources: ordered raw frames from a folder, a multi-page TIFF or one image, read lazily.

Raw values are kept (uint16 stays uint16). Colour images become gray with the ITU-R 601 luma
weights that PIL's "L" conversion uses: L = (19595 R + 38470 G + 7471 B + 2**15) >> 16 for 8-bit,
the same weights (0.299, 0.587, 0.114), rounded, for 16-bit.

A folder whose frames all have one size is a sequence; a folder of frames of several sizes (a data set of
single images, such as NUAA-SIRST's images/) is opened as one too, each frame keeping its own size
(`FrameSource.shape` is then None and `frame_shape(i)` gives each one's). Sizes are read from file
headers at open (PNG/BMP header, JPEG frame header, TIFF first page), so any size difference makes a
folder mixed. A multi-page TIFF keeps one size: a page of another size is unreadable. A first page that is a
thumbnail of the frames after it (flagged a reduced image, or smaller in both height and width than they are), and
the pages after one image that are reduced copies of it, are no frames: `FrameSource.skipped_pages` names them.
A hyperstack (an ImageJ, OME or tifffile TIFF whose axes hold channels beside its frames: C, or S samples that are no
colour, such as TCYX) reads as the frames of its first channel, in time order, and one whose z-slices lie beside its
time points (TZYX) as those of z-slice 1: `skipped_pages` names what is not read. Without T, Z holds the frames (a
z-stack is stepped through), and so does C alone: tifffile writes any stack it is given no axes for as ImageJ channels.
A TIFF file of a folder whose one page holds an RGB or RGBA image plane by plane (axes SYX) is that colour image,
made gray as an interleaved one is; opened as a stack, its planes are its frames, as tifffile stores 3 or 4 frames it
is given no photometric for.

Frame indices never change once a source is open, and they do not depend on which frames can be
read: every image file of a folder (a broken link included) and every page of a multi-page TIFF (of a hyperstack,
every page of the channel read) is a frame.
A frame that cannot be read (found by the cheap checks at open, or when it is decoded) keeps its index,
is recorded in `bad_frames`, and `frame(i)` raises `FrameReadError`. A folder's frame is read again by
`frame(i)` once its file has changed since it failed (a folder back after its share dropped, a file copied in
whole after being read half-copied), and leaves `bad_frames` when it reads; while its file is unchanged the
stored reason is raised without reading it. A stack's pages are not read again. The sequence's sample type
is the one most frame headers give, so a stray frame of another type is the one reported.

A frame whose decoder would fill in what it cannot read is unreadable too: a PNG or JPEG cut short, a JPEG whose
compressed data is damaged or was cut short and closed again with an end marker (libjpeg fills the rest with grey and
only warns on stderr; `app.core.jpeg_damage` says how this is found, and what is not). A multi-page TIFF in a folder of frames
is an unreadable frame (a stack: its pages would vanish behind its first); opened on its own it is a stack.

A multi-page TIFF cut short keeps the frame count its metadata give (ImageJ's image count, or the shape
tifffile wrote): the frames the file no longer holds are bad frames. Where no metadata give a count, its
readable pages are the frames, and the pages lost after them are one entry of `bad_frames` with
`index=None`, as is a file whose stem another file already has. tifffile's log lines about a damaged
file are kept out of the output: the reason reaches the caller in these entries or in the error.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import struct
import threading
from collections import Counter, OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from app.core.jpeg_damage import JPEG_SOF, jpeg_damage, jpeg_undecodable
from model.data import END_SEARCHED, FrameReadError, first_frame_page, missing_end, natural_key, smaller_in_both
from model.metrics import (BoxesFileError, ground_truth_target, interpolated_pixels, number_clip_frames,
                           read_boxes_csv)

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
# float32: radiometric exports (temperatures); their no-data pixels (NaN, +-inf) reach the detectors filled from
# the data around them (app.core.normalization)
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
# read as 32-bit float: signed 16-bit counts (exactly) and 64-bit floats (a processing tool's output, rounded to
# float32's 24 bits, far finer than any thermal camera's resolution)
READ_AS_FLOAT = (np.dtype(np.int16), np.dtype(np.float64))
SUPPORTED_TEXT = "need 8- or 16-bit unsigned, 16-bit signed, or 32- or 64-bit float"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class SourceError(Exception):
    """The path cannot be opened as a frame source at all (missing, or no readable frame)."""


class UnusableMask(ValueError):
    """A ground-truth mask that reads but cannot be committed as its frame's reference; the message says why."""


@dataclass(frozen=True)
class BadFrame:
    path: str
    reason: str
    index: int | None = None  # the frame's index in the source; None when rejected at open
    stem: str | None = None


_tifffile_quiet = threading.local()


class _QuietWhileReadingHere(logging.Filter):
    """Drops tifffile's records logged by a thread inside `_tifffile_quiet_here()`; other users of
    tifffile in the process keep its log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_tifffile_quiet, "depth", 0)


logging.getLogger("tifffile").addFilter(_QuietWhileReadingHere())


@contextmanager
def _tifffile_quiet_here():
    _tifffile_quiet.depth = getattr(_tifffile_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _tifffile_quiet.depth -= 1


def _sniff_format(head: bytes) -> str | None:
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def _header_info(head: bytes, fmt: str) -> tuple[int, int, np.dtype] | None:
    """(height, width, dtype) read from the first bytes of a PNG or BMP; None where that takes a decode."""
    if fmt == "png" and len(head) >= 26 and head[12:16] == b"IHDR":
        width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
        # palette PNGs are always expanded to 8-bit gray
        dtype = np.dtype(np.uint16) if bit_depth == 16 and color_type != 3 else np.dtype(np.uint8)
        return height, width, dtype
    if fmt == "bmp" and len(head) >= 26 and struct.unpack("<I", head[14:18])[0] >= 40:  # not the old OS/2 header
        width, height = struct.unpack("<ii", head[18:26])
        return abs(height), width, np.dtype(np.uint8)
    return None


def to_gray(image: np.ndarray) -> np.ndarray:
    """2-D gray of a 2-D, HxWx2 (gray+alpha), HxWx3 (BGR) or HxWx4 (BGRA) array, ITU-R 601 weights."""
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (2, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape}")
    if image.shape[2] == 2:
        return np.ascontiguousarray(image[:, :, 0])
    if np.issubdtype(image.dtype, np.floating):
        b, g, r = (image[:, :, k] for k in range(3))
        return (0.299 * r + 0.587 * g + 0.114 * b).astype(image.dtype)
    b, g, r = (image[:, :, k].astype(np.uint32) for k in range(3))
    if image.dtype == np.uint8:
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
    gray = np.rint(0.299 * r + 0.587 * g + 0.114 * b)
    return np.clip(gray, 0, np.iinfo(image.dtype).max).astype(image.dtype)


def _cannot_open(path, error: OSError) -> FrameReadError:
    if isinstance(error, FileNotFoundError):
        if os.path.islink(path):  # such as a git-annex or DataLad file whose content was not fetched
            return FrameReadError(path, f"broken link (its target {os.readlink(path)} does not exist)")
        return FrameReadError(path, "file not found")
    if error.errno == errno.ELOOP and os.path.islink(path):  # a link to itself, or links that lead back to it
        return FrameReadError(path, f"broken link (its target {os.readlink(path)} leads back to it: a loop of links)")
    return FrameReadError(path, f"cannot read file ({error.strerror or error})")


def no_data(frame: np.ndarray) -> bool:
    """Whether a float frame holds no value at all (every pixel NaN: the camera gave none for it)."""
    frame = np.asarray(frame)
    return frame.dtype.kind == "f" and not np.isfinite(frame).any()


def read_dtype(dtype: np.dtype) -> np.dtype | None:
    """The type frames stored as `dtype` are read as (`SUPPORTED_DTYPES`), None for a type that is not read."""
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype in SUPPORTED_DTYPES:
        return dtype
    return np.dtype(np.float32) if dtype in READ_AS_FLOAT else None


def _as_read(image: np.ndarray, path) -> np.ndarray:
    """`image` as `read_dtype` gives; FrameReadError for a sample type that is not read."""
    dtype = read_dtype(image.dtype)
    if dtype is None:
        raise FrameReadError(path, f"unsupported sample type {image.dtype} ({SUPPORTED_TEXT})")
    if image.dtype == np.float64:
        # finite values beyond float32's range would turn into infinities: clipped; an infinity (no data, as NaN)
        # stays one
        limit = np.finfo(np.float32).max
        image = np.where(np.isinf(image), image, np.clip(image, -limit, limit))
    return image.astype(dtype, copy=False)


def _mismatch(shape: tuple[int, int], dtype: np.dtype, expected_shape: tuple[int, int],
              sequence_dtype: np.dtype, whose: str = "the sequence's") -> str | None:
    """Why a frame of this size and sample type does not belong to the sequence; None when it does.
    `whose` names where `expected_shape` comes from (the sequence, or the file's own header)."""
    if tuple(shape) != tuple(expected_shape):
        return (f"size {shape[1]}x{shape[0]} differs from {whose} "
                f"{expected_shape[1]}x{expected_shape[0]}")
    if dtype != sequence_dtype:
        return f"sample type {dtype} differs from the sequence's {sequence_dtype}"
    return None


def describe_sizes(shapes) -> str:
    """(height, width) sizes (None entries ignored) for people: "320x240", or each side's range for several sizes,
    "381 sizes, widths 135-456, heights 96-388" (one "AxB to CxD" would read as per-side bounds, yet no one
    frame need be either end)."""
    sizes = {tuple(shape) for shape in shapes if shape is not None}
    if not sizes:
        return "unknown size"
    if len(sizes) == 1:
        (height, width), = sizes
        return f"{width}x{height}"
    heights, widths = zip(*sizes)
    return f"{len(sizes)} sizes, widths {min(widths)}-{max(widths)}, heights {min(heights)}-{max(heights)}"


def frame_digest(frame: np.ndarray) -> str:
    """SHA-1 (hex) of a raw frame's values, shape and type: what a review project records of the pixels each
    proposal, committed mask and status was made on, to tell when a frame was replaced on disk under the same
    name (`ReviewProject.frame_change`). About 0.3 ms for a 640x512 uint16 frame."""
    digest = hashlib.sha1(f"{frame.dtype.str}{frame.shape}".encode())
    digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()


def frame_fingerprint(frame: np.ndarray) -> str | None:
    """`frame_digest`, or None for a constant frame, which two sources may share: an export's meta.json keeps it
    per frame, so the same frame exported under two sequence names (its clip and project renamed since) is
    found by it."""
    if frame.size == 0 or frame.min() == frame.max():
        return None
    return frame_digest(frame)


def _color_planes(axes: str, shape: tuple[int, ...]) -> bool:
    """Whether a TIFF series (or page) of these axes (tifffile's) and shape is one colour image, RGB or RGBA, whose
    samples are stored plane by plane. A stack of frames or an image's channels stored so have other axes (TYX, CYX)
    where the file names them."""
    return axes == "SYX" and shape[0] in (3, 4)


def _page_image(tiff, index: int) -> np.ndarray:
    """Page `index` of a TIFF (tifffile's) as one image: YX, or YXS with its colour samples last, those of a page
    storing them plane by plane (`_color_planes`) too."""
    page = tiff.pages[index]
    image = page.asarray()
    if image.ndim == 3 and _color_planes(page.axes, image.shape):
        series = next((s for s in tiff.series if s.keyframe.index == index), None)
        if series is None or _color_planes(series.axes, series.shape):
            return np.moveaxis(image, 0, -1)
    return image


def _tiff_page_to_gray(page: np.ndarray, path) -> np.ndarray:
    page = _as_read(page, path)
    if page.ndim == 3 and page.shape[2] in (3, 4):
        return to_gray(page[:, :, [2, 1, 0]])  # tifffile gives RGB; to_gray expects BGR
    if page.ndim != 2:
        raise FrameReadError(path, f"unsupported TIFF page shape {page.shape}")
    return page


BACKGROUND_NICENESS = 10
_NOT_LOOKED = object()  # a bad frame's file state not taken yet


def lower_thread_priority() -> None:
    """Run the calling thread at a lower scheduling priority (Linux: threads have their own nice value).

    For read-ahead threads: on a machine with few cores they compete with the thread that is showing a
    frame (and with the display server) for the same cores, and a frame waited for now matters more than
    one that may be wanted next. Elsewhere, or without permission, the thread keeps its priority."""
    try:
        thread = threading.get_native_id()
        # relative to the caller's: an app started with `nice` keeps its read-ahead below its own threads
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS, 19))
    except (AttributeError, OSError):
        pass


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """One frame as a 2-D uint8/uint16/float32 array; raises FrameReadError with the reason it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _cannot_open(path, e) from None
    if not data:
        raise FrameReadError(path, "empty file (0 bytes)")
    fmt = _sniff_format(data[:8])
    if fmt is None:
        raise FrameReadError(path, "not an image (unrecognised file header)")
    # libpng/libjpeg decode a truncated file into a partly grey image with only a warning
    if reason := missing_end(data[:8], data.rstrip(b"\x00")[-END_SEARCHED:]):
        raise FrameReadError(path, reason)
    if fmt == "tiff":
        import tifffile

        try:
            with _tifffile_quiet_here(), tifffile.TiffFile(path) as tf:
                _check_has_pages(tf)
                stack = _tiff_stack_pages(tf)
                page = None if stack else _page_image(tf, first_frame_page(tf.pages))
        except Exception as e:  # tifffile raises many types for corrupt files
            raise FrameReadError(path, f"unreadable TIFF ({e})") from None
        if stack:
            raise FrameReadError(path, _stack_in_folder(stack))
        return _tiff_page_to_gray(page, path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        reason = jpeg_undecodable(data) if fmt == "jpeg" else f"corrupt {fmt.upper()} (decoder failed)"
        raise FrameReadError(path, reason)
    if fmt == "jpeg":  # libjpeg fills damaged or missing data in with grey, and only warns on stderr
        damage = jpeg_damage(data, image)
        if damage is not None:
            raise FrameReadError(path, damage)
    return to_gray(_as_read(image, path))


class FrameSource:
    """Ordered raw frames with a bounded LRU cache and background prefetch; thread-safe.

    Use `open_source(path)` to make one.
    """

    def __init__(self, path: Path, kind: str, stems: list[str], shape: tuple[int, int] | None, dtype: np.dtype,
                 bad_frames: list[BadFrame], cache_size: int = 64, prefetch: int = 4,
                 frame_shapes: list[tuple[int, int] | None] | None = None, stored_dtype: np.dtype | None = None,
                 skipped_pages: Sequence[str] = ()):
        self.path = path
        self.kind = kind
        self.stems = stems
        # the size every frame has, or None when the frames differ in size (`frame_shapes` then gives each
        # frame's, None for a frame unreadable at open)
        self.shape = shape
        if (shape is None) == (frame_shapes is None):
            raise ValueError("give one shape for every frame, or one per frame")
        self._frame_shapes = frame_shapes
        self.dtype = np.dtype(dtype)  # the sample type frames are read as (`read_dtype`)
        # the one the file stores (int16 and float64 are read as float32); of a folder, the file that set `dtype`
        self.stored_dtype = self.dtype if stored_dtype is None else np.dtype(stored_dtype).newbyteorder("=")
        # a TIFF's pages that hold no frame, each "page 1: what it is, not a frame" (a thumbnail before the frames),
        # and the channels of a hyperstack not read, "channel 2 of 2 (axis C) not read: ..."
        self.skipped_pages = list(skipped_pages)
        self.cache_size = max(1, int(cache_size))
        self.prefetch_depth = max(0, min(int(prefetch), self.cache_size - 1))
        self._bad_index: dict[int, BadFrame] = {b.index: b for b in bad_frames if b.index is not None}
        # index -> `_file_state` of a bad frame when it failed: `frame` reads it again once that changes
        self._bad_state: dict[int, object] = {i: self._file_state(i) for i in self._bad_index}
        self._without_index: list[BadFrame] = [b for b in bad_frames if b.index is None]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._in_flight: dict[int, Future] = {}
        self._lock = threading.RLock()
        self._last_index: int | None = None
        self._direction = 1
        self._hits = self._misses = self._evictions = self._decodes = self._prefetched = 0
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # subclasses implement this: decode frame i, raise FrameReadError when it cannot be read
    def _load(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def frame_path(self, i: int) -> str:
        """The file that holds frame i (for a stack, the stack file)."""
        return str(self.path)

    def _file_state(self, i: int) -> object:
        """What changes when frame i's file is replaced, comes back or is written further (a folder's frames: the
        file's stat); a bad frame is read again only when it has changed. Always None here: a stack's pages are
        not read again."""
        return None

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def mixed_sizes(self) -> bool:
        """True for a folder whose frames differ in size (each keeps its own)."""
        return self.shape is None

    def frame_shape(self, i: int) -> tuple[int, int] | None:
        """(height, width) of frame i; None for a frame of a mixed-size folder that was unreadable at open (until
        it reads)."""
        i = self._check_index(i)
        return self.shape if self._frame_shapes is None else self._frame_shapes[i]

    def size_record(self) -> tuple[int, int] | dict[str, tuple[int, int]]:
        """What a review project stores: the size every frame has, or stem -> size of every frame whose size
        is known (a mixed-size folder)."""
        if self._frame_shapes is None:
            return self.shape
        return {stem: shape for stem, shape in zip(self.stems, self._frame_shapes) if shape is not None}

    def size_text(self, frames: int | None = None) -> str:
        """The frame size for people: "320x240", or the range of a mixed-size folder's sizes (of its first `frames`
        frames only, when given: what `--limit` selects)."""
        return describe_sizes([self.shape] if self._frame_shapes is None else self._frame_shapes[:frames])

    @property
    def bad_frames(self) -> list[BadFrame]:
        """Unreadable frames in frame order, then the files that got no index."""
        with self._lock:
            return [self._bad_index[i] for i in sorted(self._bad_index)] + self._without_index

    @property
    def unreadable_stems(self) -> set[str]:
        """The stems of the frames known to be unreadable so far."""
        with self._lock:
            return {self.stems[i] for i in self._bad_index}

    def cache_stats(self) -> dict:
        with self._lock:
            return {"size": len(self._cache), "capacity": self.cache_size, "hits": self._hits,
                    "misses": self._misses, "evictions": self._evictions, "decodes": self._decodes,
                    "prefetched": self._prefetched, "in_flight": len(self._in_flight)}

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1}")
        return i

    def _decode(self, i: int, retry: bool = False) -> np.ndarray:
        """Decode frame i (no cache), validate it against the sequence, record it if bad. A frame known bad raises
        its reason again without a read, unless `retry` is asked and its file has changed since it failed."""
        with self._lock:
            bad, failed_state = self._bad_index.get(i), self._bad_state.get(i)
        state = _NOT_LOOKED
        if bad is not None:
            state = self._file_state(i) if retry else failed_state
            if state == failed_state:
                raise FrameReadError(bad.path, bad.reason)
        try:
            image = self._load(i)
            expected = self.shape if self._frame_shapes is None else self._frame_shapes[i]
            # a mixed-size folder's frame: the size its header gave at open (none for one unreadable then)
            whose = "the sequence's" if self._frame_shapes is None else "its header's"
            mismatch = _mismatch(image.shape, image.dtype, expected or image.shape, self.dtype, whose)
            if mismatch is not None:
                if self.kind == "tiff":  # the stack's file holds every frame: name the page, as a missing one is
                    mismatch = f"page {self.page_number(i)}: {mismatch}"
                raise FrameReadError(self.frame_path(i), mismatch)
        except FrameReadError as e:
            if state is _NOT_LOOKED:
                state = self._file_state(i)
            with self._lock:
                self._bad_index[i] = BadFrame(e.path, e.reason, i, self.stems[i])
                self._bad_state[i] = state
            raise
        finally:
            with self._lock:
                self._decodes += 1
        with self._lock:
            if bad is not None:  # read again, and readable now
                self._bad_index.pop(i, None)
                self._bad_state.pop(i, None)
            if expected is None:
                self._frame_shapes[i] = image.shape
        image.flags.writeable = False
        return image

    def _store(self, i: int, image: np.ndarray) -> None:
        with self._lock:
            self._cache[i] = image
            self._cache.move_to_end(i)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
                self._evictions += 1

    def forget(self, indices) -> None:
        """Drop these frames from the cache: the next `frame` reads them from disk again (their files were
        found replaced since they were read)."""
        with self._lock:
            for i in indices:
                self._cache.pop(i, None)

    def frame(self, i: int) -> np.ndarray:
        """Raw frame i (read-only array); raises FrameReadError for an unreadable frame."""
        i = self._check_index(i)
        with self._lock:
            if self._closed:
                raise ValueError("frame source is closed")
            if self._last_index is not None and i != self._last_index:
                self._direction = 1 if i > self._last_index else -1
            self._last_index = i
            image = self._cache.get(i)
            if image is not None:
                self._cache.move_to_end(i)
                self._hits += 1
            else:
                self._misses += 1
                pending = self._in_flight.get(i)
        if image is None:
            if pending is not None and pending.cancel():  # still queued: decode here, beside the worker
                with self._lock:
                    self._in_flight.pop(i, None)
            elif pending is not None:
                pending.exception()  # wait: the prefetch thread is decoding it right now
                with self._lock:
                    image = self._cache.get(i)
            if image is None:
                image = self._decode(i, retry=True)
                self._store(i, image)
        self.prefetch(i, self._direction)
        return image

    def prefetch(self, i: int, direction: int = 1) -> None:
        """Decode the next `prefetch_depth` frames after i (before i when direction < 0) in the background."""
        if self.prefetch_depth == 0:
            return
        step = 1 if direction >= 0 else -1
        with self._lock:
            if self._closed:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-prefetch",
                                                    initializer=lower_thread_priority)
            for k in range(1, self.prefetch_depth + 1):
                j = i + step * k
                if not 0 <= j < len(self):
                    break
                if j in self._cache or j in self._in_flight or j in self._bad_index:
                    continue
                self._in_flight[j] = self._executor.submit(self._prefetch_one, j)

    def _prefetch_one(self, j: int) -> None:
        try:
            with self._lock:
                # a fast scrub leaves stale requests queued: skip those far from where the viewer is now
                stale = (self._closed or j in self._cache or
                         (self._last_index is not None and abs(j - self._last_index) > self.prefetch_depth))
            if stale:
                return
            try:
                image = self._decode(j)
            except FrameReadError:
                return
            self._store(j, image)
            with self._lock:
                self._prefetched += 1
        finally:
            with self._lock:
                self._in_flight.pop(j, None)

    def scan(self, progress=None) -> list[BadFrame]:
        """Decode every frame (bypassing the cache) and return all bad frames; `progress(done, total)` is optional."""
        for i in range(len(self)):
            with self._lock:
                known = i in self._cache or i in self._bad_index
            if not known:
                try:
                    self._decode(i)
                except FrameReadError:
                    pass
            if progress is not None:
                progress(i + 1, len(self))
        return self.bad_frames

    def readable_indices(self) -> list[int]:
        """Indices not known to be bad (after `scan()`, exactly the readable ones)."""
        with self._lock:
            return [i for i in range(len(self)) if i not in self._bad_index]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            self._cache.clear()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<FrameSource {self.kind} {str(self.path)!r}: {len(self)} frames {self.size_text()} {self.dtype}>"


class FolderSource(FrameSource):
    def __init__(self, path: Path, image_dir: Path, files: list[str], stems: list[str], **kwargs):
        self.image_dir = image_dir
        self.files = files
        super().__init__(path, "folder", stems, **kwargs)

    def frame_path(self, i: int) -> str:
        return self.files[i]

    def _file_state(self, i: int) -> tuple | None:
        try:
            stat = os.stat(self.files[i])
        except OSError:  # missing (a share dropped, a broken link)
            return None
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns

    def _load(self, i: int) -> np.ndarray:
        return read_gray(self.files[i])


class TiffStackSource(FrameSource):
    """Pages of a multi-page TIFF: memory-mapped when uncompressed and contiguous, else read page by page.

    Frame i is page `first_page + frame_pages[i]` (of the memory map: its entry `frame_pages[i]`), of which the
    samples `in_page` picks are read: of a hyperstack, channel 1's (`_one_channel`); else every page is a frame."""

    def __init__(self, path: Path, tiff, memmap: np.ndarray | None, frame_pages: Sequence[int], in_page: tuple,
                 first_page: int, **kwargs):
        self._tiff = tiff
        self._memmap = memmap
        self._frame_pages = frame_pages
        self._in_page = in_page
        self.first_page = first_page  # the index of the page holding frame 0: 1 after a thumbnail page
        self._file_lock = threading.Lock()
        super().__init__(path, "tiff", [_page_stem(path, k) for k in range(len(frame_pages))], **kwargs)

    @property
    def memory_mapped(self) -> bool:
        return self._memmap is not None

    def page_number(self, i: int) -> int:
        """The number (from 1) of the file's page that holds frame i."""
        return self.first_page + int(self._frame_pages[i]) + 1

    def _load(self, i: int) -> np.ndarray:
        if self._memmap is not None:
            page = _copy_of_mapped(self._memmap, (self._frame_pages[i], *self._in_page))
        else:
            try:
                with self._file_lock, _tifffile_quiet_here():
                    page = self._tiff.pages[self.page_number(i) - 1].asarray()[self._in_page]
            except Exception as e:
                raise FrameReadError(self.path, f"page {self.page_number(i)}: unreadable ({e})") from None
        return _tiff_page_to_gray(page, f"{self.path} page {self.page_number(i)}")

    def close(self) -> None:
        super().close()
        with self._file_lock:
            if self._tiff is not None:
                self._tiff.close()
                self._tiff = None
            self._memmap = None


def _copy_of_mapped(memmap: np.ndarray, index: tuple) -> np.ndarray:
    """A frame of a memory-mapped stack (`memmap[index]`), copied (cached frames must not pin pages of a closed file)
    into native byte order."""
    return np.array(memmap[index], dtype=memmap.dtype.newbyteorder("="))


def _page_stem(path: Path, k: int) -> str:
    return f"{path.stem}_{k + 1:06d}"


class ImageSource(FrameSource):
    def __init__(self, path: Path, image: np.ndarray, **kwargs):
        self._image = image
        super().__init__(path, "image", [path.stem], **kwargs)

    def _load(self, i: int) -> np.ndarray:
        return self._image


def _list_images(folder: Path, with_broken_links: bool = False) -> list[os.DirEntry]:
    """The image files of a folder in natural order; `with_broken_links` adds links that lead to no file (their
    target missing, or a loop of links)."""
    with os.scandir(folder) as it:
        entries = [e for e in it if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
                   and _is_image_file(e, with_broken_links)]
    entries.sort(key=lambda e: natural_key(e.name))
    return entries


def _is_image_file(entry: os.DirEntry, with_broken_links: bool) -> bool:
    try:
        if entry.is_file():
            return True
        return with_broken_links and entry.is_symlink() and not os.path.exists(entry.path)
    except OSError:  # is_file() follows the link: a loop of links (ELOOP), or a name it cannot resolve
        try:
            return with_broken_links and entry.is_symlink()
        except OSError:
            return False




def _head_and_tail(fd: int, size: int = 32) -> tuple[bytes, bytes]:
    """The first `size` and the last END_SEARCHED bytes of an open file."""
    head = os.read(fd, size)
    return head, os.pread(fd, END_SEARCHED, max(0, os.fstat(fd).st_size - END_SEARCHED))


def _jpeg_size(fd: int) -> tuple[int, int] | None:
    """(height, width) from an open JPEG's start-of-frame segment, walking the segment headers only; None
    when the file ends, is malformed or puts the height in a later DNL segment (the decode will tell)."""
    pos = 2  # after SOI
    for _ in range(4096):
        seg = os.pread(fd, 9, pos)
        if len(seg) < 4 or seg[0] != 0xFF:
            return None
        marker = seg[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan began before any frame header
            return None
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", seg[5:9]) if len(seg) == 9 else (0, 0)
            return (height, width) if height and width else None
        pos += 2 + struct.unpack(">H", seg[2:4])[0]
    return None


def _tiff_stack_pages(tiff) -> int:
    """The frame count of a TIFF that is a stack of frames (its pages from `first_frame_page`): more than one page
    of the first frame page's shape and sample type, a page that is no reduced copy of it (not smaller in both
    height and width: a frame of another sample type or size, which the stack then lists as unreadable), or a frame
    count above 1 in its metadata (a stack cut short keeps it); 0 for one image, whose other pages, if any, are
    thumbnails or previews."""
    pages = tiff.pages
    start = first_frame_page(pages)
    n_pages = len(pages) - start
    if _later_pages_are_frames(pages, start):
        return n_pages
    declared = _declared_frames(tiff, pages[start], len(pages[start].shape))
    return max(n_pages, declared) if declared > 1 else 0


def _check_has_pages(tiff) -> None:
    """ValueError when a TIFF holds no page (its header points to none: tifffile then lists no page, and indexing
    page 0 said "index 0 out of range(0)")."""
    if len(tiff.pages) == 0:
        raise ValueError("it holds no image: damaged or cut short?")


def _later_pages_are_frames(pages, start: int) -> bool:
    """Whether a TIFF's pages after its first frame page (`start`) hold frames: one of the first frame page's shape
    and sample type, or one that is no reduced copy of it (a frame of another size or type, unreadable in the
    stack)."""
    first = pages[start]
    later = (pages[k] for k in range(start + 1, len(pages)))  # (pages[1:] would read every page of a long stack first)
    return any((page.shape == first.shape and page.dtype == first.dtype) or not _reduced_copy(page, first)
               for page in later)


def _reduced_copy(page, first) -> bool:
    """Whether a TIFF page is a thumbnail, preview or mask of the first: flagged so (NewSubfileType: reduced
    resolution, or a transparency mask), of another number of samples (a colour preview of a grey image), or
    smaller than the first in both height and width."""
    if getattr(page, "subfiletype", 0) & 0b101:
        return True
    if getattr(page, "samplesperpixel", 1) != getattr(first, "samplesperpixel", 1):
        return True
    return smaller_in_both(page, first)


def _stack_in_folder(pages: int) -> str:
    # one frame per file: its other pages would vanish without a word
    return (f"multi-page TIFF of {pages} pages in a folder of frames (a stack, not one frame): open it on its "
            "own to read it as a stack")


def _tiff_size(file: str) -> tuple[int, int, np.dtype] | None:
    """(height, width, dtype) of a TIFF's first frame page (after a thumbnail); None where the decode must tell.
    Raises FrameReadError for a stack of frames (a multi-page TIFF)."""
    import tifffile

    try:
        with _tifffile_quiet_here(), tifffile.TiffFile(file) as tf:
            page = tf.pages[first_frame_page(tf.pages)]
            height, width, dtype = int(page.imagelength), int(page.imagewidth), page.dtype
            stack = _tiff_stack_pages(tf)
    except Exception:  # tifffile raises many types for corrupt files: the decode reports the reason
        return None
    if stack:
        raise FrameReadError(file, _stack_in_folder(stack))
    read_as = None if dtype is None else read_dtype(dtype)
    return None if read_as is None else (height, width, read_as)


def _stored_dtype(file: str, read_as: np.dtype) -> np.dtype:
    """The sample type a frame file stores: a TIFF's int16 or float64 where it is read as float32 (`read_dtype`),
    else the type it is read as."""
    if read_as != np.float32:
        return read_as
    import tifffile

    try:
        with _tifffile_quiet_here(), tifffile.TiffFile(file) as tf:
            return tf.pages[first_frame_page(tf.pages)].dtype
    except Exception:  # no TIFF (a float32 frame is one), or replaced since it was read
        return read_as


def _header_of(file: str) -> tuple[int, int, np.dtype] | None:
    """(height, width, dtype) of an image file without decoding its pixels (PNG/BMP header, JPEG frame
    header, TIFF first page); None where that takes a decode. Raises FrameReadError when the file cannot
    be read, is no image, is a PNG or JPEG cut short (its end marker missing) or a multi-page TIFF (a stack)."""
    try:
        # os.open/os.read: half the cost of open() for the 10k-file folders this runs over
        fd = os.open(file, os.O_RDONLY)
        try:
            head, tail = _head_and_tail(fd)
            if not head:
                raise FrameReadError(file, "empty file (0 bytes)")
            fmt = _sniff_format(head)
            if fmt is None:
                raise FrameReadError(file, "not an image (unrecognised file header)")
            # the decoders would return a cut-short file as a partly grey image with only a warning
            if tail.rstrip(b"\x00") and (reason := missing_end(head, tail)):  # (zeros only: the decode will tell)
                raise FrameReadError(file, reason)
            if fmt == "jpeg":
                size = _jpeg_size(fd)
                return None if size is None else (*size, np.dtype(np.uint8))
        finally:
            os.close(fd)
        if fmt == "tiff":
            return _tiff_size(file)
        return _header_info(head, fmt)
    except OSError as e:
        raise _cannot_open(file, e) from None


def frames_folder(path: Path) -> Path:
    """The folder `open_source(path)` reads a folder's frames from: path/images for a folder holding no image
    file but an images/ folder (a clip: images/ beside its boxes.csv or masks/), else `path` itself."""
    return _frame_entries(path)[0]


def _frame_entries(path: Path) -> tuple[Path, list[os.DirEntry]]:
    """(`frames_folder(path)`, its image files)."""
    entries = _list_images(path, with_broken_links=True)
    if not entries and (path / "images").is_dir():
        return path / "images", _list_images(path / "images", with_broken_links=True)
    return path, entries


def _open_folder(path: Path, cache_size: int, prefetch: int) -> FrameSource:
    image_dir, entries = _frame_entries(path)
    if not entries:
        raise SourceError(f"{path}: no image files (png, bmp, jpg, tif) in the folder")

    # every file is a frame, readable or not, so that repairing a file does not change the frame list
    without_index: list[BadFrame] = []
    files, stems = [], []
    seen_stems: set[str] = set()
    for entry in entries:
        file, stem = entry.path, os.path.splitext(entry.name)[0]
        if stem in seen_stems:
            without_index.append(BadFrame(file, f"duplicate stem {stem!r} (another file has the same name)",
                                          stem=stem))
        else:
            seen_stems.add(stem)
            files.append(file)
            stems.append(stem)

    unreadable: dict[int, str] = {}  # frame index -> reason
    headers: list[tuple[int, int, np.dtype] | None] = []
    for i, file in enumerate(files):
        try:
            headers.append(_header_of(file))
        except FrameReadError as e:
            headers.append(None)
            unreadable[i] = e.reason

    # The first frame that decodes defines the sequence's sample type, and its size unless the sizes differ.
    # Frames whose header gives the type most headers give are tried first, then those whose header gives
    # none: a stray frame of another type must not make the bulk of the sequence unreadable.
    header_dtypes = Counter(info[2] for i, info in enumerate(headers) if info is not None and i not in unreadable)
    usual_dtype = header_dtypes.most_common(1)[0][0] if header_dtypes else None
    candidates = sorted((i for i in range(len(files)) if i not in unreadable),
                        key=lambda i: 1 if headers[i] is None else 0 if headers[i][2] == usual_dtype else 2)
    first_index = first = None
    for i in candidates:
        try:
            first = read_gray(files[i])
        except FrameReadError as e:
            unreadable[i] = e.reason
            continue
        first_index = i
        break
    if first is None:
        # reasons alike but for the file they name ("broken link (its target X does not exist)") count as one
        kind, count = Counter(r.split(" (")[0] for r in unreadable.values()).most_common(1)[0]
        reason = next(r for r in unreadable.values() if r.split(" (")[0] == kind)
        if count < len(unreadable):
            others = f" ({count} of them; the others for other reasons)"
        else:
            others = "" if len(set(unreadable.values())) == 1 else f" (the {count - 1} others alike)"
        raise SourceError(f"{path}: none of the {len(entries)} image files is readable: {reason}{others}")
    dtype = first.dtype
    sizes = {(info[0], info[1]) for i, info in enumerate(headers) if info is not None and i not in unreadable}
    sizes.add(first.shape)
    shape, frame_shapes = first.shape, None
    if len(sizes) > 1:
        shape = None
        frame_shapes = [None if i in unreadable or info is None else (info[0], info[1])
                        for i, info in enumerate(headers)]
        frame_shapes[first_index] = first.shape
        for i, known in enumerate(frame_shapes):
            if known is None and i not in unreadable:  # a file whose header does not give its size
                try:
                    image = read_gray(files[i])
                except FrameReadError as e:
                    unreadable[i] = e.reason
                    continue
                frame_shapes[i] = image.shape
                headers[i] = (*image.shape, image.dtype)

    for i, info in enumerate(headers):
        if info is not None and i not in unreadable:
            expected = (info[0], info[1]) if shape is None else shape
            mismatch = _mismatch((info[0], info[1]), info[2], expected, dtype)
            if mismatch is not None:
                unreadable[i] = mismatch
                if frame_shapes is not None:
                    frame_shapes[i] = None
    bad = [BadFrame(files[i], reason, i, stems[i]) for i, reason in sorted(unreadable.items())] + without_index
    source = FolderSource(path, image_dir, files, stems, shape=shape, dtype=dtype,
                          stored_dtype=_stored_dtype(files[first_index], dtype), bad_frames=bad,
                          cache_size=cache_size, prefetch=prefetch, frame_shapes=frame_shapes)
    first.flags.writeable = False
    source._store(first_index, first)
    return source


def _link_after_last_page(tiff) -> int | None:
    """The file offset the last page's IFD gives for the next page: 0 where the page chain ends properly,
    None where the file ends inside that IFD."""
    fmt, fh = tiff.tiff, tiff.filehandle
    offset = tiff.pages[-1].offset
    fh.seek(offset)
    count = fh.read(fmt.tagnosize)
    if len(count) < fmt.tagnosize:
        return None
    fh.seek(offset + fmt.tagnosize + struct.unpack(fmt.tagnoformat, count)[0] * fmt.tagsize)
    link = fh.read(fmt.offsetsize)
    return struct.unpack(fmt.offsetformat, link)[0] if len(link) == fmt.offsetsize else None


def _declared_frames(tiff, first_page, frame_ndim: int) -> int:
    """The frame count a TIFF's metadata give (ImageJ's image count, or the shape tifffile wrote on the first frame
    page), which stays known when the file is cut short; 0 where they give none. From that page alone: tifffile's
    shaped_metadata builds every series."""
    from tifffile.tifffile import shaped_description_metadata

    if tiff.is_imagej:
        return int((tiff.imagej_metadata or {}).get("images", 0))
    if first_page.shaped_description is not None:
        shape = shaped_description_metadata(first_page.shaped_description).get("shape") or ()
        return int(np.prod(shape[:-frame_ndim]))
    return 0


def _contiguous_data_offset(series, in_series: int, n_stored: int, n_pages: int) -> int | None:
    """Where the stack's frames (of a hyperstack, its pages) lie one after another, uncompressed, in the file; None
    where they do not: where the series holds fewer (`in_series`) than the stack (`n_stored`). Of an ImageJ or
    tifffile stack with one page left (cut short, or ImageJ's way past 4 GB), tifffile gives its first page's data:
    the frames its metadata count follow it, as ImageJ reads them."""
    if series.dataoffset is not None and (in_series == n_stored or n_pages == 1):
        return series.dataoffset
    return None


_CHANNEL_NOUNS = {"C": "channel", "S": "sample", "Z": "z-slice"}


@dataclass(frozen=True)
class _OneChannel:
    """Where a hyperstack's first channel lies: frame k is the stack's page `frame_pages[k]` (counted from its first
    frame page), of whose array `in_page` picks the channel's samples."""
    frame_pages: np.ndarray
    in_page: tuple
    n_pages: int  # the pages the stack's axes give, every channel's
    note: str  # what `FrameSource.skipped_pages` says of the channels not read


def _stack_axes(tiff, series, page) -> tuple[str, tuple[int, ...]]:
    """The axes of a TIFF stack whose first frame page is `page`, and their sizes ("", () where none are known): of
    an ImageJ file, those its metadata give, which a file cut short keeps (tifffile then gives one page's series), in
    the order ImageJ stores them (TZC, then the page's axes); else those of tifffile's `series`."""
    if tiff.is_imagej:
        metadata = tiff.imagej_metadata or {}
        counts = {axis: int(metadata.get(key, 1))
                  for axis, key in (("T", "frames"), ("Z", "slices"), ("C", "channels"))}
        if np.prod(list(counts.values())) != int(metadata.get("images", 1)):  # a plain stack of images, no hyperstack
            return "", ()
        across_pages = {axis: count for axis, count in counts.items() if count > 1}
        return "".join(across_pages) + page.axes, (*across_pages.values(), *page.shape)
    if series is None:
        return "", ()
    return series.axes, tuple(series.shape)


def _one_channel(axes: str, sizes: tuple[int, ...], page) -> _OneChannel | None:
    """How a TIFF stack of these axes (`_stack_axes`) with more than one channel reads as its first channel's frames,
    in time order: the first of a C axis, of an S axis that is no colour (samples other than 3 or 4), and of a Z axis
    beside a T axis (z-slice 1 of each time point). None for a stack with no such axis, or with no other axis beside
    the image: a C or Z axis alone is its frames (tifffile writes a stack it is given no axes for as ImageJ
    channels). `page`: the stack's first frame page."""
    # the axes one page holds: the series' last ones (YX, or with samples SYX or YXS; tifffile's TCYX of 3 or 4
    # channels stores each time point as one planar page the page itself calls SYX)
    n_leading = len(axes) - page.ndim  # the axes across pages
    if len(axes) != len(sizes) or n_leading < 0 or tuple(sizes[n_leading:]) != tuple(page.shape):
        return None
    leading = axes[:n_leading]
    channels = [k for k, axis in enumerate(leading) if axis == "C" or (axis == "Z" and "T" in leading)]
    if len(channels) == n_leading:
        channels = []
    in_page_channels = [k for k in range(n_leading, len(axes))
                        if (axes[k] == "S" and sizes[k] not in (3, 4)) or (axes[k] == "C" and n_leading > 0)]
    channels += in_page_channels
    if not channels:
        return None
    n_pages = int(np.prod(sizes[:n_leading]))
    first_of_each = tuple(0 if k in channels else slice(None) for k in range(len(axes)))
    frame_pages = np.arange(n_pages).reshape(sizes[:n_leading])[first_of_each[:n_leading]].ravel()
    not_read = [f"{_CHANNEL_NOUNS[axes[k]]} 2 of 2" if sizes[k] == 2 else
                f"{_CHANNEL_NOUNS[axes[k]]}s 2-{sizes[k]} of {sizes[k]}" for k in channels]
    read = " and ".join(f"{_CHANNEL_NOUNS[axes[k]]} 1" for k in channels)
    note = " and ".join(f"{text} (axis {axes[k]})" for text, k in zip(not_read, channels))
    return _OneChannel(frame_pages, first_of_each[n_leading:], n_pages,
                       f"{note} not read: the frames are those of {read}")


def _pages_out_of_order(series, start: int) -> list[int] | None:
    """Of an OME series, the file page (counted from `start`) of each of its planes in axes order, where that is not
    the file's own order (its TiffData may put channel 2 before time point 2); None where the orders agree, or for
    another kind of series (whose pages are not listed here: a long stack's would all be read)."""
    if series is None or series.kind != "ome":
        return None
    order = [page.index - start if page is not None else len(series.pages) for page in series.pages]
    return None if order == list(range(len(order))) else order


def _missing_page(k: int) -> str:
    return f"page {k + 1}: missing or cut short, the file ends early (truncated file?)"


def _pages_not_frames(pages, start: int, one_image: bool) -> list[str]:
    """What `FrameSource.skipped_pages` says of a TIFF's pages that hold no frame: a thumbnail before the frames
    (`start` 1), and, of `one_image`, the reduced copies after it (thumbnails, previews, masks)."""
    skipped = []
    if start:
        thumbnail = pages[0]
        skipped.append(f"page 1: {thumbnail.imagewidth}x{thumbnail.imagelength} thumbnail or preview, not a frame")
    if one_image and len(pages) > start + 1:
        first, last = start + 2, len(pages)
        skipped.append(f"page {first}: a reduced copy of the image (a thumbnail, preview or mask), not a frame"
                       if first == last else
                       f"pages {first}-{last}: reduced copies of the image (thumbnails, previews or masks), not frames")
    return skipped


def _open_tiff(path: Path, cache_size: int, prefetch: int) -> FrameSource:
    import tifffile

    with _tifffile_quiet_here():
        try:
            tiff = tifffile.TiffFile(path)
        except Exception as e:
            raise SourceError(f"{path}: unreadable TIFF ({e})") from None
        try:
            _check_has_pages(tiff)
            start = first_frame_page(tiff.pages)  # 1 after a thumbnail page
            first_page = tiff.pages[start]
            series = tiff.series[0]
            if start:  # tifffile gives a thumbnail a series of its own, but may count a flagged one among the frames
                series = next((s for s in tiff.series if s.keyframe.index == start), None)
            shape = first_page.shape if series is None else series.shape
            is_color = (first_page if series is None else series).axes.endswith("S") and shape[-1] in (3, 4)
            frame_ndim = 3 if is_color else 2
            n_pages = len(tiff.pages) - start  # the pages that hold frames
            series_frames = int(np.prod(shape[:-frame_ndim]))
            declared_frames = _declared_frames(tiff, first_page, frame_ndim)
            stored_dtype = first_page.dtype
            link = _link_after_last_page(tiff)
            if len(shape) <= frame_ndim and declared_frames <= 1 and link == 0 and not _later_pages_are_frames(
                    tiff.pages, start):
                skipped = _pages_not_frames(tiff.pages, start, one_image=True)
                tiff.close()
                return _open_image(path, cache_size, stored_dtype, skipped)
            channel = _one_channel(*_stack_axes(tiff, series, first_page), first_page)
            if channel is None:
                # pages written one at a time (a series each) or of several shapes: every page is a frame, and
                # a page that does not match the first one is a bad frame when it is read
                n_frames = max(n_pages, series_frames, declared_frames)
                frame_pages, in_page, skipped_channels = range(n_frames), (), []
                # what the file holds one after another, each of `stored_shape`: frames (of a stack tifffile wrote
                # as one page of 3 or 4 sample planes, those planes)
                n_stored, in_series, stored_shape = n_frames, series_frames, shape[-2:]
            else:
                frame_pages, in_page, skipped_channels = channel.frame_pages, channel.in_page, [channel.note]
                n_frames = len(frame_pages)
                n_stored, in_series, stored_shape = max(n_pages, channel.n_pages), channel.n_pages, first_page.shape
                stored_order = _pages_out_of_order(series, start)
                if stored_order is not None:  # OME may store the planes in another order than its axes': read each
                    frame_pages = np.array([stored_order[k] for k in frame_pages])
                    series = None  # nor memory-mapped in axes order
            mappable = series is not None and not is_color
            offset = _contiguous_data_offset(series, in_series, n_stored, n_pages) if mappable else None
            memmap = None
            if offset is not None:
                dtype = np.dtype(tiff.byteorder + series.dtype.char)
                stored_bytes = int(np.prod(stored_shape)) * dtype.itemsize
                in_file = min(n_stored, max(0, os.path.getsize(path) - offset) // stored_bytes)
                if in_file == 0:
                    raise SourceError(f"{path}: {_missing_page(start)}")
                memmap = np.memmap(path, dtype, "r", offset, (in_file, *stored_shape))
            elif channel is None and link == 0 and n_frames > n_pages:
                raise SourceError(f"{path}: {n_pages} TIFF pages for {n_frames} frames; cannot read lazily")
            else:
                in_file = n_pages
            bad = [BadFrame(str(path), _missing_page(start + frame_pages[k]), k, _page_stem(path, k))
                   for k in range(n_frames) if frame_pages[k] >= in_file]
            if link != 0 and n_stored == n_pages:  # pages lost, and nothing says how many
                cut = link is None or link >= os.path.getsize(path)
                why = "the file ends before them (truncated file?)" if cut else "the link to them is damaged"
                bad.append(BadFrame(str(path), f"pages after page {start + n_pages}: missing, {why}"))
            first = _tiff_page_to_gray(_copy_of_mapped(memmap, (0, *in_page)) if memmap is not None
                                       else first_page.asarray()[in_page], path)
        except SourceError:
            tiff.close()
            raise
        except FrameReadError as e:
            tiff.close()
            raise SourceError(f"{path}: {e.reason}") from None
        except Exception as e:
            tiff.close()
            raise SourceError(f"{path}: unreadable TIFF ({e})") from None
    source = TiffStackSource(path, tiff, memmap, frame_pages, in_page, start, shape=first.shape, dtype=first.dtype,
                             stored_dtype=stored_dtype, bad_frames=bad, cache_size=cache_size, prefetch=prefetch,
                             skipped_pages=_pages_not_frames(tiff.pages, start, one_image=False) + skipped_channels)
    first.flags.writeable = False
    source._store(0, first)
    return source


def _open_image(path: Path, cache_size: int, stored_dtype: np.dtype | None = None,
                skipped_pages: Sequence[str] = ()) -> FrameSource:
    """One image as a one-frame source (nothing to read ahead). `stored_dtype` and `skipped_pages`: of a TIFF,
    as `FrameSource` keeps them."""
    try:
        image = read_gray(path)
    except FrameReadError as e:
        raise SourceError(f"{path}: {e.reason}") from None
    image.flags.writeable = False
    return ImageSource(path, image, shape=image.shape, dtype=image.dtype, stored_dtype=stored_dtype, bad_frames=[],
                       cache_size=cache_size, prefetch=0, skipped_pages=skipped_pages)


def open_source(path: str | os.PathLike, cache_size: int = 64, prefetch: int = 4) -> FrameSource:
    """Open a folder of frames, a multi-page TIFF or one image; raises SourceError with a one-line message."""
    path = Path(path).expanduser()
    if not path.exists():
        try:
            os.stat(path)  # (exists() says False of a link whose target is missing, or of a loop of links)
        except OSError as e:
            if os.path.islink(path):
                raise SourceError(f"{path}: {_cannot_open(path, e).reason}") from None
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_folder(path, cache_size, prefetch)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path, cache_size, prefetch)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _open_image(path, cache_size)
    raise SourceError(f"{path}: not a folder or an image file ({', '.join(IMAGE_SUFFIXES)})")


# ---- ground truth next to a source -------------------------------------------------------------

class GroundTruth:
    """Reference labels found beside a source: a masks/ folder (by stem) and/or a boxes.csv.

    Masks are read with the metrics' rule (`model.metrics.ground_truth_target`): 255 is target, a pure
    0/1 mask is accepted. A mask whose other nonzero values are therefore dropped (an interpolated mask)
    is listed in `mask_warnings` when it is read. One left with no target pixel by that is not taken as a
    reference to commit (`mask` raises UnusableMask), and one of another size than its frame is not shown or
    scored over it (`frame_mask`: listed in `mask_warnings` too). A boxes.csv that cannot be read leaves the
    boxes out and says why in `boxes_error`; the masks are still used.
    """

    def __init__(self, masks_dir: Path | None, boxes_path: Path | None, stems: Sequence[str] = ()):
        self.masks_dir = masks_dir
        self.boxes_path = boxes_path
        self.mask_warnings: list[tuple[Path, str]] = []  # (mask file, what is wrong with it), each once
        self._warnings_lock = threading.Lock()
        self._mask_files: dict[str, Path] = {}
        if masks_dir is not None:
            for entry in _list_images(masks_dir):
                self._mask_files[Path(entry.name).stem] = Path(entry.path)
        self._boxes: dict[int, list[tuple[float, float, float, float]]] = {}
        self.boxes_error: str | None = None
        if boxes_path is not None:
            try:
                self._boxes = read_boxes_csv(boxes_path)
            except (BoxesFileError, OSError) as error:
                self.boxes_error = f"{error}; its boxes are not used"
        # which of boxes.csv's frames each of the source's is, as irsam eval --clip tells them: by the number its
        # name ends in (a frame deleted from the clip leaves a gap; the few names not numbered as the others' are,
        # such as a copy 000040a.png, have no number and so no boxes), else by position
        self.numbering = number_clip_frames([Path(f"{stem}.png") for stem in stems], self._boxes)

    def mask(self, stem: str) -> np.ndarray | None:
        """Boolean mask for the frame's stem (SIRST's `_pixels0` suffix accepted), as a reference to commit; None
        without one. Raises UnusableMask for one whose nonzero pixels are all interpolated (blurred, or saved as
        JPEG): none is target, so it would commit an empty mask. FrameReadError for one that cannot be read."""
        mask, dropped = self._read(stem)
        if dropped and not mask.any():
            raise UnusableMask(f"all its {dropped} nonzero pixels are strictly between 0 and 255 (interpolated "
                               "or coloured mask?): none is target, so it would commit an empty mask")
        return mask

    def frame_mask(self, stem: str, shape: tuple[int, int] | None) -> np.ndarray | None:
        """The mask to show and score over its frame, of `shape` (None: not known), read as the metrics read it (an
        interpolated one's target may be empty); None also for one of another size, which `mask_warnings` names."""
        mask, _ = self._read(stem)
        if mask is not None and shape is not None and mask.shape != tuple(shape):
            self._warn(self._file_of(stem), f"mask {mask.shape[1]}x{mask.shape[0]} differs from the frame's "
                                            f"{shape[1]}x{shape[0]}; not used")
            return None
        return mask

    def _read(self, stem: str) -> tuple[np.ndarray | None, int]:
        """(the mask, its `interpolated_pixels`)."""
        file = self._file_of(stem)
        if file is None:
            return None, 0
        values = read_gray(file)
        dropped = interpolated_pixels(values)
        if dropped:
            self._warn(file, f"{dropped} pixels strictly between 0 and 255 are not target (interpolated or coloured "
                             "mask?)")
        return ground_truth_target(values), dropped

    def has_mask(self, stem: str) -> bool:
        """Whether a mask file of the frame is here, found as `mask` finds it, without reading it."""
        return self._file_of(stem) is not None

    def _file_of(self, stem: str) -> Path | None:
        return self._mask_files.get(stem) or self._mask_files.get(f"{stem}_pixels0")

    def _warn(self, file: Path, reason: str) -> None:
        with self._warnings_lock:
            if (file, reason) not in self.mask_warnings:
                self.mask_warnings.append((file, reason))

    def boxes(self, frame_index: int) -> list[tuple[float, float, float, float]]:
        """(x, y, w, h) boxes of the source's 0-based frame (boxes.csv's frame `numbering` gives it), x/y the
        0-based top-left corner; none for a frame `numbering` gives no frame number."""
        numbers = self.numbering.numbers
        number = numbers[frame_index] if 0 <= frame_index < len(numbers) else int(frame_index) + 1
        return [] if number is None else list(self._boxes.get(number - 1, []))

    @property
    def has_masks(self) -> bool:
        return bool(self._mask_files)

    @property
    def has_boxes(self) -> bool:
        return self.boxes_path is not None and self.boxes_error is None


def find_ground_truth(source: FrameSource) -> GroundTruth | None:
    """Masks/ folder with matching stems (in the images' folder, or the one above it: a data set's images/ and
    masks/) and/or boxes.csv (there too for a folder of frames; a TIFF stack's or an image's in its own
    folder: boxes.csv numbers frames, so one a folder up may be another clip's), or None."""
    folder_source = isinstance(source, FolderSource)
    images = source.image_dir if folder_source else Path(source.path).parent
    places = [images, images.parent]
    wanted = set(source.stems)
    masks_dir = None
    for place in places:
        candidate = place / "masks"
        if candidate.is_dir() and candidate != getattr(source, "image_dir", None):
            stems = {Path(e.name).stem.removesuffix("_pixels0") for e in _list_images(candidate)}
            if stems & wanted:
                masks_dir = candidate
                break
    boxes_path = next((p / "boxes.csv" for p in places[: 2 if folder_source else 1] if (p / "boxes.csv").is_file()),
                      None)
    if masks_dir is None and boxes_path is None:
        return None
    return GroundTruth(masks_dir, boxes_path, source.stems)
