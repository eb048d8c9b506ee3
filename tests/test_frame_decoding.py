"""Frames that decode to the wrong pixels, or hide frames, unless the reader looks harder than the decoder does:
damaged JPEG data, a multi-page TIFF among single frames, compressed TIFFs, a loop of links."""
import io
import os
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from app.core import frames
from app.core import jpeg_damage as jpeg_damage_module
from app.core.frames import BadFrame, FrameReadError, open_source, read_gray, to_gray

DAMAGED = "corrupt JPEG (damaged or cut-short data: "


def camera_like(h=256, w=320, seed=0, colour=False):
    """A frame that compresses as a camera's does: a gradient with blurred noise, no flat area."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 25, (h, w)), (0, 0), 2)
    image = np.clip(np.linspace(30, 220, w)[None, :] + np.linspace(0, 25, h)[:, None] + noise, 0, 255)
    image = image.astype(np.uint8)
    return cv2.applyColorMap(image, cv2.COLORMAP_INFERNO) if colour else image


def jpeg(image, *params) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95, *params])[1].tobytes()


def cv2_gray(data: bytes) -> np.ndarray:
    """What read_gray gave before for a JPEG: cv2's decode, made gray."""
    return to_gray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))


def overwritten(data: bytes, seed: int, n=2000) -> bytes:
    """Random bytes written into the middle of the compressed data (bit rot, a bad transfer); the end marker stays."""
    damaged = bytearray(data)
    middle = len(data) // 2
    damaged[middle:middle + n] = np.random.default_rng(seed).bytes(n)
    return bytes(damaged)


def cut_and_closed(data: bytes, fraction=1 / 3) -> bytes:
    """Cut short, then given an end-of-image marker again (a copy tool that "repairs" what it cut)."""
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


def reason_of(path) -> str:
    with pytest.raises(FrameReadError) as e:
        read_gray(path)
    assert e.value.path == str(path)
    return e.value.reason


# ---- JPEG: damage libjpeg papers over ------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_a_jpeg_with_bytes_written_over_its_data_is_unreadable(tmp_path, seed):
    """libjpeg decodes such a file into a partly garbled image with only an anonymous "Corrupt JPEG data" line
    on stderr; read_gray returned it as a good frame (detect proposed on it, export wrote it as a training
    image)."""
    data = overwritten(jpeg(camera_like(seed=seed)), seed)
    assert data.endswith(b"\xff\xd9")
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None  # libjpeg takes it
    (tmp_path / "f.jpg").write_bytes(data)
    assert reason_of(tmp_path / "f.jpg").startswith(DAMAGED)


GREY = "the rest would be filled in grey"


@pytest.mark.parametrize("kind, params, detail", [
    ("gray", [], GREY),
    ("colour", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420], GREY),
    ("colour", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444], GREY),
    ("gray", [cv2.IMWRITE_JPEG_RST_INTERVAL, 4], "restart intervals"),
    ("gray", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "its progressive scans stop before the image is complete"),
    ("colour", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "its progressive scans stop before the image is complete"),
])
@pytest.mark.parametrize("fraction", [0.35, 0.6])
def test_a_jpeg_cut_short_and_closed_with_an_end_marker_is_unreadable(tmp_path, kind, params, detail, fraction):
    """Cut at a third and closed with FF D9: the end-marker check passed, and libjpeg filled the missing two
    thirds with flat grey (or left out the progressive scans) with a warning on stderr only: a good frame, before."""
    data = cut_and_closed(jpeg(camera_like(colour=kind == "colour"), *params), fraction)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None  # libjpeg takes it
    (tmp_path / "f.jpg").write_bytes(data)
    reason = reason_of(tmp_path / "f.jpg")
    assert reason.startswith(DAMAGED) and detail in reason


def test_a_cut_short_jpeg_says_how_much_of_the_frame_is_left(tmp_path):
    """The reason says where the data ends, as a share of the image."""
    data = cut_and_closed(jpeg(camera_like()))
    (tmp_path / "f.jpg").write_bytes(data)
    reason = reason_of(tmp_path / "f.jpg")
    assert reason.startswith(DAMAGED + "its compressed data stops ") and reason.endswith(
        "% of the way into the image, the rest would be filled in grey)")
    assert 15 < int(reason.split("stops ")[1].split("%")[0]) < 60


def test_data_lost_inside_one_restart_interval_is_found(tmp_path):
    """30 bytes lost inside one restart interval: the restart markers are all there, in order, but libjpeg fills
    the end of that interval in grey."""
    data = jpeg(camera_like(), cv2.IMWRITE_JPEG_RST_INTERVAL, 8)
    restarts = [k for k in range(len(data) - 1) if data[k] == 0xFF and 0xD0 <= data[k + 1] <= 0xD7]
    start = restarts[49] + 2
    (tmp_path / "f.jpg").write_bytes(data[:start + 5] + data[start + 35:])
    reason = reason_of(tmp_path / "f.jpg")
    assert reason.startswith(DAMAGED) and reason.endswith("(in restart interval 51 of 160))")


def test_damaged_jpeg_frames_of_a_folder_are_reported_and_skipped(tmp_path, capsys):
    """The audit's folder: four JPEG frames, the second overwritten in the middle, the third cut and closed.
    `irsam info` said "4 readable, 0 unreadable"; now both are named, keep their index, and the others read as cv2
    decodes them."""
    from app.cli import main

    folder = tmp_path / "seq"
    folder.mkdir()
    good = {}
    for i in range(1, 5):
        data = jpeg(camera_like(seed=i))
        good[i] = cv2_gray(data)
        if i == 2:
            data = overwritten(data, seed=11)
        if i == 3:
            data = cut_and_closed(data)
        (folder / f"{i:06d}.jpg").write_bytes(data)
    with open_source(folder, prefetch=0) as src:
        bad = src.scan()
        assert [(b.index, b.stem) for b in bad] == [(1, "000002"), (2, "000003")]
        assert all(b.reason.startswith(DAMAGED) for b in bad)
        with pytest.raises(FrameReadError, match="damaged or cut-short"):
            src.frame(2)
        for i in (0, 3):
            np.testing.assert_array_equal(src.frame(i), good[i + 1])
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 readable, 2 unreadable" in out and "000003.jpg: corrupt JPEG" in out


def _pil(image, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _cmyk(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _without_huffman_tables(data: bytes) -> bytes:
    """A Motion-JPEG frame: no DHT segment, libjpeg decodes it with the standard tables."""
    out, pos = bytearray(data[:2]), 2
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker != 0xC4:
            out += data[pos:pos + 2 + length]
        pos += 2 + length
        if marker == 0xDA:
            return bytes(out + data[pos:])


def _grey_corner(image):
    """Mid-grey (128) where libjpeg puts it for data it does not have: the bottom rows."""
    image = image.copy()
    image[-20:] = 128
    return image


_exif = Image.Exif()
_exif[0x010E] = "x" * 3000

VALID_JPEGS = {
    "gray baseline": lambda: jpeg(camera_like()),
    "gray low quality optimized": lambda: cv2.imencode(
        ".jpg", camera_like(), [cv2.IMWRITE_JPEG_QUALITY, 20, cv2.IMWRITE_JPEG_OPTIMIZE, 1])[1].tobytes(),
    "gray progressive": lambda: jpeg(camera_like(), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "gray restart every block": lambda: jpeg(camera_like(), cv2.IMWRITE_JPEG_RST_INTERVAL, 1),
    "gray restart every 7": lambda: jpeg(camera_like(), cv2.IMWRITE_JPEG_RST_INTERVAL, 7),
    "colour 4:2:0": lambda: jpeg(camera_like(colour=True)),
    "colour 4:2:2": lambda: jpeg(camera_like(colour=True), cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
    "colour 4:4:4 restart": lambda: jpeg(camera_like(colour=True), cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, cv2.IMWRITE_JPEG_RST_INTERVAL, 3),
    "colour progressive": lambda: jpeg(camera_like(colour=True), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "PIL progressive optimized": lambda: _pil(camera_like(), progressive=True, optimize=True, quality=90),
    "PIL colour with EXIF": lambda: _pil(camera_like(colour=True)[:, :, ::-1].copy(), quality=80, exif=_exif),
    "PIL CMYK": lambda: _cmyk(camera_like(colour=True)[:, :, ::-1].copy()),
    "lossless": lambda: imagecodecs.jpeg8_encode(camera_like(), lossless=True),
    "no Huffman tables (Motion-JPEG)": lambda: _without_huffman_tables(jpeg(camera_like())),
    "odd size": lambda: jpeg(camera_like(77, 131)),
    "odd size colour": lambda: jpeg(camera_like(77, 131, colour=True)),
    "1x1": lambda: jpeg(camera_like(1, 1)),
    # mid-grey where data that ran out would be: the Huffman codes are counted, and add up
    "gray mid-grey bottom": lambda: jpeg(_grey_corner(camera_like())),
    "colour mid-grey bottom": lambda: jpeg(_grey_corner(camera_like(colour=True))),
    "gray mid-grey bottom, restarts": lambda: jpeg(_grey_corner(camera_like()), cv2.IMWRITE_JPEG_RST_INTERVAL, 2),
    "all mid-grey": lambda: jpeg(np.full((64, 80), 128, np.uint8)),
    "all mid-grey, no Huffman tables": lambda: _without_huffman_tables(jpeg(np.full((64, 80), 128, np.uint8))),
}


@pytest.mark.parametrize("kind", VALID_JPEGS)
def test_every_kind_of_valid_jpeg_reads_as_cv2_decodes_it(tmp_path, kind, monkeypatch):
    """The damage checks reject no valid JPEG: baseline, optimized, progressive, restart markers, every chroma
    subsampling, CMYK, lossless, Motion-JPEG without tables, any size; the pixels are cv2's, unchanged."""
    walked = []
    if "mid-grey" in kind:
        walk = jpeg_damage_module._walk_huffman
        monkeypatch.setattr(jpeg_damage_module, "_walk_huffman", lambda *a: walked.append(1) or walk(*a))
    data = VALID_JPEGS[kind]()
    (tmp_path / "f.jpg").write_bytes(data)
    np.testing.assert_array_equal(read_gray(tmp_path / "f.jpg"), cv2_gray(data))
    if "mid-grey" in kind:  # where the image looks cut short, the codes were counted, and add up
        assert walked


def test_a_12_bit_jpeg_says_it_is_not_supported(tmp_path):
    """cv2 reads 8-bit JPEGs only: a 12-bit one was called "corrupt JPEG (decoder failed)"."""
    (tmp_path / "f.jpg").write_bytes(imagecodecs.jpeg8_encode(camera_like().astype(np.uint16) * 16, bitspersample=12))
    assert reason_of(tmp_path / "f.jpg") == "unsupported 12-bit JPEG (only 8-bit JPEGs are read)"


def test_checking_a_jpeg_costs_little_beside_its_decode(tmp_path):
    """The checks run on every JPEG frame read (prefetch threads included): a fraction of the decode."""
    import time

    data = jpeg(camera_like(512, 640))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)

    def best(f, n=20):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return min(times)

    decode = best(lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
    check = best(lambda: jpeg_damage_module.jpeg_damage(data, image))
    assert check < 0.5 * decode + 0.001


# ---- a multi-page TIFF among the frames of a folder -----------------------------------------------

def test_a_multi_page_tiff_in_a_folder_of_frames_is_named_not_cut_to_its_first_page(tmp_path):
    """A folder of single-page TIFF frames with one 8-page stack among them: the stack was read as one frame
    (its first page) and its other 7 pages vanished without a word."""
    folder = tmp_path / "seq"
    folder.mkdir()
    pages = [camera_like(24, 32, seed=k).astype(np.uint16) * 200 for k in range(12)]
    for i in range(4):
        tifffile.imwrite(folder / f"{i + 1:06d}.tif", pages[i])
    tifffile.imwrite(folder / "000005.tif", np.stack(pages[4:12]))
    with tifffile.TiffWriter(folder / "000006.tif") as writer:  # one frame with a thumbnail: still one frame
        writer.write(pages[0])
        writer.write(camera_like(6, 8))
    reason = ("multi-page TIFF of 8 pages in a folder of frames (a stack, not one frame): open it on its own to "
              "read it as a stack")
    with open_source(folder, prefetch=0) as src:
        assert src.stems == ["000001", "000002", "000003", "000004", "000005", "000006"]
        assert src.bad_frames == [BadFrame(str(folder / "000005.tif"), reason, 4, "000005")]  # found at open
        with pytest.raises(FrameReadError) as e:
            src.frame(4)
        assert e.value.reason == reason
        np.testing.assert_array_equal(src.frame(5), pages[0])
        assert src.scan() == src.bad_frames
    assert reason_of(folder / "000005.tif") == reason
    with open_source(folder / "000005.tif") as stack:  # as the reason says: on its own, all 8 pages
        assert stack.kind == "tiff" and len(stack) == 8
        np.testing.assert_array_equal(stack.frame(7), pages[11])


def test_an_imagej_stack_cut_to_its_first_page_in_a_folder_is_still_a_stack(tmp_path):
    """Its metadata still count 6 frames: reading its one page left as a frame would hide the 5 lost ones."""
    tifffile.imwrite(tmp_path / "a.tif", camera_like(24, 32))
    stack = np.stack([camera_like(24, 32, seed=k) for k in range(6)])
    tifffile.imwrite(tmp_path / "b.tif", stack, imagej=True)
    data = (tmp_path / "b.tif").read_bytes()
    (tmp_path / "b.tif").write_bytes(data[: len(data) * 1 // 4])
    with open_source(tmp_path, prefetch=0) as src:
        assert [(b.stem, b.reason.split(" (")[0]) for b in src.bad_frames] == \
            [("b", "multi-page TIFF of 6 pages in a folder of frames")]


# ---- compressed TIFFs (tifffile needs imagecodecs for them) ------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("writer", ["cv2", "lzw", "lzw predictor", "deflate", "deflate predictor"])
def test_compressed_tiff_frames_read_back_exactly(tmp_path, writer, dtype):
    """OpenCV writes TIFFs LZW-compressed by default: they were unreadable ("<COMPRESSION.LZW: 5> requires the
    'imagecodecs' package"), whole folders of them "none of the image files is readable"."""
    folder = tmp_path / "seq"
    folder.mkdir()
    images = [camera_like(24, 32, seed=k).astype(dtype) * (200 if dtype == np.uint16 else 1) for k in range(3)]
    compression = {"lzw": "lzw", "deflate": "zlib"}.get(writer.split()[0])
    for k, image in enumerate(images):
        path = folder / f"{k:06d}.tif"
        if writer == "cv2":
            assert cv2.imwrite(str(path), image)
        else:
            tifffile.imwrite(path, image, compression=compression, predictor="predictor" in writer)
    assert tifffile.TiffFile(folder / "000000.tif").pages[0].compression != 1  # really compressed
    with open_source(folder) as src:
        assert src.bad_frames == [] and src.dtype == dtype
        for k in range(3):
            np.testing.assert_array_equal(src.frame(k), images[k])
    with open_source(folder / "000001.tif") as single:
        assert single.kind == "image"
        np.testing.assert_array_equal(single.frame(0), images[1])


@pytest.mark.parametrize("compression, predictor", [("lzw", False), ("lzw", True), ("zlib", True)])
def test_a_compressed_tiff_stack_is_read_page_by_page_not_memory_mapped(tmp_path, compression, predictor):
    """A compressed stack's pages are not raw values in the file: it must not be memory-mapped as if they were."""
    stack = np.stack([camera_like(24, 32, seed=k).astype(np.uint16) * 200 for k in range(7)])
    tifffile.imwrite(tmp_path / "seq.tif", stack, compression=compression, predictor=predictor)
    with open_source(tmp_path / "seq.tif") as src:
        assert src.kind == "tiff" and not src.memory_mapped and len(src) == 7
        for i in range(7):
            np.testing.assert_array_equal(src.frame(i), stack[i])
        assert src.scan() == []


def test_imagecodecs_is_a_dependency():
    """pip installs what tifffile needs for LZW and deflate-with-predictor TIFFs."""
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    dependencies = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"imagecodecs>=' in dependencies


# ---- links that lead nowhere ------------------------------------------------------------------------

def test_a_loop_of_links_in_a_frames_folder_is_an_unreadable_frame(tmp_path, capsys):
    """`ln -s 000004.png seq/000004.png`: listing the folder raised OSError (too many levels of symbolic links),
    and `irsam info` / `irsam detect` ended in a traceback."""
    from app.cli import main

    folder = tmp_path / "seq"
    data = {}
    folder.mkdir()
    for name in ("000001.png", "000002.png", "000003.png"):
        data[name[:6]] = camera_like(24, 32, seed=len(data))
        cv2.imwrite(str(folder / name), data[name[:6]])
    (folder / "000004.png").symlink_to("000004.png")
    (folder / "000005.png").symlink_to("000006.png")
    (folder / "000006.png").symlink_to("000005.png")
    loop = "broken link (its target {} leads back to it: a loop of links)"
    with open_source(folder) as src:
        assert src.stems == ["000001", "000002", "000003", "000004", "000005", "000006"]
        assert src.bad_frames == [BadFrame(str(folder / "000004.png"), loop.format("000004.png"), 3, "000004"),
                                  BadFrame(str(folder / "000005.png"), loop.format("000006.png"), 4, "000005"),
                                  BadFrame(str(folder / "000006.png"), loop.format("000005.png"), 5, "000006")]
        with pytest.raises(FrameReadError, match="a loop of links"):
            src.frame(3)
        np.testing.assert_array_equal(src.frame(2), data["000003"])
    assert main(["info", str(folder)]) == 0
    assert "000004.png: broken link" in capsys.readouterr().out
    (tmp_path / "masks").mkdir()  # a mask folder beside it with a loop too: not a mask, no traceback
    cv2.imwrite(str(tmp_path / "masks" / "000001.png"), np.zeros((24, 32), np.uint8))
    os.symlink("000002.png", tmp_path / "masks" / "000002.png")
    with open_source(folder) as src:
        truth = frames.find_ground_truth(src)
        assert truth is not None and truth.mask("000002") is None


def test_a_tiff_header_pointing_at_no_page_says_so_alone_and_in_a_folder(tmp_path):
    """GUI audit 26: a TIFF header followed by random bytes was "unreadable TIFF (index 0 out of range(0))"."""
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + np.random.default_rng(3).bytes(4000))
    assert len(tifffile.TiffFile(broken).pages) == 0
    with pytest.raises(frames.SourceError, match=r"broken\.tif: unreadable TIFF \(it holds no image: damaged or cut"):
        open_source(broken)
    folder = tmp_path / "folder"
    folder.mkdir()
    broken.rename(folder / "a.tif")
    cv2.imwrite(str(folder / "b.png"), np.zeros((8, 8), np.uint8))
    source = open_source(folder)
    try:
        with pytest.raises(FrameReadError) as unreadable:
            source.frame(source.stems.index("a"))
        assert unreadable.value.reason == "unreadable TIFF (it holds no image: damaged or cut short?)"
    finally:
        source.close()


def test_one_linked_image_that_leads_nowhere_is_said_as_a_broken_link(tmp_path):
    """A single-file source that is a link: its loop, or its missing target, said as in a folder (it was "no such
    file or folder" for a file `ls` lists)."""
    (tmp_path / "a.png").symlink_to("b")
    (tmp_path / "b").symlink_to("a.png")
    (tmp_path / "c.png").symlink_to("nothere.png")
    with pytest.raises(frames.SourceError, match=r"a\.png: broken link \(its target b leads back to it: a loop of links\)$"):
        frames.open_source(tmp_path / "a.png")
    with pytest.raises(frames.SourceError, match=r"c\.png: broken link \(its target nothere\.png does not exist\)$"):
        frames.open_source(tmp_path / "c.png")
    with pytest.raises(frames.SourceError, match=r"d\.png: no such file or folder$"):
        frames.open_source(tmp_path / "d.png")
