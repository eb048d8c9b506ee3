import os
import threading
import warnings
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

import app.core.frames as frames
from app.core.frames import BadFrame, FrameReadError, SourceError, find_ground_truth, open_source, read_gray

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIP_146 = SHARED / "data" / "sequences" / "IR_DRONE_146"


def ramp(h=24, w=32, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, top + 1, (h, w)).astype(dtype)


def write_folder(folder: Path, n=12, h=24, w=32, dtype=np.uint8, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"frame{i}.png" for i in range(n)]
    data = {}
    for k, name in enumerate(names):
        image = ramp(h, w, dtype, seed=k)
        cv2.imwrite(str(folder / name), image)
        data[Path(name).stem] = image
    return data


def is_bad(source, i: int) -> bool:
    """Whether frame i is known to be unreadable so far (a frame not yet decoded counts as good)."""
    return source.stems[i] in source.unreadable_stems


def wait_for(condition, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


# ---- read_gray: every reader path ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_gray_keeps_depth(tmp_path, dtype):
    image = ramp(dtype=dtype)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = read_gray(tmp_path / "a.png")
    assert out.dtype == dtype and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_png_matches_pil_luma(tmp_path, mode):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 30, 3)).astype(np.uint8), "RGB")
    image = rgb.quantize(64) if mode == "P" else rgb.convert(mode)
    image.save(tmp_path / "c.png")
    expected = np.asarray(Image.open(tmp_path / "c.png").convert("L"))
    out = read_gray(tmp_path / "c.png")
    assert out.dtype == np.uint8 and out.ndim == 2
    np.testing.assert_array_equal(out, expected)


def test_bmp_and_jpeg(tmp_path):
    image = ramp()
    cv2.imwrite(str(tmp_path / "a.bmp"), image)
    np.testing.assert_array_equal(read_gray(tmp_path / "a.bmp"), image)
    smooth = cv2.GaussianBlur(ramp(64, 64), (9, 9), 3)
    cv2.imwrite(str(tmp_path / "a.jpg"), smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = read_gray(tmp_path / "a.jpg")
    assert out.dtype == np.uint8 and out.shape == smooth.shape
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_tiff_single_and_rgb(tmp_path):
    image = ramp(dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", image)
    np.testing.assert_array_equal(read_gray(tmp_path / "s.tif"), image)
    rgb = np.stack([ramp(seed=3)] * 3, axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_gray(tmp_path / "rgb.tif"), rgb[:, :, 0])


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file (0 bytes)"),
    (b"frame,class,x,y\n1,2,3,4\n", "not an image"),
])
def test_read_gray_bad_files(tmp_path, content, reason):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(FrameReadError) as e:
        read_gray(tmp_path / "bad.png")
    assert e.value.path == str(tmp_path / "bad.png") and reason in e.value.reason


def test_read_gray_truncated_png_and_jpeg(tmp_path):
    for suffix in (".png", ".jpg"):
        cv2.imwrite(str(tmp_path / f"a{suffix}"), ramp(64, 64))
        data = (tmp_path / f"a{suffix}").read_bytes()
        (tmp_path / f"a{suffix}").write_bytes(data[: len(data) // 2])
        with pytest.raises(FrameReadError, match="truncated"):
            read_gray(tmp_path / f"a{suffix}")


# ---- folders -----------------------------------------------------------------------------------

def test_folder_natural_sort_ignores_other_files(tmp_path):
    names = ["frame10.png", "frame2.png", "frame1.png", "Frame3.png"]
    data = write_folder(tmp_path, names=names)
    (tmp_path / "boxes.csv").write_text("frame,class,x,y,w,h\n")
    (tmp_path / "notes.txt").write_text("hello")
    cv2.imwrite(str(tmp_path / ".hidden.png"), ramp())
    (tmp_path / "sub").mkdir()
    with open_source(tmp_path) as src:
        assert src.kind == "folder"
        assert src.stems == ["frame1", "frame2", "Frame3", "frame10"]
        assert len(src) == 4 and src.shape == (24, 32) and src.dtype == np.uint8
        for i, stem in enumerate(src.stems):
            np.testing.assert_array_equal(src.frame(i), data[stem])
        assert src.bad_frames == []


def test_images_subfolder_is_used(tmp_path):
    write_folder(tmp_path / "images", n=3)
    (tmp_path / "boxes.csv").write_text("frame,class,x,y,w,h\n")
    with open_source(tmp_path) as src:
        assert len(src) == 3 and src.image_dir == tmp_path / "images"


def test_frames_are_read_only_raw_16bit(tmp_path):
    data = write_folder(tmp_path, n=3, dtype=np.uint16)
    with open_source(tmp_path) as src:
        f = src.frame(1)
        assert f.dtype == np.uint16 and not f.flags.writeable
        np.testing.assert_array_equal(f, data[src.stems[1]])
        with pytest.raises(ValueError):
            f[0, 0] = 1
        with pytest.raises(IndexError):
            src.frame(3)


def test_bad_files_keep_their_index(tmp_path):
    data = write_folder(tmp_path, n=6)
    (tmp_path / "frame6.png").write_bytes(b"")
    (tmp_path / "frame7.png").write_text("this is not an image")
    full = (tmp_path / "frame1.png").read_bytes()
    (tmp_path / "frame8.png").write_bytes(full[: len(full) // 2])
    cv2.imwrite(str(tmp_path / "frame9.png"), ramp(dtype=np.uint16))
    cv2.imwrite(str(tmp_path / "frame10.tif"), ramp(dtype=np.uint16))  # its type read from the TIFF page
    with open_source(tmp_path) as src:
        assert src.stems == [f"frame{i}" for i in range(11)] and src.shape == (24, 32)
        assert src.bad_frames == [
            BadFrame(str(tmp_path / "frame6.png"), "empty file (0 bytes)", 6, "frame6"),
            BadFrame(str(tmp_path / "frame7.png"), "not an image (unrecognised file header)", 7, "frame7"),
            BadFrame(str(tmp_path / "frame8.png"), "truncated PNG (no IEND chunk at the end)", 8, "frame8"),
            BadFrame(str(tmp_path / "frame9.png"), "sample type uint16 differs from the sequence's uint8", 9, "frame9"),
            BadFrame(str(tmp_path / "frame10.tif"), "sample type uint16 differs from the sequence's uint8", 10,
                     "frame10"),
        ]  # all found at open, from each file's first and last bytes
        assert all(is_bad(src, i) for i in (6, 7, 8, 9, 10))
    damaged = bytearray((tmp_path / "frame5.png").read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 8] = bytes(b ^ 0xFF for b in damaged[middle : middle + 8])  # ends intact
    (tmp_path / "frame5.png").write_bytes(bytes(damaged))
    with open_source(tmp_path, prefetch=0) as src:
        assert not is_bad(src, 5)  # only a decode finds this one
        with pytest.raises(FrameReadError, match="corrupt PNG"):
            src.frame(5)
        assert is_bad(src, 5) and [b.index for b in src.bad_frames] == [5, 6, 7, 8, 9, 10]
    (tmp_path / "frame5.png").write_bytes(cv2.imencode(".png", data["frame5"])[1].tobytes())
    with open_source(tmp_path) as src:
        with pytest.raises(FrameReadError) as e:
            src.frame(6)
        assert e.value.path == str(tmp_path / "frame6.png") and e.value.reason == "empty file (0 bytes)"
        with pytest.raises(FrameReadError, match="truncated PNG"):
            src.frame(8)
        assert is_bad(src, 8)
        bad = src.scan()
        assert [b.index for b in bad] == [6, 7, 8, 9, 10]
        assert bad[2] == BadFrame(str(tmp_path / "frame8.png"), bad[2].reason, 8, "frame8")
        assert bad[4].reason == "sample type uint16 differs from the sequence's uint8"
        assert src.readable_indices() == list(range(6))
        for i in src.readable_indices():
            np.testing.assert_array_equal(src.frame(i), data[src.stems[i]])


def test_first_readable_frame_defines_sequence(tmp_path):
    data = write_folder(tmp_path, n=3, names=["c.png", "d.png", "e.png"])
    (tmp_path / "a.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "b.png"), ramp(80, 100))
    (tmp_path / "b.png").write_bytes((tmp_path / "b.png").read_bytes()[:60])  # a whole header (100x80), no pixels
    with open_source(tmp_path) as src:  # a truncated file's header size does not make the folder one of several
        assert src.stems == ["a", "b", "c", "d", "e"] and src.shape == (24, 32)
        assert [(Path(b.path).name, b.index) for b in src.bad_frames] == [("a.png", 0), ("b.png", 1)]
        assert "truncated PNG" in src.bad_frames[1].reason
        assert src.readable_indices() == [2, 3, 4]
        np.testing.assert_array_equal(src.frame(2), data["c"])


@pytest.mark.parametrize("broken", [b"", b"frame,class,x,y\n"])
def test_repairing_an_unreadable_frame_keeps_the_project(tmp_path, broken):
    from app.cli import main

    folder = tmp_path / "bad"
    write_folder(folder, n=8, names=[f"{i:06d}.png" for i in range(8)])
    good = (folder / "000005.png").read_bytes()
    (folder / "000005.png").write_bytes(broken)
    out = tmp_path / "runs" / "bad"
    command = ["detect", str(folder), "--out", str(out), "--method", "mpcm", "--quiet"]
    assert main(command) == 0
    assert not (out / "masks" / "000005.png").exists()
    (folder / "000005.png").write_bytes(good)
    assert main(command) == 0
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == [f"{i:06d}" for i in range(8)]


def test_bad_frames_are_listed_in_frame_order(tmp_path):
    write_folder(tmp_path, n=9, names=[f"{i:02d}.png" for i in range(9)])
    for truncated in ("03.png", "07.png"):
        (tmp_path / truncated).write_bytes((tmp_path / truncated).read_bytes()[:60])
    (tmp_path / "05.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "01.tif"), ramp())  # same stem as 01.png, sorted after it: no frame of its own
    with open_source(tmp_path, prefetch=0) as src:
        for i in (7, 3):
            with pytest.raises(FrameReadError):
                src.frame(i)
        assert [(Path(b.path).name, b.index) for b in src.bad_frames] == \
            [("03.png", 3), ("05.png", 5), ("07.png", 7), ("01.tif", None)]


def test_a_folder_of_several_sizes_keeps_each_frames_size():
    with open_source(SHARED / "data" / "nuaa-sirst" / "images") as src:
        assert len(src) == 427 and src.shape is None and src.mixed_sizes
        assert src.bad_frames == []
        shapes = [src.frame_shape(i) for i in range(len(src))]
        assert src.frame_shape(src.stems.index("Misc_2")) == (270, 348)
        for i in range(0, len(src), 7):  # the sizes read at open are the decoded ones
            assert src.frame(i).shape == shapes[i]
        assert src.size_record() == dict(zip(src.stems, shapes))
        sizes = set(shapes)
        heights, widths = zip(*sizes)
        assert src.size_text() == (f"{len(sizes)} sizes, widths {min(widths)}-{max(widths)}, "
                                   f"heights {min(heights)}-{max(heights)}")
        assert len(sizes) > 300 and src.scan() == []


def test_mixed_sizes_from_every_format_and_the_sequence_type_still_checked(tmp_path):
    images = {"a.png": ramp(24, 32), "b.jpg": ramp(40, 50, seed=1), "d.bmp": ramp(30, 20, seed=3)}
    for name, image in images.items():
        cv2.imwrite(str(tmp_path / name), image)
    images["c.tif"] = ramp(17, 9, seed=2)
    tifffile.imwrite(tmp_path / "c.tif", images["c.tif"])
    exif = Image.Exif()
    exif[0x010E] = "x" * 3000  # a large APP1 segment before the frame header
    Image.fromarray(ramp(33, 31, seed=4)).save(tmp_path / "e.jpg", progressive=True, exif=exif)
    cv2.imwrite(str(tmp_path / "f.png"), ramp(10, 12, dtype=np.uint16))  # another sample type: unreadable
    (tmp_path / "g.jpg").write_bytes((tmp_path / "b.jpg").read_bytes()[:20])  # no frame header at all
    with open_source(tmp_path, prefetch=0) as src:
        assert src.stems == list("abcdefg") and src.shape is None
        assert [src.frame_shape(i) for i in range(7)] == [(24, 32), (40, 50), (17, 9), (30, 20), (33, 31), None, None]
        assert [(b.stem, b.reason) for b in src.bad_frames] == [
            ("f", "sample type uint16 differs from the sequence's uint8"), ("g", "truncated JPEG (no end-of-image marker)")]
        for i in range(5):
            assert src.frame(i).shape == src.frame_shape(i)
        np.testing.assert_array_equal(src.frame(0), images["a.png"])
        np.testing.assert_array_equal(src.frame(2), images["c.tif"])
        assert src.size_record() == {"a": (24, 32), "b": (40, 50), "c": (17, 9), "d": (30, 20), "e": (33, 31)}
        assert src.size_text() == "5 sizes, widths 9-50, heights 17-40"  # each side's range: no one frame is 50x40


def test_a_file_that_decodes_to_another_size_than_its_header_is_unreadable(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "a.png"), ramp(24, 32))
    cv2.imwrite(str(tmp_path / "b.png"), ramp(20, 20))
    with open_source(tmp_path, prefetch=0) as src:
        monkeypatch.setattr(frames, "read_gray", lambda path: ramp(21, 20))
        with pytest.raises(FrameReadError, match="size 20x21 differs from its header's 20x20"):
            src.frame(1)
        assert is_bad(src, 1)


@pytest.mark.parametrize("data, size", [
    (b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x0b\x08\x00\x10\x00\x20\x01", (16, 32)),  # APP0 then SOF0
    (b"\xff\xd8\xff\xff\xc2\x00\x0b\x08\x00\x07\x00\x05\x01", (7, 5)),  # a fill byte, progressive
    (b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x00\x20\x01", None),  # height in a later DNL segment
    (b"\xff\xd8\xff\xda\x00\x02", None),  # scan before any frame header
    (b"\xff\xd8\xff\xe1\xff\xff", None),  # a segment running past the end
    (b"\xff\xd8\x00\x00", None),  # not a marker
])
def test_jpeg_size_from_the_frame_header(tmp_path, data, size):
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert frames._jpeg_size(fd) == size
    finally:
        os.close(fd)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no image files"),
    (lambda p: ((p / "x.png").write_bytes(b""), (p / "y.png").write_text("no")), "none of the 2 image files"),
])
def test_source_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(SourceError, match=message) as e:
        open_source(tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(tmp_path / "missing")


def test_opening_decodes_at_most_one_frame(tmp_path, monkeypatch):
    write_folder(tmp_path, n=40)
    decoded = []
    real = frames.read_gray
    monkeypatch.setattr(frames, "read_gray", lambda path: decoded.append(path) or real(path))
    src = open_source(tmp_path, prefetch=0)
    assert len(src) == 40 and len(decoded) <= 1
    src.frame(0)
    assert len(decoded) <= 1
    src.close()


def test_a_stray_frame_of_another_sample_type_is_the_one_reported(tmp_path, monkeypatch):
    data = write_folder(tmp_path, names=[f"{i:03d}.png" for i in range(1, 9)], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "000.png"), ramp())  # one 8-bit frame, first in the sequence
    decoded = []
    real = frames.read_gray
    monkeypatch.setattr(frames, "read_gray", lambda path: decoded.append(path) or real(path))
    with open_source(tmp_path, prefetch=0) as src:
        assert len(decoded) == 1  # still one decode at open: the types come from the headers
        assert src.dtype == np.uint16 and len(src) == 9
        assert src.bad_frames == [BadFrame(str(tmp_path / "000.png"),
                                           "sample type uint8 differs from the sequence's uint16", 0, "000")]
        for i in range(1, 9):
            np.testing.assert_array_equal(src.frame(i), data[src.stems[i]])
        assert src.scan() == src.bad_frames and src.readable_indices() == list(range(1, 9))


def test_a_broken_link_in_a_frames_folder_is_an_unreadable_frame(tmp_path):
    data = write_folder(tmp_path / "seq", names=["a.png", "c.png"])
    target = tmp_path / ".git" / "annex" / "objects" / "b.png"  # content not fetched
    (tmp_path / "seq" / "b.png").symlink_to(target)
    reason = f"broken link (its target {target} does not exist)"
    with open_source(tmp_path / "seq") as src:
        assert src.stems == ["a", "b", "c"]
        assert src.bad_frames == [BadFrame(str(tmp_path / "seq" / "b.png"), reason, 1, "b")]
        with pytest.raises(FrameReadError) as e:
            src.frame(1)
        assert e.value.reason == reason
        np.testing.assert_array_equal(src.frame(2), data["c"])
    with pytest.raises(FrameReadError, match="broken link"):
        read_gray(tmp_path / "seq" / "b.png")


def test_cache_is_bounded(tmp_path):
    write_folder(tmp_path, n=30)
    with open_source(tmp_path, cache_size=5, prefetch=3) as src:
        sizes = []
        for i in list(range(30)) + list(range(29, -1, -1)):
            src.frame(i)
            sizes.append(src.cache_stats()["size"])
        time.sleep(0.1)
        stats = src.cache_stats()
        assert max(sizes) <= 5 and stats["size"] <= 5
        assert stats["evictions"] > 0 and stats["capacity"] == 5


def test_prefetch_in_scrub_direction(tmp_path):
    write_folder(tmp_path, n=30)
    with open_source(tmp_path, cache_size=16, prefetch=4) as src:
        src.frame(10)
        assert wait_for(lambda: all(j in src._cache for j in range(11, 15)))
        hits = src.cache_stats()["hits"]
        src.frame(11)
        assert src.cache_stats()["hits"] == hits + 1
        assert src.cache_stats()["prefetched"] >= 4
        src.frame(25)
        src.frame(24)  # scrubbing backwards
        assert wait_for(lambda: all(j in src._cache for j in range(20, 24)))


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priorities are a Linux feature")
def test_read_ahead_threads_run_below_the_thread_that_shows_frames(tmp_path):
    from app.session import ReviewSession

    write_folder(tmp_path / "seq", n=10)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    expected = min(base + frames.BACKGROUND_NICENESS, 19)
    session = ReviewSession.open(tmp_path / "seq")
    try:
        session.frame_and_layers(3, {"edges"})  # starts the frame read-ahead and the layer read-ahead
        threads = {t.name.rsplit("_", 1)[0]: t for t in threading.enumerate()}
        for name in ("frame-prefetch", "layer-prefetch"):  # each lowers itself once started
            native_id = threads[name].native_id
            assert wait_for(lambda: os.getpriority(os.PRIO_PROCESS, native_id) == expected), name
        # the layer reader is waited on by the frame being shown: it keeps the caller's priority
        assert os.getpriority(os.PRIO_PROCESS, threads["layer-reader"].native_id) == base
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    finally:
        session.close()


def test_prefetch_hook_and_hits(tmp_path):
    write_folder(tmp_path, n=10)
    with open_source(tmp_path, prefetch=3) as src:
        src.prefetch(5)
        assert wait_for(lambda: src.cache_stats()["prefetched"] >= 3)
        hits = src.cache_stats()["hits"]
        src.frame(7)
        assert src.cache_stats()["hits"] == hits + 1


def test_thread_safe_concurrent_reads(tmp_path):
    data = write_folder(tmp_path, n=20)
    errors = []
    with open_source(tmp_path, cache_size=4, prefetch=2) as src:
        def worker(seed):
            rng = np.random.default_rng(seed)
            for i in rng.integers(0, 20, 60):
                if not np.array_equal(src.frame(int(i)), data[src.stems[int(i)]]):
                    errors.append(i)
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and src.cache_stats()["size"] <= 4


# ---- TIFF and single images --------------------------------------------------------------------

@pytest.mark.parametrize("compression, mapped", [(None, True), ("zlib", False)])
def test_multipage_tiff(tmp_path, compression, mapped):
    stack = np.stack([ramp(dtype=np.uint16, seed=k) for k in range(7)])
    tifffile.imwrite(tmp_path / "seq.tif", stack, compression=compression)
    with open_source(tmp_path / "seq.tif") as src:
        assert src.kind == "tiff" and src.memory_mapped is mapped
        assert len(src) == 7 and src.shape == (24, 32) and src.dtype == np.uint16
        assert src.stems[0] == "seq_000001" and src.stems[-1] == "seq_000007"
        for i in range(7):
            np.testing.assert_array_equal(src.frame(i), stack[i])
        assert src.scan() == []


def test_tiff_pages_written_one_at_a_time_are_frames(tmp_path):
    stack = [ramp(dtype=np.uint16, seed=k) for k in range(3)]
    with tifffile.TiffWriter(tmp_path / "three_ok.tif") as writer:
        for page in stack:
            writer.write(page)  # a tifffile series of its own per page
    with open_source(tmp_path / "three_ok.tif") as src:
        assert src.kind == "tiff" and len(src) == 3 and src.shape == (24, 32) and src.dtype == np.uint16
        for i in range(3):
            np.testing.assert_array_equal(src.frame(i), stack[i])
        assert src.scan() == []


def test_one_tiff_image_with_a_thumbnail_page_stays_one_image(tmp_path):
    image = ramp(dtype=np.uint16, seed=1)
    with tifffile.TiffWriter(tmp_path / "with_thumb.tif") as writer:
        writer.write(image)
        writer.write(ramp(6, 8))  # a preview page, another size and type
    with open_source(tmp_path / "with_thumb.tif") as src:
        assert src.kind == "image" and len(src) == 1 and src.bad_frames == []
        np.testing.assert_array_equal(src.frame(0), image)


@pytest.mark.parametrize("pages", [
    [ramp(dtype=np.uint16, seed=0), ramp(dtype=np.float32, seed=1), ramp(seed=2)],  # one size, three types
    [ramp(dtype=np.uint16, seed=0), ramp(20, 40, dtype=np.uint16)],  # a wider page: no thumbnail
], ids=["types", "wider"])
def test_a_tiff_whose_pages_all_differ_from_the_first_is_a_stack_with_those_pages_unreadable(tmp_path, pages):
    """Odd-input audit 25: no page matched the first in both size and type, so the file was one image and its
    other pages vanished without a word; only a page smaller in both height and width is a thumbnail."""
    with tifffile.TiffWriter(tmp_path / "odd.tif") as writer:
        for page in pages:
            writer.write(page)
    with open_source(tmp_path / "odd.tif") as src:
        assert src.kind == "tiff" and len(src) == len(pages)
        np.testing.assert_array_equal(src.frame(0), pages[0])
        assert [b.index for b in src.scan()] == list(range(1, len(pages)))


def test_flagged_and_colour_preview_pages_of_one_image_stay_previews(tmp_path):
    """Review audit 25: after the change above, a same-size transparency mask (NewSubfileType 4), a preview halved
    in width only (NewSubfileType 1) and a same-size colour preview made a 2-frame stack of one image."""
    image = ramp(dtype=np.uint16, seed=1)
    for name, write_second in (
        ("mask", lambda w: w.write(np.ones(image.shape, bool), subfiletype=4)),
        ("halfwidth", lambda w: w.write(image[:, ::2], subfiletype=1)),
        ("colour", lambda w: w.write(np.zeros((*image.shape, 3), np.uint8), photometric="rgb")),
    ):
        with tifffile.TiffWriter(tmp_path / f"{name}.tif") as writer:
            writer.write(image)
            write_second(writer)
        with open_source(tmp_path / f"{name}.tif") as src:
            assert src.kind == "image" and len(src) == 1, name
            np.testing.assert_array_equal(src.frame(0), image)


THUMBNAILS = {  # a first page that previews the frames after it
    "flagged": lambda w, frame: w.write(frame[::4, ::4], subfiletype=1),  # NewSubfileType: reduced image
    "smaller": lambda w, frame: w.write(frame[::4, ::4]),  # not flagged, smaller in height and width
    "colour": lambda w, frame: w.write(np.zeros((6, 8, 3), np.uint8), photometric="rgb"),
    "flagged, same size": lambda w, frame: w.write(frame // 2, subfiletype=1),
}


@pytest.mark.parametrize("thumbnail", THUMBNAILS)
@pytest.mark.parametrize("layout", ["pages one at a time", "stack", "compressed stack"])
def test_a_tiff_stack_after_a_thumbnail_page_reads_its_frames_without_the_thumbnail(tmp_path, thumbnail, layout):
    """A camera's stack whose page 1 is a preview of the frames on pages 2..N read as a stack of the preview's
    size: every real frame was unreadable ("size 32x24 differs from the sequence's 8x6"), or, after a colour
    preview, the file was one image: the preview."""
    stack = np.stack([ramp(dtype=np.uint16, seed=k) for k in range(5)])
    path = tmp_path / "with_thumbnail.tif"
    with tifffile.TiffWriter(path) as writer:
        THUMBNAILS[thumbnail](writer, stack[0])
        if layout == "pages one at a time":
            for frame in stack:
                writer.write(frame)
        else:
            writer.write(stack, compression="zlib" if layout == "compressed stack" else None)
    size = "32x24" if thumbnail == "flagged, same size" else "8x6"
    with open_source(path) as src:
        assert src.kind == "tiff" and len(src) == 5 and src.shape == (24, 32) and src.dtype == np.uint16
        assert src.stems[0] == "with_thumbnail_000001"
        for i in range(5):
            np.testing.assert_array_equal(src.frame(i), stack[i])
        assert src.scan() == []
        assert src.skipped_pages == [f"page 1: {size} thumbnail or preview, not a frame"]


def test_pages_after_a_thumbnail_are_named_by_their_page_in_the_file(tmp_path):
    frames = [ramp(dtype=np.uint16, seed=0), ramp(seed=1), ramp(dtype=np.uint16, seed=2)]
    with tifffile.TiffWriter(tmp_path / "odd.tif") as writer:
        writer.write(frames[0][::4, ::4], subfiletype=1)
        for frame in frames:
            writer.write(frame)
    with open_source(tmp_path / "odd.tif") as src:
        assert len(src) == 3 and src.dtype == np.uint16
        assert [(b.index, b.reason) for b in src.scan()] == [
            (1, "page 3: sample type uint8 differs from the sequence's uint16")]
        np.testing.assert_array_equal(src.frame(2), frames[2])


@pytest.mark.parametrize("thumbnail", ["flagged", "colour"])
def test_one_tiff_image_after_a_thumbnail_page_is_that_image(tmp_path, thumbnail):
    """A thumbnail and one frame, alone or in a folder of frames: the thumbnail was the image (or, flagged, the file
    was a 2-frame stack whose frame was unreadable; in a folder, "a stack, not one frame")."""
    image = ramp(dtype=np.uint16, seed=1)
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("000001.tif", "000002.tif"):
        with tifffile.TiffWriter(folder / name) as writer:
            THUMBNAILS[thumbnail](writer, image)
            writer.write(image)
    with open_source(folder / "000001.tif") as src:
        assert src.kind == "image" and len(src) == 1 and src.bad_frames == []
        np.testing.assert_array_equal(src.frame(0), image)
        assert src.skipped_pages == ["page 1: 8x6 thumbnail or preview, not a frame"]
    with open_source(folder) as src:
        assert len(src) == 2 and src.shape == (24, 32) and src.bad_frames == []
        np.testing.assert_array_equal(src.frame(1), image)


def test_the_preview_pages_of_one_tiff_image_are_named_as_skipped(tmp_path):
    image = ramp(dtype=np.uint16, seed=1)
    with tifffile.TiffWriter(tmp_path / "previews.tif") as writer:
        writer.write(image)
        writer.write(image[::2, ::2], subfiletype=1)
        writer.write(image[::4, ::4], subfiletype=1)
    with open_source(tmp_path / "previews.tif") as src:
        assert src.kind == "image" and len(src) == 1
        assert src.skipped_pages == ["pages 2-3: reduced copies of the image (thumbnails, previews or masks), "
                                     "not frames"]
        np.testing.assert_array_equal(src.frame(0), image)


@pytest.mark.parametrize("first_page", [
    ramp(20, 40, dtype=np.uint16, seed=9),  # shorter but wider
    ramp(30, 24, dtype=np.uint16, seed=9),  # taller but narrower
    ramp(6, 8, dtype=np.uint16, seed=9),  # smaller, but so is a later page: the pages after it differ
], ids=["wider", "taller", "smaller, later pages differ"])
def test_a_first_frame_of_another_size_that_is_no_thumbnail_stays_a_frame(tmp_path, first_page):
    """Not flagged and not smaller in both height and width than frames that agree: as before, the first page sets
    the stack's size, and the pages of another size are unreadable frames, none dropped without a word."""
    frames = [first_page] + [ramp(dtype=np.uint16, seed=k) for k in range(3)]
    if first_page.shape == (6, 8):
        frames[2] = ramp(6, 8, dtype=np.uint16, seed=8)
    with tifffile.TiffWriter(tmp_path / "odd_first.tif") as writer:
        for frame in frames:
            writer.write(frame)
    with open_source(tmp_path / "odd_first.tif") as src:
        assert src.kind == "tiff" and len(src) == 4 and src.shape == first_page.shape and src.skipped_pages == []
        np.testing.assert_array_equal(src.frame(0), first_page)
        unreadable = [i for i, frame in enumerate(frames) if frame.shape != first_page.shape]
        assert [b.index for b in src.scan()] == unreadable


def test_tiff_pages_of_another_size_or_type_are_bad_frames(tmp_path):
    pages = [ramp(dtype=np.uint16, seed=0), ramp(10, 10, dtype=np.uint16), ramp(dtype=np.uint16, seed=2),
             ramp(seed=3)]
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as writer:
        for page in pages:
            writer.write(page)
    with open_source(tmp_path / "mixed.tif") as src:
        assert len(src) == 4 and src.shape == (24, 32) and src.dtype == np.uint16
        with pytest.raises(FrameReadError, match="mixed.tif: page 2: size 10x10 differs from the sequence.s 32x24$"):
            src.frame(1)
        assert [(b.index, b.path, b.reason) for b in src.scan()] == [  # the page named, as a missing page is
            (1, str(tmp_path / "mixed.tif"), "page 2: size 10x10 differs from the sequence's 32x24"),
            (3, str(tmp_path / "mixed.tif"), "page 4: sample type uint8 differs from the sequence's uint16")]
        assert src.readable_indices() == [0, 2]
        np.testing.assert_array_equal(src.frame(2), pages[2])


def test_tiff_stack_written_contiguously_page_by_page_is_memory_mapped(tmp_path):
    stack = [ramp(dtype=np.uint16, seed=k) for k in range(4)]
    with tifffile.TiffWriter(tmp_path / "contiguous.tif") as writer:
        for page in stack:
            writer.write(page, contiguous=True)
    with open_source(tmp_path / "contiguous.tif") as src:
        assert src.memory_mapped and len(src) == 4
        np.testing.assert_array_equal(src.frame(3), stack[3])


def test_single_image_source(tmp_path):
    image = ramp(dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "one.png"), image)
    tifffile.imwrite(tmp_path / "one.tif", image)
    for name in ("one.png", "one.tif"):
        with open_source(tmp_path / name) as src:
            assert src.kind == "image" and len(src) == 1 and src.stems == ["one"]
            np.testing.assert_array_equal(src.frame(0), image)
    (tmp_path / "bad.png").write_bytes(b"")
    with pytest.raises(SourceError, match="empty file"):
        open_source(tmp_path / "bad.png")


LAYOUTS = ["one page", "stack", "compressed stack", "pages one at a time"]


def _write_tiff(path: Path, stack: np.ndarray, layout: str) -> None:
    if layout == "pages one at a time":
        with tifffile.TiffWriter(path) as writer:
            for page in stack:
                writer.write(page)
    else:
        tifffile.imwrite(path, stack[0] if layout == "one page" else stack,
                         compression="zlib" if layout == "compressed stack" else None)


@pytest.mark.parametrize("dtype", [np.uint32, np.int8])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiff_of_an_unsupported_sample_type_is_refused_however_it_is_stored(tmp_path, capsys, dtype, layout):
    from app.cli import main

    stack = np.stack([ramp(dtype=np.uint16, seed=k) for k in range(5)]).astype(dtype)
    path = tmp_path / "values.tif"
    _write_tiff(path, stack, layout)
    message = (f"{path}: unsupported sample type {np.dtype(dtype)} (need 8- or 16-bit unsigned, 16-bit signed, or "
               "32- or 64-bit float)")
    with pytest.raises(SourceError) as e:
        open_source(path)
    assert str(e.value) == message
    assert main(["info", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("dtype", [np.int16, np.float64, ">i2", ">f8"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_signed_16_bit_and_64_bit_float_tiffs_read_as_32_bit_float_however_stored(tmp_path, dtype, layout):
    """They were refused ("unsupported sample type"): a radiometric camera's signed counts (below zero on a cold
    scene) and a processing tool's float64 output. int16 reads exactly; float64 to float32's precision, its NaN
    (no data) kept and values beyond float32's range clipped rather than made infinite; an infinity stays one
    (radiometric audit 26: it was clipped to float32's largest value, which the detectors took for a target)."""
    stack = (np.stack([ramp(dtype=np.uint16, seed=k) for k in range(5)]).astype(np.int32) - 30000).astype(dtype)
    if np.dtype(dtype).kind == "f":
        stack = stack / 7.0
        stack[1, 0, 0], stack[2, 0, 1], stack[3, 1, 1], stack[3, 1, 2] = np.nan, 1e300, np.inf, -np.inf
    path = tmp_path / "values.tif"
    _write_tiff(path, stack, layout)
    source = open_source(path)
    try:
        assert source.dtype == np.float32
        for k in range(len(source)):
            frame = source.frame(k)
            assert frame.dtype == np.float32
            values = stack[k].astype(np.float64)
            expected = np.where(np.isinf(values), values,
                                np.clip(values, -np.finfo(np.float32).max, np.finfo(np.float32).max))
            np.testing.assert_array_equal(frame, expected.astype(np.float32))
        if np.dtype(dtype).kind == "i":
            assert source.frame(0).min() < 0
    finally:
        source.close()


def test_a_folder_of_signed_16_bit_frames_opens_as_float(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = [np.full((16, 16), -500 + 100 * k, np.int16) for k in range(3)]
    for k, frame in enumerate(frames):
        tifffile.imwrite(folder / f"{k:06d}.tif", frame)
    source = open_source(folder)
    try:
        assert source.dtype == np.float32 and not source.bad_frames
        np.testing.assert_array_equal(source.frame(2), frames[2].astype(np.float32))
    finally:
        source.close()


def test_big_endian_tiff_stack_is_memory_mapped_as_native_values(tmp_path):
    stack = np.stack([ramp(dtype=np.uint16, seed=k) for k in range(5)])
    tifffile.imwrite(tmp_path / "be.tif", stack, byteorder=">")
    with open_source(tmp_path / "be.tif") as src:
        assert src.memory_mapped and len(src) == 5 and src.dtype == np.uint16
        for i in range(5):
            assert src.frame(i).dtype == np.uint16
            np.testing.assert_array_equal(src.frame(i), stack[i])


def cut_to(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("options", [{}, {"imagej": True}, {"compression": "zlib"}],
                         ids=["tifffile", "imagej", "compressed"])
def test_a_truncated_tiff_stack_keeps_its_frames_and_reports_the_lost_ones(tmp_path, caplog, options):
    stack = np.stack([ramp(dtype=np.uint16, seed=k) for k in range(8)])
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, stack, **options)
    cut_to(path, 0.6)
    with open_source(path, prefetch=0) as src:
        assert src.kind == "tiff" and len(src) == 8 and src.shape == (24, 32) and src.dtype == np.uint16
        at_open = src.bad_frames
        assert at_open and at_open[-1] == BadFrame(
            str(path), "page 8: missing or cut short, the file ends early (truncated file?)", 7, "cut_000008")
        src.scan()
        readable = src.readable_indices()
        assert 3 <= len(readable) <= 5 and readable == list(range(len(readable)))  # the frames still in the file
        for i in readable:
            np.testing.assert_array_equal(src.frame(i), stack[i])
        assert [b.index for b in src.bad_frames] == list(range(len(readable), 8))
    assert [r for r in caplog.records if r.name == "tifffile"] == []  # the reason is in bad_frames, not the log


def test_a_truncated_tiff_of_pages_written_one_at_a_time_reports_the_pages_lost_after_it(tmp_path, caplog):
    pages = [ramp(dtype=np.uint16, seed=k) for k in range(8)]
    path = tmp_path / "cut.tif"
    with tifffile.TiffWriter(path) as writer:
        for page in pages:
            writer.write(page, contiguous=False)  # a series of its own per page: no frame count in the file
    cut_to(path, 0.6)
    with open_source(path, prefetch=0) as src:
        n = len(src)
        assert src.kind == "tiff" and 3 <= n < 8
        assert src.bad_frames[-1] == BadFrame(
            str(path), f"pages after page {n}: missing, the file ends before them (truncated file?)")
        src.scan()
        for i in src.readable_indices():
            np.testing.assert_array_equal(src.frame(i), pages[i])
        assert len(src.readable_indices()) >= n - 1
    assert [r for r in caplog.records if r.name == "tifffile"] == []


def test_a_tiff_cut_inside_its_first_frame_is_refused_as_truncated(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.stack([ramp(dtype=np.uint16, seed=k) for k in range(8)]), imagej=True)
    cut_to(path, 0.1)
    with pytest.raises(SourceError, match=r"page 1: missing or cut short, the file ends early \(truncated file\?\)"):
        open_source(path)


# ---- hyperstacks: channels beside the frames ---------------------------------------------------

def hyperstack(shape, seed=0) -> np.ndarray:
    """Random uint16 values of `shape`, each image unlike the others."""
    return np.random.default_rng(seed).integers(0, 65536, shape).astype(np.uint16)


HYPERSTACKS = {  # axes -> (shape, the frames: channel 1's, z-slice 1's where beside T, and the note)
    "TCYX": ((6, 2, 24, 32), lambda data: data[:, 0],
             "channel 2 of 2 (axis C) not read: the frames are those of channel 1"),
    "TZCYX": ((4, 3, 2, 24, 32), lambda data: data[:, 0, 0],
              "z-slices 2-3 of 3 (axis Z) and channel 2 of 2 (axis C) not read: the frames are those of z-slice 1 "
              "and channel 1"),
    "TZYX": ((5, 2, 24, 32), lambda data: data[:, 0],
             "z-slice 2 of 2 (axis Z) not read: the frames are those of z-slice 1"),
    "ZCYX": ((5, 3, 24, 32), lambda data: data[:, 0],  # a z-stack without time: its z-slices are the frames
             "channels 2-3 of 3 (axis C) not read: the frames are those of channel 1"),
}


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["memory-mapped", "page by page"])
@pytest.mark.parametrize("writer", ["imagej", "ome", "tifffile"])
@pytest.mark.parametrize("axes", list(HYPERSTACKS))
def test_a_hyperstack_reads_the_frames_of_its_first_channel_in_time_order(tmp_path, axes, writer, compression):
    """An ImageJ hyperstack of 10 time points x 2 channels read as 20 frames, the channels interleaved: every
    second frame was the other channel, and the normalisation window spanned both (radiometric audit)."""
    shape, frames_of, note = HYPERSTACKS[axes]
    data = hyperstack(shape)
    path = tmp_path / ("hyper.ome.tif" if writer == "ome" else "hyper.tif")
    options = {"imagej": True} if writer == "imagej" else {"ome": True} if writer == "ome" else {}
    # (tifffile would store 3 channels as the planes of an RGB image)
    tifffile.imwrite(path, data, metadata={"axes": axes}, photometric="minisblack", compression=compression, **options)
    expected = frames_of(data)
    with open_source(path) as src:
        assert src.memory_mapped == (compression is None)
        assert len(src) == len(expected) and src.shape == (24, 32) and src.dtype == np.uint16
        assert src.stems[-1] == f"{path.stem}_{len(expected):06d}"
        for k in range(len(expected)):
            np.testing.assert_array_equal(src.frame(k), expected[k])
        assert src.scan() == []
        assert src.skipped_pages == [note]
        assert src.page_number(1) == 1 + np.prod(shape[1:-2])  # the page after every image of frame 0's time


@pytest.mark.parametrize("channels", [3, 4])
def test_a_hyperstack_of_3_or_4_channels_tifffile_stored_as_sample_planes_reads_its_first_channel(tmp_path, channels):
    """Diff review 26: without photometric, tifffile stores each time point's 3 or 4 channels as one RGB page of
    sample planes (the page says SYX, the series TCYX), which still read as interleaved frames."""
    data = hyperstack((5, channels, 24, 32))
    # tifffile's default for this shape (it warns that its default will change)
    tifffile.imwrite(tmp_path / "tc.tif", data, metadata={"axes": "TCYX"}, photometric="rgb", planarconfig="separate")
    assert tifffile.TiffFile(tmp_path / "tc.tif").pages[0].axes == "SYX"
    with open_source(tmp_path / "tc.tif") as src:
        assert len(src) == 5 and src.shape == (24, 32)
        for k in range(5):
            np.testing.assert_array_equal(src.frame(k), data[k, 0])
        assert src.skipped_pages == [f"channels 2-{channels} of {channels} (axis C) not read: the frames are those of "
                                     "channel 1"]


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_an_ome_hyperstack_whose_planes_are_stored_channel_by_channel_reads_channel_1_in_time_order(tmp_path,
                                                                                                  compression):
    """Diff review 26: the pages were taken in the file's order, whose IFDs this OME file's TiffData lists channel by
    channel: frame 2 was time point 3, frame 3 channel 2."""
    times, channels, height, width = 3, 2, 8, 10
    planes = [np.full((height, width), 10 * (t + 1) + c, np.uint16) for c in range(channels) for t in range(times)]
    tiffdata = "".join(f'<TiffData FirstC="{c}" FirstT="{t}" FirstZ="0" IFD="{c * times + t}" PlaneCount="1"/>'
                       for t in range(times) for c in range(channels))
    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Image ID="Image:0" Name="x"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" '
           f'SizeX="{width}" SizeY="{height}" SizeC="{channels}" SizeT="{times}" SizeZ="1" BigEndian="false">'
           + "".join(f'<Channel ID="Channel:0:{c}" SamplesPerPixel="1"/>' for c in range(channels))
           + tiffdata + "</Pixels></Image></OME>")
    path = tmp_path / "channel_major.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        for k, plane in enumerate(planes):
            tif.write(plane, description=xml if k == 0 else None, metadata=None, compression=compression,
                      contiguous=False)
    with open_source(path) as src:
        assert [int(src.frame(k)[0, 0]) for k in range(len(src))] == [10, 20, 30]
        assert [src.page_number(k) for k in range(3)] == [1, 2, 3]
        assert src.skipped_pages == ["channel 2 of 2 (axis C) not read: the frames are those of channel 1"]


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["memory-mapped", "page by page"])
def test_a_hyperstack_cut_short_keeps_its_time_points_and_names_the_pages_lost(tmp_path, compression):
    """Cut short, tifffile gives an ImageJ file one page's series: its metadata still give the channels."""
    data = hyperstack((8, 2, 24, 32))
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TCYX"}, compression=compression)
    cut_to(path, 0.6)
    with open_source(path, prefetch=0) as src:
        assert len(src) == 8 and src.skipped_pages == [
            "channel 2 of 2 (axis C) not read: the frames are those of channel 1"]
        src.scan()
        readable = src.readable_indices()
        assert 3 <= len(readable) <= 6 and readable == list(range(len(readable)))
        for i in readable:
            np.testing.assert_array_equal(src.frame(i), data[i, 0])
        assert src.bad_frames[0] == BadFrame(  # frame k's page is 2k + 1
            str(path), f"page {2 * len(readable) + 1}: missing or cut short, the file ends early (truncated file?)",
            len(readable), f"cut_{len(readable) + 1:06d}")
        assert [b.index for b in src.bad_frames] == list(range(len(readable), 8))


@pytest.mark.parametrize("planarconfig", ["separate", "contig"])
def test_a_stack_of_two_sample_pages_reads_the_first_sample(tmp_path, planarconfig):
    """Two samples per pixel are no colour: the planes of each page were read as frames of their own, or, stored
    pixel by pixel, each row was a frame."""
    data = hyperstack((4, 2, 24, 32))
    stored = data if planarconfig == "separate" else np.moveaxis(data, 1, -1)
    tifffile.imwrite(tmp_path / "two.tif", stored, photometric="minisblack", planarconfig=planarconfig)
    with open_source(tmp_path / "two.tif") as src:
        assert len(src) == 4 and src.shape == (24, 32)
        for k in range(4):
            np.testing.assert_array_equal(src.frame(k), data[k, 0])
        assert src.skipped_pages == ["sample 2 of 2 (axis S) not read: the frames are those of sample 1"]


@pytest.mark.parametrize("compression", [None, "zlib"], ids=["memory-mapped", "page by page"])
@pytest.mark.parametrize("written", ["ImageJ TYX", "ImageJ ZYX", "ImageJ, no axes", "tifffile", "tifffile QQYX",
                                     "colour"])
def test_a_stack_without_channels_beside_its_frames_reads_every_page_as_a_frame(tmp_path, written, compression):
    """Unchanged by the hyperstacks' reading: a time series, a z-stack, a stack tifffile wrote as ImageJ channels
    (it writes every stack it is given no axes for so) and a colour stack read every page as a frame."""
    data = hyperstack((6, 24, 32))
    options = {"ImageJ TYX": {"imagej": True, "metadata": {"axes": "TYX"}},
               "ImageJ ZYX": {"imagej": True, "metadata": {"axes": "ZYX"}}, "ImageJ, no axes": {"imagej": True},
               "tifffile": {}, "tifffile QQYX": {}, "colour": {"photometric": "rgb"}}[written]
    stored = {"tifffile QQYX": data.reshape(3, 2, 24, 32),
              "colour": np.stack([data.astype(np.uint8)] * 3, axis=-1)}.get(written, data)
    tifffile.imwrite(tmp_path / "stack.tif", stored, compression=compression, **options)
    with open_source(tmp_path / "stack.tif") as src:
        assert len(src) == 6 and src.skipped_pages == []
        for k in range(6):
            np.testing.assert_array_equal(src.frame(k), data[k].astype(src.dtype))


# ---- ground truth ------------------------------------------------------------------------------

def test_ground_truth_masks_beside_images(tmp_path):
    write_folder(tmp_path / "images", n=3, names=["000001.png", "000002.png", "000003.png"])
    mask = np.zeros((24, 32), np.uint8)
    mask[5:8, 10:12] = 255
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "000002.png"), mask)
    with open_source(tmp_path) as src:
        gt = find_ground_truth(src)
        assert gt.masks_dir == tmp_path / "masks" and not gt.has_boxes
        np.testing.assert_array_equal(gt.mask("000002"), mask > 0)
        assert gt.mask("000001") is None


def test_ground_truth_of_one_image_of_a_data_set_is_its_mask_in_the_masks_folder_beside_images(tmp_path):
    write_folder(tmp_path / "images", n=2, names=["Misc_1.png", "Misc_2.png"])
    mask = np.zeros((24, 32), np.uint8)
    mask[5:8, 10:12] = 255
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "Misc_1_pixels0.png"), mask)
    with open_source(tmp_path / "images" / "Misc_1.png") as src:
        assert src.kind == "image"
        gt = find_ground_truth(src)
        assert gt.masks_dir == tmp_path / "masks"
        np.testing.assert_array_equal(gt.mask("Misc_1"), mask > 0)
    with open_source(tmp_path / "images" / "Misc_2.png") as src:
        assert find_ground_truth(src) is None  # no mask of its own there
    (tmp_path / "boxes.csv").write_text("1,DRONE,1,1,2,2\n")  # another clip's, a folder up: not this image's
    with open_source(tmp_path / "images" / "Misc_2.png") as src:
        assert find_ground_truth(src) is None


def test_ground_truth_masks_count_only_255_or_1_as_target_and_record_interpolated_ones(tmp_path):
    write_folder(tmp_path / "images", n=2, names=["a.png", "b.png"])
    interpolated = np.zeros((24, 32), np.uint8)
    interpolated[5:8, 10:12] = 255
    interpolated[4, 10:12] = 128  # a resized mask's soft edge: not target
    interpolated[8, 10:12] = 1
    zero_one = np.zeros((24, 32), np.uint8)
    zero_one[2:4, 3:6] = 1
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), interpolated)
    cv2.imwrite(str(tmp_path / "masks" / "b.png"), zero_one)
    with open_source(tmp_path) as src:
        gt = find_ground_truth(src)
        mask = gt.mask("b")
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, zero_one == 1)
        assert gt.mask_warnings == []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # listed in mask_warnings, once per file, not warned on worker threads
            mask = gt.mask("a")
        np.testing.assert_array_equal(mask, interpolated == 255)
        expected = [(tmp_path / "masks" / "a.png",
                     "4 pixels strictly between 0 and 255 are not target (interpolated or coloured mask?)")]
        assert gt.mask_warnings == expected
        gt.mask("a")
        assert gt.mask_warnings == expected  # once per file, however often the frame is shown

def test_ground_truth_boxes_real_clip():
    with open_source(CLIP_146) as src:
        assert len(src) == 313 and src.shape == (256, 320) and src.dtype == np.uint8
        gt = find_ground_truth(src)
        assert gt is not None and not gt.has_masks
        boxes = gt.boxes(0)  # csv: 1,DRONE,188.629,84.270,14.432,10.723 and 1,DRONE,58.436,121.287,...
        assert len(boxes) == 2
        assert boxes[0] == pytest.approx((187.629, 83.270, 14.432, 10.723))
        assert gt.boxes(10_000) == []


def test_ground_truth_boxes_follow_frame_numbers_across_a_deleted_frame(tmp_path):
    """A clip's boxes.csv numbers frames as its file names do (000001.png is frame 1): with frame 3 deleted, the
    source's 0-based frame 2 is 000004.png and gets frame 4's box, as irsam eval --clip scores it, not frame 3's."""
    images = tmp_path / "clip" / "images"
    images.mkdir(parents=True)
    for n in (1, 2, 4, 5):
        cv2.imwrite(str(images / f"{n:06d}.png"), np.full((16, 16), 10 * n, np.uint8))
    rows = "".join(f"{n},DRONE,{n},1,2,2\n" for n in range(1, 6))
    (tmp_path / "clip" / "boxes.csv").write_text("frame,class,x,y,w,h\n" + rows)
    with open_source(images) as src:
        gt = find_ground_truth(src)
        assert gt.numbering.by == "name"
        assert [gt.boxes(i)[0][0] for i in range(4)] == [0, 1, 3, 4]  # x = n, 0-based: n - 1


@pytest.mark.parametrize("names, by, x", [
    # cut from a longer recording, keeping its frame numbers: by position, not by the one name that is a frame
    (range(10, 20), "position", list(range(10))),  # 000010.png is frame 10 by name
    # a 0-based clip whose 000000.png was deleted: 000001.png is frame 2, as its last image is the last boxed frame
    (range(1, 10), "name, 0-based", list(range(1, 10))),
])
def test_ground_truth_boxes_follow_the_clip_s_numbering_as_eval_tells_it(tmp_path, names, by, x):
    """The truth overlay pairs frames with boxes.csv's as irsam eval --clip does (model.metrics.number_clip_frames)."""
    images = tmp_path / "clip" / "images"
    images.mkdir(parents=True)
    for n in names:
        cv2.imwrite(str(images / f"{n:06d}.png"), np.full((16, 16), n % 256, np.uint8))
    frames = range(1, 11) if by == "position" else range(2, 11)
    rows = "".join(f"{n},DRONE,{n},1,2,2\n" for n in frames)
    (tmp_path / "clip" / "boxes.csv").write_text("frame,class,x,y,w,h\n" + rows)
    with open_source(images) as src:
        gt = find_ground_truth(src)
        assert gt.numbering.by == by and gt.numbering.why
        assert [gt.boxes(i)[0][0] for i in range(len(names))] == x  # x = n, 0-based: n - 1


def test_no_ground_truth(tmp_path):
    write_folder(tmp_path, n=2)
    with open_source(tmp_path) as src:
        assert find_ground_truth(src) is None
