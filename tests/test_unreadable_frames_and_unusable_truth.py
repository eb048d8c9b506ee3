"""Frames that could not be read once are read again when their file changes; ground-truth masks that cannot be a
frame's reference are not used; a folder of unsupported images says why (Qt-free)."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import tifffile

from app.cli import main
from app.core.frames import SourceError, UnusableMask, find_ground_truth, open_source
from app.core.label_import import import_labels
from app.core.project import ReviewStatus
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from app.session import ReviewSession
from model.data import FrameReadError
from model.detectors import FrameResult


@pytest.fixture
def sequence(tmp_path):
    """12 frames of 48x64 (16-bit PNG) in images/, their 0/255 masks in masks/."""
    config = SyntheticConfig(n_frames=12, height=48, width=64, n_targets=(1, 1), empty_fraction=0.0)
    return write_sequence(generate_sequence(config, seed=5), tmp_path / "sequence")


# ---- a folder of images of an unsupported sample type -------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint32])
def test_a_folder_of_unsupported_images_is_refused_with_the_reason(tmp_path, capsys, dtype):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"{k:06d}.tif", np.full((16, 16), k, dtype))
    reason = (f"unsupported sample type {np.dtype(dtype)} (need 8- or 16-bit unsigned, 16-bit signed, or 32- or 64-bit "
              "float)")
    with pytest.raises(SourceError) as raised:
        open_source(folder)
    assert str(raised.value) == f"{folder}: none of the 3 image files is readable: {reason}"
    assert main(["info", str(folder)]) != 0
    assert reason in capsys.readouterr().err


def test_a_folder_whose_files_fail_for_several_reasons_names_the_most_common(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"{k:06d}.tif", np.zeros((16, 16), np.int32))
    (folder / "000009.png").write_bytes(b"")
    with pytest.raises(SourceError, match=r"none of the 4 image files is readable: unsupported sample type int32 "
                                          r"\(need 8- or 16-bit unsigned, 16-bit signed, or 32- or 64-bit float\) \(3 of "
                                          r"them; the others for other reasons\)$"):
        open_source(folder)



def test_a_folder_of_broken_links_says_they_all_are(tmp_path):
    """Reasons alike but for the file they name are one reason: six broken links are not one broken link and five
    files "unreadable for other reasons"."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(6):
        (folder / f"{k:06d}.png").symlink_to(tmp_path / f"gone_{k}.png")
    with pytest.raises(SourceError, match=r"none of the 6 image files is readable: broken link \(its target "
                                          r".*gone_0\.png does not exist\) \(the 5 others alike\)$"):
        open_source(folder)

# ---- a frame unreadable for a while ----------------------------------------------------------------

def test_a_frame_missing_for_a_while_reads_again_once_its_folder_is_back(sequence):
    earlier = ReviewSession.open(sequence)  # a run before this session: frame 8 has a proposal
    truth = earlier.ground_truth.mask("000008")
    earlier.ensure_project().save_prediction("000008", FrameResult(np.where(truth, 5.0, -5.0).astype(np.float32)))
    earlier.project.flush_detections()
    earlier.close()
    session = ReviewSession.open(sequence)
    project = session.project
    images = sequence / "images"
    try:
        images.rename(sequence / "away")  # a network share drops
        with pytest.raises(FrameReadError, match="file not found"):
            session.frame_and_layers(7, {"prediction"})
        session.mark_unreadable(7)  # as the window does
        assert session.is_unreadable(7) and session.next_unreviewed(6) != 7
        assert [bad.index for bad in session.source.bad_frames] == [7]
    finally:
        (sequence / "away").rename(images)  # and comes back

    frame, layers = session.frame_and_layers(7, {"prediction"})
    assert frame.shape == (48, 64) and not session.is_unreadable(7)
    np.testing.assert_array_equal(layers.prediction, truth)  # read again: not the layers of an unreadable frame
    assert session.detection_counts[7] == len(project.detections(session.stem(7))) == 1
    assert session.source.bad_frames == [] and session.next_unreviewed(6) == 7
    # the window's look at the disk has the timeline and the queue follow
    assert session.stem(7) in session.refresh_from_disk().statuses
    assert session.stem(7) not in session.refresh_from_disk().statuses  # said once
    session.set_status(7, ReviewStatus.ACCEPTED)
    session.close()


def test_a_frame_read_half_copied_reads_once_copied_in_whole_and_a_corrupt_one_is_not_decoded_again(sequence):
    images = sequence / "images"
    whole = (images / "000005.png").read_bytes()
    (images / "000005.png").write_bytes(whole[: len(whole) // 2])  # read while it was being copied in
    (images / "000009.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 50)  # and one truly corrupt
    with open_source(images, prefetch=0) as source:
        assert {bad.index for bad in source.bad_frames} == {4, 8}  # found by the header checks at open
        decodes = source.cache_stats()["decodes"]
        for _ in range(3):  # scrubbing over them: no decode while their files are unchanged
            for index, reason in ((4, "truncated PNG"), (8, "truncated PNG")):
                with pytest.raises(FrameReadError, match=reason):
                    source.frame(index)
        assert source.cache_stats()["decodes"] == decodes

        (images / "000005.png").write_bytes(whole)  # the copy has finished
        assert source.frame(4).shape == (48, 64)
        assert [bad.index for bad in source.bad_frames] == [8] and source.unreadable_stems == {"000009"}
        assert source.cache_stats()["decodes"] == decodes + 1


def test_a_frame_that_still_fails_after_its_file_changed_keeps_the_new_reason(sequence):
    images = sequence / "images"
    with open_source(images, prefetch=0) as source:
        shutil.move(images / "000003.png", sequence / "000003.png")
        with pytest.raises(FrameReadError, match="file not found"):
            source.frame(2)
        (images / "000003.png").write_bytes(b"")
        with pytest.raises(FrameReadError, match=r"empty file \(0 bytes\)"):
            source.frame(2)
        assert source.bad_frames[0].reason == "empty file (0 bytes)"
        shutil.move(sequence / "000003.png", images / "000003.png")
        assert source.frame(2).shape == (48, 64) and source.bad_frames == []


def test_a_mixed_size_folders_frame_unreadable_at_open_takes_its_size_when_it_reads(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((20, 30), 7, np.uint8))
    cv2.imwrite(str(folder / "b.png"), np.full((40, 50), 9, np.uint8))
    (folder / "c.png").write_bytes(b"")
    with open_source(folder, prefetch=0) as source:
        assert source.mixed_sizes and source.frame_shape(2) is None
        cv2.imwrite(str(folder / "c.png"), np.full((12, 14), 3, np.uint8))
        assert source.frame(2).shape == (12, 14) and source.frame_shape(2) == (12, 14)
        assert source.size_record()["c"] == (12, 14)


# ---- ground truth that cannot be a frame's reference -------------------------------------------------

def test_a_truth_mask_of_another_size_is_not_used_over_its_frame(sequence):
    mask_file = sequence / "masks" / "000002.png"
    mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(mask_file), cv2.resize(mask, (32, 24), interpolation=cv2.INTER_NEAREST))
    session = ReviewSession.open(sequence)
    truth = session.ground_truth
    assert session.layers(1, {"truth"}).truth_mask is None
    assert session.layers(0, {"truth"}).truth_mask.shape == (48, 64)
    assert truth.mask_warnings == [(mask_file, "mask 32x24 differs from the frame's 64x48; not used")]
    assert truth.mask("000002").shape == (24, 32)  # read as it is for an import, which refuses it itself
    session.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_interpolated_mask_with_no_target_pixel_is_not_committed_and_the_report_says_why(sequence):
    masks = sequence / "masks"
    blurred = cv2.GaussianBlur(cv2.imread(str(masks / "000003.png"), cv2.IMREAD_UNCHANGED), (9, 9), 3.0)
    blurred[blurred == 255] = 254  # blurred (or saved as JPEG): nothing at full value
    assert blurred.any()
    cv2.imwrite(str(masks / "000003.png"), blurred)
    interpolated = int(np.count_nonzero(blurred))
    session = ReviewSession.open(sequence)
    project = session.ensure_project()
    with pytest.raises(UnusableMask):
        session.ground_truth.mask("000003")

    report = import_labels(project, session.ground_truth.mask)
    reason = (f"all its {interpolated} nonzero pixels are strictly between 0 and 255 (interpolated or "
              "coloured mask?): none is "
              "target, so it would commit an empty mask")
    assert report.refused == [("000003", reason)]
    assert len(report.imported) == 11 and "000003" not in report.imported
    assert report.summary() == "11 masks committed, 1 mask refused"
    assert not project.has_committed_mask("000003") and project.status("000003") is ReviewStatus.UNREVIEWED
    # shown, it is read as the metrics read it (no target), with the warning the window's status bar shows
    assert not session.layers(2, {"truth"}).truth_mask.any()
    assert session.ground_truth.mask_warnings == [
        (masks / "000003.png", f"{interpolated} pixels strictly between 0 and 255 are not target (interpolated or coloured mask?)")]
    session.close()


def test_a_partly_interpolated_mask_is_read_as_its_255_core(sequence):
    masks = sequence / "masks"
    mask = cv2.imread(str(masks / "000004.png"), cv2.IMREAD_UNCHANGED)
    soft = mask.copy()
    soft[cv2.dilate(mask, np.ones((3, 3), np.uint8)) > mask] = 100  # a soft edge round the 255 target
    cv2.imwrite(str(masks / "000004.png"), soft)
    with open_source(sequence) as source:
        truth = find_ground_truth(source)
        np.testing.assert_array_equal(truth.mask("000004"), mask == 255)
