"""A PNG or JPEG with bytes after its end (a camera's or tool's appended data) is complete: every reader takes it (the
app's frame sources, eval's and train's image reader); one cut short is still refused by each, with the same words."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.frames import FrameReadError, open_source, read_gray
from model.data import ImageReadError, read_image_gray


def _image() -> np.ndarray:
    return (np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8)


@pytest.mark.parametrize("suffix, appended", [(".png", b"appended by a tool"), (".jpg", b"\xff\xff\xff"),
                                              (".jpg", b"\r\n"), (".png", b"\x00" * 5000)])
def test_bytes_after_a_complete_file_s_end_are_no_damage(tmp_path, suffix, appended):
    folder = tmp_path / "frames"
    folder.mkdir()
    path = folder / f"f001{suffix}"
    cv2.imwrite(str(path), _image())
    expected = read_gray(path)
    path.write_bytes(path.read_bytes() + appended)
    np.testing.assert_array_equal(read_gray(path), expected)
    np.testing.assert_array_equal(read_image_gray(path), expected)
    with open_source(folder) as source:
        assert source.scan() == []
        np.testing.assert_array_equal(source.frame(0), expected)


@pytest.mark.parametrize("suffix, reason", [(".png", "truncated PNG (no IEND chunk at the end)"),
                                            (".jpg", "truncated JPEG (no end-of-image marker)")])
def test_a_file_cut_short_is_refused_by_every_reader_in_the_same_words(tmp_path, suffix, reason):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / f"f000{suffix}"), _image())
    path = folder / f"f001{suffix}"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (48, 64)).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(FrameReadError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_gray(path)
    with pytest.raises(ImageReadError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_image_gray(path)
    with open_source(folder) as source:
        assert [bad.reason for bad in source.scan()] == [reason]
