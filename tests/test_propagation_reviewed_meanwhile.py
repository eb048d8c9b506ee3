"""A propagation's result is written after its run: a frame another instance (a second window on the project, an
`irsam` command) reviewed or edited while the run went on is left alone, and the result says so."""
import numpy as np
import pytest

from app.core.project import ReviewProject, ReviewStatus
from app.core.propagation import (
    SKIP_EDITED,
    SKIP_REVIEWED,
    apply_propagation,
    describe_skipped,
    propagate,
)
from tests.test_propagation import make_project


@pytest.fixture
def tracked(tmp_path):
    project, source, normalization, sequence = make_project(tmp_path)
    project.commit_mask(project.stems[1], sequence.masks[1])
    yield project, source, normalization, sequence
    source.close()


@pytest.fixture
def run(tracked):
    """Frames 3-6 (indices 2-5) carried from frame 2, nothing written yet."""
    project, source, normalization, sequence = tracked
    result = propagate(project, source, normalization, project.stems[1], max_frames=4)
    assert result.stems == project.stems[2:6]
    return project, result, sequence


def test_a_frame_reviewed_by_another_instance_after_the_run_read_it_is_left_alone(run):
    project, result, sequence = run
    reviewed, edited = project.stems[3], project.stems[4]
    other = ReviewProject.open(project.folder)  # window B, on the same project folder
    # B deletes the target on frame 4 as a false alarm and marks the frame corrected (as its Delete tool does)
    assert other.commit_edit(reviewed, np.zeros(project.frame_shape, bool))
    other.set_status(reviewed, ReviewStatus.CORRECTED)
    # and moves frame 5's target by hand without changing its status
    assert other.commit_edit(edited, np.roll(sequence.masks[4], 2, axis=1))
    b_reviewed, b_edited = other.committed_mask(reviewed), other.committed_mask(edited)
    b_undo = {stem: len(other.history(stem)) for stem in (reviewed, edited)}
    assert project.status(reviewed) is ReviewStatus.UNREVIEWED  # A has not looked at the disk since

    changed = apply_propagation(project, result)

    assert changed == [project.stems[2], project.stems[5]]
    fresh = ReviewProject.open(project.folder)
    assert fresh.status(reviewed) is ReviewStatus.CORRECTED
    assert np.array_equal(fresh.committed_mask(reviewed), b_reviewed) and not b_reviewed.any()
    assert fresh.status(edited) is ReviewStatus.UNREVIEWED
    assert np.array_equal(fresh.committed_mask(edited), b_edited)
    for stem, target in result.frames:
        if stem not in (reviewed, edited):
            assert np.array_equal(fresh.committed_mask(stem), target)
    # no edit of the run's on the frames left alone (undo there takes back B's), one on each frame written
    assert {stem: len(fresh.history(stem)) for stem in (reviewed, edited)} == b_undo
    assert all(len(fresh.history(stem)) == 1 for stem in changed)
    # the report names the frames left alone and why
    assert result.skipped == [(reviewed, f"{SKIP_REVIEWED}: corrected"), (edited, SKIP_EDITED)]
    assert describe_skipped(project, result) == f"frame 4 ({SKIP_REVIEWED}: corrected), frame 5 ({SKIP_EDITED})"


def test_a_status_set_through_the_same_instance_is_seen_too(run):
    project, result, _ = run
    stem = project.stems[2]
    project.set_status(stem, ReviewStatus.ACCEPTED)
    assert apply_propagation(project, result) == project.stems[3:6]
    assert project.committed_mask(stem) is None and project.status(stem) is ReviewStatus.ACCEPTED
    assert result.skipped == [(stem, f"{SKIP_REVIEWED}: accepted")]


def test_a_committed_mask_from_before_the_run_is_what_it_read(tracked):
    """An unreviewed frame's committed mask from before the run is no change: the target replaces its part of it."""
    project, source, normalization, _ = tracked
    stem = project.stems[2]
    other = np.zeros(project.frame_shape, bool)
    other[60:62, 0:2] = True
    project.commit_mask(stem, other)
    result = propagate(project, source, normalization, project.stems[1], max_frames=2)
    assert apply_propagation(project, result) == project.stems[2:4]
    assert result.skipped == [] and describe_skipped(project, result) == ""
    assert np.array_equal(project.committed_mask(stem), other | result.frames[0][1])


def test_undoing_the_carried_target_of_a_frame_that_had_no_committed_mask_leaves_it_without_one(run):
    """Diff review 24: propagation leaves statuses alone, and undoing its edit (the frame's only one) committed a copy
    of the proposal, false alarms included, which a re-run could then no longer replace."""
    project, result, _ = run
    stem = project.stems[2]
    assert project.committed_mask(stem) is None
    assert apply_propagation(project, result)[0] == stem
    assert project.committed_mask(stem) is not None
    project.undo(stem)
    assert project.committed_mask(stem) is None and project.status(stem) is ReviewStatus.UNREVIEWED
    # after a status the analyst set, undo commits the mask it gives back (the verdict was about what was shown)
    project.redo(stem)
    project.keep_status_on_undo(stem)
    project.undo(stem)
    assert project.committed_mask(stem) is not None
