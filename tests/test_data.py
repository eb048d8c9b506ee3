from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data import (
    Sample,
    extra_data_root,
    extra_data_samples,
    find_dataset,
    read_image_gray,
    read_mask,
    read_samples,
    read_split,
)
from model.metrics import InterpolatedMaskWarning

SHARED = Path(__file__).resolve().parents[2] / "shared"
NUAA = SHARED / "data/nuaa-sirst"


def write_layout(root: Path, mask_suffix: str = "") -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    Image.fromarray(gray, "L").save(images / "a.png")
    Image.fromarray(rgb, "RGB").save(images / "b.png")
    Image.fromarray(np.dstack([rgb, np.full((6, 8), 7, np.uint8)]), "RGBA").save(images / "c.png")
    Image.fromarray(rgb, "RGB").convert("P").save(images / "d.png")
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:5] = 255
    for stem in "abcd":
        Image.fromarray(mask, "L").save(masks / f"{stem}{mask_suffix}.png")
    return images, masks


def test_split_stems_with_or_without_extension(tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("a\nb.png\n\n  c.PNG  \nMisc_1.5")  # no trailing newline, like the official files
    assert read_split(split) == ["a", "b", "c", "Misc_1.5"]


def test_split_with_a_byte_order_mark(tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("a\r\nb.png\r\n", encoding="utf-8-sig")  # as Windows Notepad saves it
    assert read_split(split) == ["a", "b"]


def test_a_split_file_that_is_not_there_or_a_folder_is_named_as_such(tmp_path):
    """Training audit 26: a bare "[Errno 2] No such file or directory"."""
    with pytest.raises(ValueError, match=r"^split file .*nope\.txt: no such file$"):
        read_split(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a folder: give the text file listing the images"):
        read_split(tmp_path)


def test_split_listing_an_image_twice_is_refused(tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("a\nb\na.png\nc\na\nb\n")
    with pytest.raises(ValueError) as raised:
        read_split(split)
    assert str(raised.value) == f"split file {split} repeats 2 of its 3 images: a (3 times), b (2 times)"
    split.write_bytes(b"a\n\xffb\n")
    with pytest.raises(ValueError) as raised:
        read_split(split)
    assert str(raised.value) == f"split file {split} is not UTF-8 text (invalid start byte at byte 2)"


@pytest.mark.parametrize("mask_suffix", ["", "_pixels0"])
def test_find_dataset_layouts(tmp_path, mask_suffix):
    images, masks = write_layout(tmp_path, mask_suffix)
    samples = find_dataset(images, masks)
    assert [s.stem for s in samples] == ["a", "b", "c", "d"]
    assert samples[1].mask_path.name == f"b{mask_suffix}.png"
    split = tmp_path / "split.txt"
    split.write_text("d.png\nb")
    assert [s.stem for s in find_dataset(images, masks, split)] == ["d", "b"]


def test_extra_data_is_a_folder_or_a_split_file_inside_one(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    write_layout(root, "_pixels0")
    split = root / "splits" / "idx_4" / "trainval.txt"
    split.parent.mkdir(parents=True)
    split.write_text("b\nd.png\n")
    assert extra_data_root(split) == root and extra_data_root(root) == root
    assert [s.stem for s in extra_data_samples(root)] == ["a", "b", "c", "d"]
    assert [s.stem for s in extra_data_samples(split)] == ["b", "d"]  # the test frames stay out

    stray = tmp_path / "trainval.txt"
    stray.write_text("a\n")
    with pytest.raises(FileNotFoundError, match="no folder above this split file holds images/ and masks/"):
        extra_data_samples(stray)
    (root / "masks" / "a_pixels0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"^1 of 4 samples lack a mask in .*masks: a$"):
        extra_data_samples(root)
    (tmp_path / "half" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no masks/ folder"):
        extra_data_samples(tmp_path / "half")
    empty = split.parent / "empty.txt"
    empty.write_text("")
    with pytest.raises(FileNotFoundError, match="no images"):
        extra_data_samples(empty)


def test_missing_mask_is_an_error(tmp_path):
    images, masks = write_layout(tmp_path)
    (masks / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 of 4 samples.*c"):
        find_dataset(images, masks)


def test_mixed_png_modes_read_as_pil_luma(tmp_path):
    images, _ = write_layout(tmp_path)
    for stem in "abcd":
        gray = read_image_gray(images / f"{stem}.png")
        assert gray.dtype == np.uint8 and gray.shape == (6, 8)
        np.testing.assert_array_equal(gray, np.asarray(Image.open(images / f"{stem}.png").convert("L")))
    np.testing.assert_array_equal(read_image_gray(images / "c.png"), read_image_gray(images / "b.png"))  # alpha ignored


def test_sixteen_bit_images_are_refused(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(path)
    with pytest.raises(ValueError, match="not 8-bit"):
        read_image_gray(path)


def test_masks_binarise_at_255_and_accept_zero_one(tmp_path):
    values = np.array([[0, 255, 255], [0, 0, 255]], np.uint8)
    Image.fromarray(values).save(tmp_path / "m255.png")
    Image.fromarray((values // 255).astype(np.uint8)).save(tmp_path / "m01.png")
    Image.fromarray(values > 0).save(tmp_path / "m1bit.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("m255.png", "m01.png", "m1bit.png"):
            mask = read_mask(tmp_path / name)
            assert mask.dtype == bool
            np.testing.assert_array_equal(mask, values == 255)
    values[0, 0] = 100
    Image.fromarray(values).save(tmp_path / "interpolated.png")
    with pytest.warns(InterpolatedMaskWarning):
        np.testing.assert_array_equal(read_mask(tmp_path / "interpolated.png"), values == 255)


def test_reading_samples_names_interpolated_masks_in_one_warning(tmp_path):
    images, masks = write_layout(tmp_path)
    blurred = np.zeros((6, 8), np.uint8)
    blurred[2:4, 3:5] = 255
    blurred[1, 3:5] = 128
    for stem in "bd":
        Image.fromarray(blurred).save(masks / f"{stem}.png")
    (masks / "c.png").write_bytes(b"")
    samples = [Sample(stem, images / f"{stem}.png", masks / f"{stem}.png") for stem in "abcd"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_images, read_masks, problems = read_samples(samples)
    assert [str(w.message) for w in caught] == [
        f"2 of 4 masks have values strictly between 0 and 255 (blurred, resized, JPEG or coloured masks?); only 255 "
        f"counts as target: {masks / 'b.png'}, {masks / 'd.png'}"
    ]
    assert caught[0].category is InterpolatedMaskWarning and caught[0].filename == __file__
    assert len(read_images) == 3 and problems == [f"{masks / 'c.png'}: empty file (0 bytes)"]
    np.testing.assert_array_equal(read_masks[2], blurred == 255)


def test_nuaa_sirst_official_split_and_modes():
    samples = find_dataset(NUAA / "images", NUAA / "masks", NUAA / "splits/idx_427/test.txt")
    assert len(samples) == 86
    for split in (NUAA / "splits/idx_427").glob("*.txt"):
        assert read_split(split)  # none repeats an image
    everything = {s.stem: s for s in find_dataset(NUAA / "images", NUAA / "masks")}
    assert len(everything) == 427
    for stem in ("Misc_1", "Misc_10", "Misc_100", "Misc_138"):  # L, RGBA, RGB, P
        image, mask = read_image_gray(everything[stem].image_path), read_mask(everything[stem].mask_path)
        assert image.dtype == np.uint8 and image.ndim == 2
        assert mask.shape == image.shape and 0 < mask.sum() < mask.size


def test_hidden_files_are_not_samples(tmp_path):
    """A data set copied from a Mac onto a FAT or SMB volume holds an AppleDouble "._name.png" beside each image: not
    an image, and not a sample, as frame sources already list them."""
    images, masks = write_layout(tmp_path, "")
    (images / "._a.png").write_bytes(b"\0\5\26\7" + b"\0" * 60)
    (masks / "._a.png").write_bytes(b"\0\5\26\7" + b"\0" * 60)
    assert [s.stem for s in find_dataset(images, masks)] == ["a", "b", "c", "d"]


def test_a_tiff_whose_first_page_is_a_thumbnail_is_read_as_the_frame_after_it(tmp_path):
    """Diff review 26: training and eval read the thumbnail (PIL's first page) where detect and the app read the
    frame, so eval skipped every sample as a mask of another size."""
    import tifffile

    from app.core.frames import read_gray

    frame = np.arange(64 * 48, dtype=np.uint8).reshape(48, 64)
    for name, flag, thumbnail in (("flagged.tif", 1, np.zeros((48, 64), np.uint8)),
                                  ("smaller.tif", 0, np.zeros((12, 16), np.uint8))):
        with tifffile.TiffWriter(tmp_path / name) as tif:
            tif.write(thumbnail, subfiletype=flag)
            tif.write(frame)
        assert np.array_equal(read_image_gray(tmp_path / name), frame)
        assert np.array_equal(read_gray(tmp_path / name), frame)
    with tifffile.TiffWriter(tmp_path / "preview_after.tif") as tif:  # a frame, then its preview: the frame
        tif.write(frame)
        tif.write(np.zeros((12, 16), np.uint8), subfiletype=1)
    assert np.array_equal(read_image_gray(tmp_path / "preview_after.tif"), frame)
