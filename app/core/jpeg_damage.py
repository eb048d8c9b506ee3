"""JPEG damage that libjpeg papers over.

libjpeg decodes a JPEG whose compressed data is damaged or cut short (and closed again with an end marker)
into a partly grey or garbled image, with only an anonymous "Corrupt JPEG data" line on stderr: neither
cv2 nor PIL nor imagecodecs lets the caller see that warning. So after a successful decode the file's
structure is checked here: where each scan's compressed data ends, the restart markers in it, the scans
present; and where the decoded image shows the sign of data that ran out (libjpeg fills the blocks it has
no data for with mid-grey, 128), the Huffman codes of that stretch are walked to count its blocks exactly.

`jpeg_damage` is what `app.core.frames.read_gray` calls after a decode; `jpeg_undecodable` says why one failed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

# SOF markers (baseline, extended, progressive, lossless; Huffman and arithmetic) carry the frame size
JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_PROGRESSIVE = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
_JPEG_LOSSLESS = frozenset((0xC3, 0xC7, 0xCB, 0xCF))
_JPEG_HUFFMAN_SEQUENTIAL = frozenset((0xC0, 0xC1))  # baseline and extended sequential, Huffman-coded
_JPEG_MAX_WALK_CHECKS = 64  # restart intervals ending in a grey block walked one by one; more: the whole scan


def _jpeg_damaged(detail: str) -> str:
    return f"corrupt JPEG (damaged or cut-short data: {detail})"


@dataclass
class _JpegFrame:
    marker: int
    precision: int
    height: int
    width: int
    components: list[tuple[int, int, int]]  # (id, horizontal, vertical sampling factor)


@dataclass
class _JpegScan:
    components: list[int]  # indices into the frame's components
    tables: list[tuple[int, int]]  # each one's (DC, AC) Huffman table number
    huffman: dict  # (class, number) -> (counts, symbols) of the tables defined when the scan began
    ss: int
    se: int
    al: int
    restart: int  # the restart interval in MCUs (0: none)
    start: int  # the compressed data: data[start:end], restarts the positions of its RSTn markers
    end: int
    restarts: np.ndarray


def _parse_jpeg(data: bytes) -> tuple[_JpegFrame, list[_JpegScan]] | str:
    """The frame header and scans of a JPEG up to its first end-of-image marker, or why its structure is
    broken (a reason for `_jpeg_damaged`)."""
    arr = np.frombuffer(data, np.uint8)
    # inside compressed data an 0xFF byte is followed by 0x00 (a stuffed 0xFF) or is a restart marker; any
    # other marker ends the scan's data (0xFF 0xFF: a fill byte before a marker)
    ffs = np.flatnonzero(arr[:-1] == 0xFF)
    after = arr[ffs + 1]
    is_restart = (after >= 0xD0) & (after <= 0xD7)
    ends = ffs[(after != 0x00) & (after != 0xFF) & ~is_restart]
    restarts = ffs[is_restart]
    n = len(data)
    pos, frame, restart, huffman, scans = 2, None, 0, {}, []
    scan_end = after_scan = None  # where the last scan's data ended, and the segment that followed it

    def broken(reason: str) -> str:
        # bytes written over compressed data: a marker among them ends the scan early, and what follows it
        # is no segment
        if pos in (scan_end, after_scan):
            return f"a stray marker 0x{data[scan_end + 1]:02X} inside its compressed data, at byte {scan_end}"
        return reason

    while True:
        if pos + 2 > n:
            return broken("the file ends before its end-of-image marker")
        if data[pos] != 0xFF:
            stray = next((int(m) for m in ends if m > pos), n) - pos
            return broken(f"{stray} stray bytes where a marker belongs, at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers: libjpeg passes over them
            pos += 2
            continue
        if marker < 0xC0:  # reserved: no JPEG writer puts one in
            return broken(f"an unknown marker 0x{marker:02X} at byte {pos}")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > n:
            return broken(f"marker 0x{marker:02X} at byte {pos} runs past the end of the file")
        if pos == scan_end:
            after_scan = end
        body = data[pos + 4:end]
        if marker in JPEG_SOF:
            if len(body) < 6 or len(body) < 6 + 3 * body[5]:
                return "a damaged frame header"
            components = [(body[6 + 3 * k], body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15) for k in range(body[5])]
            if not components or any(h < 1 or v < 1 for _, h, v in components):
                return "a damaged frame header"
            frame = _JpegFrame(marker, body[0], int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"),
                               components)
        elif marker == 0xC4:  # one or more Huffman tables
            k = 0
            while k + 17 <= len(body):
                counts = tuple(body[k + 1:k + 17])
                symbols = bytes(body[k + 17:k + 17 + sum(counts)])
                huffman[(body[k] >> 4, body[k] & 15)] = (counts, symbols)
                k += 17 + sum(counts)
        elif marker == 0xDD and len(body) >= 2:
            restart = int.from_bytes(body[:2], "big")
        elif marker == 0xDA:
            if frame is None or not body or len(body) < 4 + 2 * body[0]:
                return "a damaged scan header"
            ids = [c[0] for c in frame.components]
            selectors = [(body[1 + 2 * k], body[2 + 2 * k]) for k in range(body[0])]
            if not selectors or any(cid not in ids for cid, _ in selectors):
                return "a damaged scan header"
            ss, se, approximation = body[1 + 2 * len(selectors):4 + 2 * len(selectors)]
            k = int(np.searchsorted(ends, end))
            if k == len(ends):
                return "its compressed data runs to the end of the file"
            stop = int(ends[k])
            lo, hi = np.searchsorted(restarts, [end, stop])
            scans.append(_JpegScan([ids.index(cid) for cid, _ in selectors], [(t >> 4, t & 15) for _, t in selectors],
                                   dict(huffman), ss, se, approximation & 15, restart, end, stop, restarts[lo:hi]))
            pos = scan_end = stop
            continue
        pos = end
    if frame is None or not scans:
        return "no image data before its end-of-image marker"
    return frame, scans


def _jpeg_mcus(frame: _JpegFrame, scan: _JpegScan) -> int:
    """How many MCUs (minimum coded units) the scan codes."""
    unit = 1 if frame.marker in _JPEG_LOSSLESS else 8  # a lossless JPEG codes samples, not 8x8 blocks
    hmax = max(h for _, h, _ in frame.components)
    vmax = max(v for _, _, v in frame.components)
    if len(scan.components) == 1:  # not interleaved: one block of that component per MCU
        _, h, v = frame.components[scan.components[0]]
        width, height = -(-frame.width * h // hmax), -(-frame.height * v // vmax)
        return -(-width // unit) * -(-height // unit)
    return -(-frame.width // (unit * hmax)) * -(-frame.height // (unit * vmax))


def _jpeg_restart_damage(data: bytes, frame: _JpegFrame, scan: _JpegScan) -> str | None:
    """Whether the scan's restart markers are the ones its restart interval asks for, in order."""
    found = len(scan.restarts)
    if scan.restart == 0:
        return "a restart marker inside its compressed data, which has no restart intervals" if found else None
    expected = -(-_jpeg_mcus(frame, scan) // scan.restart) - 1
    numbers = np.frombuffer(data, np.uint8)[scan.restarts + 1] - 0xD0
    if not np.array_equal(numbers, np.arange(found) % 8):
        return f"restart marker {int(np.flatnonzero(numbers != np.arange(found) % 8)[0]) + 1} is out of order"
    trailing = found == expected + 1 and not data[int(scan.restarts[-1]) + 2:scan.end].strip(b"\xff")
    if found < expected:
        return f"its compressed data holds {found + 1} of its {expected + 1} restart intervals"
    if found > expected and not trailing:
        return f"{found - expected} restart markers more than its {expected + 1} restart intervals need"
    return None


def _jpeg_coverage_damage(frame: _JpegFrame, scans: list[_JpegScan]) -> str | None:
    """Whether the scans code every component (and, progressive, every coefficient to full precision): the
    scans lost from a JPEG cut short between them."""
    if frame.marker in _JPEG_PROGRESSIVE:
        precision = np.full((len(frame.components), 64), 99)
        for scan in scans:
            for c in scan.components:
                precision[c, scan.ss:scan.se + 1] = np.minimum(precision[c, scan.ss:scan.se + 1], scan.al)
        if (precision != 0).any():
            return "its progressive scans stop before the image is complete"
    elif {c for scan in scans for c in scan.components} != set(range(len(frame.components))):
        return "no scan codes some of its colour components"
    return None


def _huffman_lookup(counts: tuple, symbols: bytes, ac: bool) -> list[int]:
    """For every 16-bit value that begins with a code: the bits its symbol takes, code and value bits (0: no
    code), plus, for an AC table, 256 times how far it moves in the block (128 for end-of-block)."""
    table = [0] * 65536
    code = k = 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            if k >= len(symbols) or code >= 1 << length:
                return table  # a bogus table: libjpeg refuses it, and no valid code will reach its rest
            symbol = symbols[k]
            if not ac:
                entry = length + symbol if symbol <= 15 else 0
            elif symbol & 15 or symbol == 0xF0:  # a coefficient after a run of zeros; 16 zeros
                entry = length + (symbol & 15) + 256 * ((symbol >> 4) + 1)
            else:  # end of block (libjpeg takes any run with no value for one)
                entry = length + 256 * 128
            shift = 16 - length
            table[code << shift:(code + 1) << shift] = [entry] * (1 << shift)
            code += 1
            k += 1
        code <<= 1
    return table


_huffman_tables: dict = {}  # (counts, symbols, ac) -> `_huffman_lookup`
_huffman_tables_lock = threading.Lock()


def _standard_huffman() -> dict:
    """The Huffman tables libjpeg uses for a JPEG that defines none (Motion-JPEG frames): its encoder's."""
    with _huffman_tables_lock:
        standard = _huffman_tables.get("standard")
    if standard is None:
        parsed = _parse_jpeg(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
        standard = parsed[1][0].huffman if not isinstance(parsed, str) else {}
        with _huffman_tables_lock:
            _huffman_tables["standard"] = standard
    return standard


def _lookup(scan: _JpegScan, kind: int, number: int) -> list[int] | None:
    spec = scan.huffman.get((kind, number)) or (_standard_huffman().get((kind, number)) if number < 2 else None)
    if spec is None:
        return None
    key = (*spec, kind)
    with _huffman_tables_lock:
        table = _huffman_tables.get(key)
    if table is None:
        table = _huffman_lookup(*spec, ac=kind == 1)
        with _huffman_tables_lock:
            if len(_huffman_tables) > 64:
                _huffman_tables.clear()
            _huffman_tables[key] = table
    return table


def _walk_huffman(raw: bytes, mcus: int, blocks: list[tuple[list[int], list[int]]], slack: int,
                  first: int = 0, total: int | None = None) -> str | None:
    """Walk the Huffman codes of one restart interval (or whole scan) of a sequential JPEG: whether its data
    holds exactly `mcus` MCUs of `blocks` ((DC, AC) lookup table of each block in an MCU), as libjpeg
    finds it when it warns: data that ends too soon, a code no table has, more than `slack` bytes left over
    (libjpeg passes over up to 7 at the end of a scan, none before a restart marker). `first`: the scan's
    MCU this stretch begins with, of its `total`."""
    data = raw.rstrip(b"\xff").replace(b"\xff\x00", b"\xff")  # fill bytes before the marker; stuffed 0xFF
    bits = len(data) * 8  # the data's own: libjpeg reads zeros past them
    data += bytes(4096)  # more than one MCU can take
    acc = nbits = i = 0
    for mcu in range(mcus):
        for dc, ac in blocks:
            if nbits < 32:
                acc = ((acc & ((1 << nbits) - 1)) << 32) | int.from_bytes(data[i:i + 4], "big")
                nbits += 32
                i += 4
            taken = dc[(acc >> (nbits - 16)) & 0xFFFF]
            if not taken:
                return "an invalid code in its compressed data"
            nbits -= taken
            k = 1
            while k < 64:
                if nbits < 32:
                    acc = ((acc & ((1 << nbits) - 1)) << 32) | int.from_bytes(data[i:i + 4], "big")
                    nbits += 32
                    i += 4
                entry = ac[(acc >> (nbits - 16)) & 0xFFFF]
                if not entry:
                    return "an invalid code in its compressed data"
                nbits -= entry & 0xFF
                k += entry >> 8
            if 64 < k < 128:  # past the 63rd coefficient, and not by an end-of-block
                return "an invalid code in its compressed data"
        if i * 8 - nbits > bits:
            share = 100 * (first + mcu) // (total or mcus)
            return f"its compressed data stops {share}% of the way into the image, the rest would be filled in grey"
    left = (bits - (i * 8 - nbits)) // 8
    if left > slack:
        return f"{left} stray bytes after the last block of its compressed data"
    return None


def _grey_filled(image: np.ndarray, frame: _JpegFrame, mcus: np.ndarray) -> np.ndarray:
    """Which of these MCUs (their indices in coding order) decoded to plain mid-grey (128): what libjpeg
    puts where the compressed data ran out. A colour image's MCU is judged inside a 1-pixel border, which
    the chroma upsampling blends with its neighbours; an MCU with nothing left to judge counts as grey."""
    colour = len(frame.components) > 1
    mh = 8 * max(v for _, _, v in frame.components) if colour else 8
    mw = 8 * max(h for _, h, _ in frame.components) if colour else 8
    ring = 1 if colour else 0
    row, col = np.divmod(mcus, -(-frame.width // mw))
    top, left = row * mh + ring, col * mw + ring
    bottom = np.minimum(top + mh - 2 * ring, frame.height)
    right = np.minimum(left + mw - 2 * ring, frame.width)
    grey = (bottom <= top) | (right <= left)
    corner = image[np.maximum(bottom, 1) - 1, np.maximum(right, 1) - 1] == 128  # one pixel first: cheap
    maybe = np.flatnonzero((corner.all(axis=-1) if corner.ndim > 1 else corner) & ~grey)
    if len(maybe):  # then all their pixels, those past the image's edge read as its last visible ones
        ys = np.clip(top[maybe, None] + np.arange(mh - 2 * ring), 0, bottom[maybe, None] - 1)
        xs = np.clip(left[maybe, None] + np.arange(mw - 2 * ring), 0, right[maybe, None] - 1)
        tiles = image[ys[:, :, None], xs[:, None, :]]
        grey[maybe] = (tiles == 128).reshape(len(maybe), -1).all(axis=1)
    return grey


def jpeg_damage(data: bytes, image: np.ndarray) -> str | None:
    """Why a JPEG that cv2 decoded holds damaged or cut-short data (a FrameReadError reason); None when no
    damage is found. `image` is cv2's decode of `data`.

    Found always: a scan's data broken off by a marker that does not belong there (bytes overwritten), restart
    markers missing (cut short) or out of order, scans missing (cut short between scans), bytes between
    segments. In a sequential Huffman-coded JPEG (nearly every JPEG), also data that ends before the image
    does (cut short and closed with an end marker, or overwritten): libjpeg fills the rest with mid-grey, and
    where the decoded image ends a stretch of data with such a block, that stretch's codes are counted.
    Not found: damage that leaves the image's last block as it was (bytes overwritten with no stray marker
    among them, with the codes after them still adding up), which only a full decode with libjpeg's
    warnings could tell."""
    parsed = _parse_jpeg(data)
    if isinstance(parsed, str):
        return _jpeg_damaged(parsed)
    frame, scans = parsed
    if frame.height == 0 or frame.width == 0:  # height in a DNL segment: nothing more to go by
        return None
    for scan in scans:
        reason = _jpeg_restart_damage(data, frame, scan)
        if reason is not None:
            return _jpeg_damaged(reason)
    reason = _jpeg_coverage_damage(frame, scans)
    if reason is not None:
        return _jpeg_damaged(reason)
    if frame.marker not in _JPEG_HUFFMAN_SEQUENTIAL or frame.precision != 8:
        return None
    # (scan, restart interval) pairs whose codes to count
    if (len(scans) == 1 and len(frame.components) in (1, 3) and image.shape[:2] == (frame.height, frame.width)
            and len(scans[0].components) == len(frame.components)):
        scan = scans[0]
        mcus = _jpeg_mcus(frame, scan)
        interval = scan.restart or mcus
        last = np.minimum(np.arange(interval, mcus + interval, interval), mcus) - 1
        suspects = [(scan, int(j)) for j in np.flatnonzero(_grey_filled(image, frame, last))]
        if len(suspects) > _JPEG_MAX_WALK_CHECKS:
            suspects = [(scan, None)]
    else:  # several scans (or an unusual layout): count every scan's codes
        suspects = [(scan, None) for scan in scans]
    for scan, j in suspects:
        reason = _walk_scan(data, frame, scan, j)
        if reason is not None:
            return _jpeg_damaged(reason)
    return None


def _walk_scan(data: bytes, frame: _JpegFrame, scan: _JpegScan, only: int | None) -> str | None:
    """`_walk_huffman` over the scan's restart intervals (only interval `only`, when given)."""
    blocks = []
    for c, (dc_number, ac_number) in zip(scan.components, scan.tables):
        dc, ac = _lookup(scan, 0, dc_number), _lookup(scan, 1, ac_number)
        if dc is None or ac is None:
            return None  # a table libjpeg would not have decoded it with: nothing to count by
        _, h, v = frame.components[c]
        blocks += [(dc, ac)] * (h * v if len(scan.components) > 1 else 1)
    mcus = _jpeg_mcus(frame, scan)
    interval = scan.restart or mcus
    bounds = [scan.start, *(int(p) + 2 for p in scan.restarts), scan.end + 2]
    for j in range(len(bounds) - 1) if only is None else (only,):
        if j + 1 >= len(bounds):
            return None
        count = min(interval, mcus - j * interval)
        reason = _walk_huffman(data[bounds[j]:bounds[j + 1] - 2], count, blocks, 7 if j == len(bounds) - 2 else 0,
                               j * interval, mcus)
        if reason is not None:
            where = f" (in restart interval {j + 1} of {-(-mcus // interval)})" if scan.restart else ""
            return reason + where
    return None


def jpeg_undecodable(data: bytes) -> str:
    """Why cv2 could not decode a JPEG, where its header tells (a sample precision it does not read)."""
    parsed = _parse_jpeg(data)
    if not isinstance(parsed, str) and parsed[0].precision != 8:
        kind = "lossless " if parsed[0].marker in _JPEG_LOSSLESS else ""
        return f"unsupported {parsed[0].precision}-bit {kind}JPEG (only 8-bit JPEGs are read)"
    return "corrupt JPEG (decoder failed)"
