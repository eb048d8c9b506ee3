import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

import app.core.frames as frames
from app.core.frames import BadFrame, FrameReadError, SourceError, find_ground_truth, open_source, read_gray
from model.metrics import InterpolatedMaskWarning

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


def test_bad_files_reported_and_skipped(tmp_path):
    data = write_folder(tmp_path, n=6)
    (tmp_path / "frame6.png").write_bytes(b"")
    (tmp_path / "frame7.png").write_text("this is not an image")
    full = (tmp_path / "frame1.png").read_bytes()
    (tmp_path / "frame8.png").write_bytes(full[: len(full) // 2])
    cv2.imwrite(str(tmp_path / "frame9.png"), ramp(80, 100))
    cv2.imwrite(str(tmp_path / "frame10.jpg"), ramp(80, 100))  # size only known once decoded
    with open_source(tmp_path) as src:
        at_open = {Path(b.path).name: b for b in src.bad_frames}
        assert set(at_open) == {"frame6.png", "frame7.png", "frame9.png"}
        assert at_open["frame6.png"].reason == "empty file (0 bytes)"
        assert "not an image" in at_open["frame7.png"].reason
        assert at_open["frame9.png"].reason == "size 100x80 differs from the sequence's 32x24"
        assert src.stems == [f"frame{i}" for i in range(6)] + ["frame8", "frame10"]
        with pytest.raises(FrameReadError, match="truncated PNG"):
            src.frame(6)
        assert src.is_bad(6)
        bad = {Path(b.path).name: b for b in src.scan()}
        assert set(bad) == {"frame6.png", "frame7.png", "frame8.png", "frame9.png", "frame10.jpg"}
        assert bad["frame8.png"] == BadFrame(str(tmp_path / "frame8.png"), bad["frame8.png"].reason, 6, "frame8")
        assert "differs from the sequence's 32x24" in bad["frame10.jpg"].reason
        assert src.readable_indices() == list(range(6))
        for i in src.readable_indices():
            np.testing.assert_array_equal(src.frame(i), data[src.stems[i]])


def test_first_frame_bad_next_defines_sequence(tmp_path):
    write_folder(tmp_path, n=3, names=["b.png", "c.png", "d.png"])
    full = (tmp_path / "b.png").read_bytes()
    (tmp_path / "a.png").write_bytes(full[:40])
    with open_source(tmp_path) as src:
        assert src.stems == ["b", "c", "d"] and src.shape == (24, 32)
        assert [Path(b.path).name for b in src.bad_frames] == ["a.png"]


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
        for name in ("frame-prefetch", "layer-prefetch"):
            assert os.getpriority(os.PRIO_PROCESS, threads[name].native_id) == expected, name
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
        with pytest.warns(InterpolatedMaskWarning):
            mask = gt.mask("a")
        np.testing.assert_array_equal(mask, interpolated == 255)
        expected = [(tmp_path / "masks" / "a.png",
                     "4 pixels strictly between 0 and 255 are not target (interpolated mask?)")]
        assert gt.mask_warnings == expected
        with pytest.warns(InterpolatedMaskWarning):
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


def test_no_ground_truth(tmp_path):
    write_folder(tmp_path, n=2)
    with open_source(tmp_path) as src:
        assert find_ground_truth(src) is None
