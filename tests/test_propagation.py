import cv2
import numpy as np
import pytest

from app.core.frames import open_source
from app.core.normalization import Normalization
from app.core.project import ReviewProject, ReviewStatus
from app.core.propagation import (
    STOP_AREA,
    STOP_AREA_DRIFT,
    STOP_END,
    STOP_MAX_FRAMES,
    STOP_NO_TARGET,
    STOP_OVERLAP,
    STOP_REVIEWED,
    apply_propagation,
    propagate,
)
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from model.detectors import FrameResult

ONE_TARGET = SyntheticConfig(
    n_frames=24, height=64, width=80, n_targets=(1, 1), sigma=(1.6, 1.8), extended_fraction=0.0,
    speed=(0.8, 1.0), scr=(25.0, 30.0), empty_fraction=0.0,
)


def iou(a, b):
    return np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1)


def make_project(tmp_path, config=ONE_TARGET, seed=1):
    sequence = generate_sequence(config, seed=seed)
    folder = write_sequence(sequence, tmp_path / "frames")
    source = open_source(folder)
    normalization = Normalization.from_percentiles(source)
    project = ReviewProject.create(tmp_path / "project", source.path, source.kind, source.stems, source.shape,
                                   normalization.to_dict())
    return project, source, normalization, sequence


@pytest.fixture
def tracked(tmp_path):
    project, source, normalization, sequence = make_project(tmp_path)
    yield project, source, normalization, sequence
    source.close()


@pytest.mark.parametrize("direction", [1, -1])
def test_propagation_follows_the_target_by_regrowing_it(tracked, direction):
    project, source, normalization, sequence = tracked
    start = 12
    project.commit_mask(project.stems[start], sequence.masks[start])
    result = propagate(project, source, normalization, project.stems[start], direction, max_frames=100)
    assert result.reason == STOP_END and result.stopped_at is None
    expected = list(range(start + 1, 24)) if direction == 1 else list(range(start - 1, -1, -1))
    assert result.stems == [project.stems[i] for i in expected]
    scores = [iou(mask, sequence.masks[project.index(stem)]) for stem, mask in result.frames]
    assert min(scores) > 0.5, scores


def test_propagation_uses_stored_predictions_and_picks_the_target_component(tracked):
    project, source, normalization, sequence = tracked
    for i, stem in enumerate(project.stems):
        clutter = np.zeros(project.frame_shape, bool)
        clutter[2:4, 2:4] = True  # a false alarm far from the target
        logits = np.where(sequence.masks[i] | clutter, 5.0, -5.0).astype(np.float32)
        project.save_prediction(stem, FrameResult(logits))
    project.commit_mask(project.stems[0], sequence.masks[0])
    result = propagate(project, source, normalization, project.stems[0], max_frames=10)
    assert result.stems == project.stems[1:11]
    assert result.reason == STOP_MAX_FRAMES
    for stem, mask in result.frames:
        assert np.array_equal(mask, sequence.masks[project.index(stem)])


class MaskReplay:
    """A detector that proposes the given masks, one per call, in order."""

    name, device = "replay", "cpu"

    def __init__(self, masks):
        self.masks = iter(masks)

    def detect(self, images, features=False):
        return [FrameResult(np.where(next(self.masks), 5.0, -5.0).astype(np.float32)) for _ in images]


def test_stored_predictions_come_before_the_detector(tracked):
    project, source, normalization, sequence = tracked
    for i in range(6, 9):
        project.save_prediction(project.stems[i], FrameResult(np.where(sequence.masks[i], 5.0, -5.0).astype(np.float32)))
    project.commit_mask(project.stems[5], sequence.masks[5])
    detector = MaskReplay(sequence.masks[9:11])  # a third call (or one for frames 6-8) would fail
    result = propagate(project, source, normalization, project.stems[5], 1, detector=detector, max_frames=5)
    assert result.stems == project.stems[6:11] and result.reason == STOP_MAX_FRAMES
    for stem, mask in result.frames:
        assert np.array_equal(mask, sequence.masks[project.index(stem)])


def test_propagation_asks_a_detector_when_one_is_given(tracked):
    project, source, normalization, sequence = tracked
    project.save_prediction(project.stems[9], FrameResult(np.full(project.frame_shape, -5.0, np.float32)))
    project.commit_mask(project.stems[8], sequence.masks[8])
    detector = MaskReplay(sequence.masks[7::-1])
    result = propagate(project, source, normalization, project.stems[8], -1, detector=detector)
    assert result.stems == project.stems[7::-1] and result.reason == STOP_END
    for stem, mask in result.frames:
        assert np.array_equal(mask, sequence.masks[project.index(stem)])


def test_propagation_stops_before_a_reviewed_frame(tracked):
    project, source, normalization, sequence = tracked
    project.commit_mask(project.stems[5], sequence.masks[5])
    project.set_status(project.stems[9], ReviewStatus.ACCEPTED)
    result = propagate(project, source, normalization, project.stems[5])
    assert result.stems == project.stems[6:9]
    assert result.stopped_at == project.stems[9]
    assert result.reason == f"{STOP_REVIEWED}: accepted"


def test_propagation_stops_where_the_target_vanishes(tmp_path):
    config = SyntheticConfig(**{**ONE_TARGET.to_dict(), "n_frames": 40, "empty_fraction": 0.3, "empty_run": 6})
    project, source, normalization, sequence = make_project(tmp_path, config, seed=2)
    empty = [i for i in range(40) if not sequence.masks[i].any()]
    first_empty = empty[0]
    assert first_empty > 1
    start = first_empty - 2
    project.commit_mask(project.stems[start], sequence.masks[start])
    result = propagate(project, source, normalization, project.stems[start])
    source.close()
    assert result.stems == [project.stems[start + 1]]
    assert result.stopped_at == project.stems[first_empty]
    assert result.reason.split(":")[0] in (STOP_NO_TARGET, STOP_AREA, STOP_OVERLAP)


def test_a_proposal_with_nothing_near_the_target_falls_back_to_regrowing_it(tracked):
    """A detector run that missed the target must not stop the propagation of a target drawn by hand."""
    project, source, normalization, sequence = tracked
    start = 12
    project.commit_mask(project.stems[start], sequence.masks[start])
    unproposed = propagate(project, source, normalization, project.stems[start], max_frames=100)
    assert unproposed.reason == STOP_END

    far_false_alarm = np.zeros(project.frame_shape, bool)
    far_false_alarm[2:4, 2:4] = True
    for i, stem in enumerate(project.stems):
        proposal = far_false_alarm if i % 2 else np.zeros_like(far_false_alarm)
        project.save_prediction(stem, FrameResult(np.where(proposal, 5.0, -5.0).astype(np.float32)))
    result = propagate(project, source, normalization, project.stems[start], max_frames=100)
    assert result.stems == unproposed.stems and result.reason == STOP_END
    for (_, mask), (_, regrown) in zip(result.frames, unproposed.frames):
        assert np.array_equal(mask, regrown)


def square_at(shape, x, y):
    mask = np.zeros(shape, bool)
    mask[y : y + 3, x : x + 3] = True
    return mask


def moving_square(tmp_path, warm_patch_on=None):
    """12 hand-built frames of a flat sky with a 3x3 target moving one pixel right per frame, gone from
    frame 8 on; on frame `warm_patch_on` it merges with a large warm patch. Returns the project, source,
    normalisation and each frame's target mask."""
    shape = (40, 60)
    masks = [square_at(shape, 10 + i, 20) if i < 8 else np.zeros(shape, bool) for i in range(12)]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, mask in enumerate(masks):
        image = np.where(mask, 200, 40).astype(np.uint8)
        if i == warm_patch_on:
            image[16:28, 10:26] = 200
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    source = open_source(folder)
    normalization = Normalization.fixed(0, 255)
    project = ReviewProject.create(tmp_path / "project", source.path, source.kind, source.stems, source.shape,
                                   normalization.to_dict())
    return project, source, normalization, masks


@pytest.fixture
def square(tmp_path):
    project, source, normalization, masks = moving_square(tmp_path)
    yield project, source, normalization, masks
    source.close()


def save_proposal(project, stem, mask):
    project.save_prediction(stem, FrameResult(np.where(mask, 5.0, -5.0).astype(np.float32)))


def test_a_matching_proposal_is_carried_as_it_is(square):
    project, source, normalization, masks = square
    for i in range(1, 8):
        proposal = masks[i].copy()
        proposal[23, 11 + i] = True  # one pixel re-segmentation would not grow: the proposal is recognisable
        proposal[0:2, 0:2] = True  # a false alarm outside the search window
        save_proposal(project, project.stems[i], proposal)
    project.commit_mask(project.stems[0], masks[0])
    result = propagate(project, source, normalization, project.stems[0], max_frames=7)
    assert result.stems == project.stems[1:8] and result.reason == STOP_MAX_FRAMES
    for stem, mask in result.frames:
        i = project.index(stem)
        expected = masks[i].copy()
        expected[23, 11 + i] = True
        assert np.array_equal(mask, expected)


def test_a_proposal_that_is_not_the_target_falls_back_to_regrowing_it(square):
    project, source, normalization, masks = square
    for i in range(1, 8):
        save_proposal(project, project.stems[i], square_at(masks[i].shape, 16 + i, 20))  # clutter beside it
    project.commit_mask(project.stems[0], masks[0])
    result = propagate(project, source, normalization, project.stems[0], max_frames=7)
    assert result.stems == project.stems[1:8] and result.reason == STOP_MAX_FRAMES
    for stem, mask in result.frames:
        assert np.array_equal(mask, masks[project.index(stem)])


def test_the_stop_reason_says_what_was_tried(square):
    project, source, normalization, masks = square
    project.commit_mask(project.stems[7], masks[7])
    result = propagate(project, source, normalization, project.stems[7])
    assert result.stems == [] and result.stopped_at == project.stems[8] and result.reason == STOP_NO_TARGET

    blob = np.zeros(masks[0].shape, bool)
    blob[17:25, 15:23] = True  # where the target would be, far too large
    save_proposal(project, project.stems[8], blob)
    result = propagate(project, source, normalization, project.stems[7])
    assert result.stems == [] and result.stopped_at == project.stems[8]
    assert result.reason == f"{STOP_NO_TARGET} (re-segmentation, after the proposal: {STOP_AREA}: 9 -> 64 px)"


def test_propagation_stops_at_an_area_jump(tmp_path):
    project, source, normalization, masks = moving_square(tmp_path, warm_patch_on=4)
    merged = masks[4].copy()
    merged[16:28, 10:26] = True
    save_proposal(project, project.stems[4], merged)
    project.commit_mask(project.stems[1], masks[1])
    result = propagate(project, source, normalization, project.stems[1])
    source.close()
    assert result.stems == project.stems[2:4] and result.stopped_at == project.stems[4]
    assert result.reason.startswith(STOP_AREA)
    assert result.reason.endswith(f"(re-segmentation, after the proposal: {STOP_AREA}: 9 -> 192 px)")


def test_propagation_stops_where_the_target_has_slowly_swollen_past_the_area_limit(tmp_path):
    # each frame's target is at most 1.8x the previous one's (no jump), but 25 px is 2.8x the 9 px carried
    shape = (40, 60)
    masks = []
    for i, side in enumerate((3, 4, 5, 6, 7)):
        mask = np.zeros(shape, bool)
        mask[20 : 20 + side, 10 + i : 10 + i + side] = True
        masks.append(mask)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, mask in enumerate(masks):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.where(mask, 200, 40).astype(np.uint8))
    source = open_source(folder)
    normalization = Normalization.fixed(0, 255)
    project = ReviewProject.create(tmp_path / "project", source.path, source.kind, source.stems, source.shape,
                                   normalization.to_dict())
    for stem, mask in zip(project.stems[1:], masks[1:]):
        save_proposal(project, stem, mask)
    project.commit_mask(project.stems[0], masks[0])
    result = propagate(project, source, normalization, project.stems[0])
    source.close()
    assert result.stems == project.stems[1:2] and result.stopped_at == project.stems[2]
    assert result.reason.startswith(f"{STOP_AREA_DRIFT}: ")
    assert "(re-segmentation, after the proposal: area drift: 25 px, 9 px at the start)" in result.reason


def test_copy_mode_shifts_the_mask_by_the_motion_of_the_previous_frame(tracked):
    project, source, normalization, _ = tracked
    first = np.zeros(project.frame_shape, bool)
    first[20:23, 30:33] = True
    second = np.roll(first, 2, axis=1)
    project.commit_mask(project.stems[0], first)
    project.commit_mask(project.stems[1], second)
    result = propagate(project, source, normalization, project.stems[1], mode="copy", max_frames=3)
    assert [np.nonzero(mask.any(axis=0))[0][0] for _, mask in result.frames] == [34, 36, 38]


def test_apply_replaces_only_the_target_region_and_is_undoable(tracked):
    project, source, normalization, sequence = tracked
    stem = project.stems[3]
    other = np.zeros(project.frame_shape, bool)
    other[60:62, 0:2] = True
    stale = np.roll(sequence.masks[3], 1, axis=0)  # an older, slightly wrong mask of the same target
    project.commit_mask(stem, other | stale)
    project.commit_mask(project.stems[2], sequence.masks[2])
    result = propagate(project, source, normalization, project.stems[2], max_frames=1)
    target = result.frames[0][1]
    assert apply_propagation(project, result) == [stem]
    assert np.array_equal(project.committed_mask(stem), other | target)
    assert project.status(stem) is ReviewStatus.UNREVIEWED
    assert np.array_equal(project.undo(stem), other | stale)


def test_apply_on_a_frame_without_committed_mask_keeps_only_the_carried_target(tracked):
    project, source, normalization, sequence = tracked
    stem = project.stems[3]
    false_alarm = np.zeros(project.frame_shape, bool)
    false_alarm[60:62, 0:2] = True
    predicted = sequence.masks[3] | false_alarm
    project.save_prediction(stem, FrameResult(np.where(predicted, 5.0, -5.0).astype(np.float32)))
    project.commit_mask(project.stems[2], sequence.masks[2])
    result = propagate(project, source, normalization, project.stems[2], max_frames=1)
    target = result.frames[0][1]
    assert apply_propagation(project, result) == [stem]
    committed = project.committed_mask(stem)
    assert np.array_equal(committed, target) and not (committed & false_alarm).any()
    assert np.array_equal(project.undo(stem), predicted)  # one undo step back to the proposal


def test_a_mask_of_several_targets_carries_each_and_stops_where_the_first_is_lost(tmp_path):
    """The Review dock's default carries the whole committed mask: two targets apart are each followed (one search
    window around both once lost them both, or kept only one), and the run stops where one is lost, naming it."""
    shape = (40, 60)
    right = [square_at(shape, 8 + i, 8) if i < 6 else np.zeros(shape, bool) for i in range(10)]  # gone at frame 6
    down = [square_at(shape, 40, 5 + 2 * i) for i in range(10)]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(10):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.where(right[i] | down[i], 200, 40).astype(np.uint8))
    source = open_source(folder)
    project = ReviewProject.create(tmp_path / "project", source.path, source.kind, source.stems, source.shape,
                                   Normalization.fixed(0, 255).to_dict())
    fragment = np.zeros(shape, bool)
    fragment[10, 40:43] = True  # a piece 2 px below the moving-down target: a fragment of it, not a third target
    both = right[0] | down[0] | fragment
    result = propagate(project, source, Normalization.fixed(0, 255), project.stems[0], target_mask=both)
    assert result.stems == project.stems[1:6] and result.stopped_at == project.stems[6]
    for stem, mask in result.frames:
        i = project.index(stem)
        assert np.array_equal(mask & ~down[i], right[i]) and (mask & down[i]).sum() == 9  # both targets, whole
    assert result.reason.startswith(STOP_NO_TARGET) and result.reason.endswith("(target 2 of 2, last at (14, 9))")

    class CountingDetector:  # frames not detected yet: the window's loaded detector proposes on them
        calls = 0

        def detect(self, images):
            CountingDetector.calls += len(images)
            return [FrameResult(np.full(image.shape, -5.0, np.float32)) for image in images]

    again = propagate(project, source, Normalization.fixed(0, 255), project.stems[0], target_mask=both,
                      detector=CountingDetector())
    assert again.stems == result.stems
    assert CountingDetector.calls == 9  # frames 1-9, each detected once for both targets
    source.close()
