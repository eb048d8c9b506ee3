import numpy as np
import pytest

from app.core.frames import open_source
from app.core.normalization import Normalization
from app.core.project import ReviewProject, ReviewStatus
from app.core.propagation import (
    STOP_AREA,
    STOP_END,
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
    assert result.reason.startswith("max_frames")
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
    empty = np.zeros(project.frame_shape, bool)
    detector = MaskReplay([sequence.masks[9], empty])  # asked for frames 9 and 10 only
    result = propagate(project, source, normalization, project.stems[5], 1, detector=detector)
    assert result.stems == project.stems[6:10]
    assert result.stopped_at == project.stems[10] and result.reason == STOP_NO_TARGET
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


def test_propagation_stops_at_an_area_jump_and_when_nothing_is_proposed(tracked):
    project, source, normalization, sequence = tracked
    for i, stem in enumerate(project.stems):
        mask = sequence.masks[i].copy()
        if i == 4:
            mask = np.zeros_like(mask)
            ys, xs = np.nonzero(sequence.masks[i])
            mask[max(ys.min() - 6, 0) : ys.max() + 6, max(xs.min() - 6, 0) : xs.max() + 6] = True
        if i == 10:
            mask[:] = False
        project.save_prediction(stem, FrameResult(np.where(mask, 5.0, -5.0).astype(np.float32)))
    project.commit_mask(project.stems[1], sequence.masks[1])
    result = propagate(project, source, normalization, project.stems[1])
    assert result.stems == project.stems[2:4]
    assert result.stopped_at == project.stems[4] and result.reason.startswith(STOP_AREA)

    project.commit_mask(project.stems[6], sequence.masks[6])
    result = propagate(project, source, normalization, project.stems[6])
    assert result.stopped_at == project.stems[10] and result.reason == STOP_NO_TARGET


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
