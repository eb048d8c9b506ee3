import json
import math

import numpy as np
import pytest

from app.core.normalization import Normalization
from app.core.project import ReviewProject, ReviewStatus
from app.core.review_queue import (
    DEFAULT_SHORTCUTS,
    ShortcutMap,
    filter_frames,
    normalize_keys,
    sort_frames,
    status_counts,
    summarize,
)
from model.detectors import FrameResult

SHAPE = (16, 20)


def boxes(*corners, score=3.0):
    """A prediction with a 2x2 target at each (y, x); logits = score inside."""
    logits = np.full(SHAPE, -5.0, np.float32)
    for y, x in corners:
        logits[y : y + 2, x : x + 2] = score
    return FrameResult(logits)


@pytest.fixture
def project(tmp_path):
    """Frames 0..5: targets [1, 1 (moved 1 px), 2 (one new), 0, 1 far away, none predicted]."""
    stems = [f"f{i}" for i in range(6)]
    project = ReviewProject.create(tmp_path / "p", tmp_path / "src", "folder", stems, SHAPE,
                                   Normalization.identity8().to_dict())
    project.save_prediction("f0", boxes((2, 2), score=2.0), save_logits=True)
    project.save_prediction("f1", boxes((2, 3), score=6.0), save_logits=True)
    project.save_prediction("f2", boxes((2, 3), (10, 14), score=4.0), save_logits=True)
    project.save_prediction("f3", boxes(), save_logits=True)
    project.save_prediction("f4", boxes((12, 2), score=1.0), save_logits=True)
    project.flush_detections()
    project.set_status("f1", ReviewStatus.ACCEPTED)
    project.set_status("f3", ReviewStatus.NEGATIVE)
    project.set_status("f4", ReviewStatus.CORRECTED)
    return ReviewProject.open(project.folder)


def test_summaries_count_targets_scores_and_changes(project):
    summaries = summarize(project)
    assert [s.stem for s in summaries] == [f"f{i}" for i in range(6)]
    assert [s.n_detections for s in summaries] == [1, 1, 2, 0, 1, None]  # f5: not detected, not "no targets"
    assert [s.change_from_previous for s in summaries] == [None, 0, 1, 2, 1, None]
    assert [s.status for s in summaries] == [ReviewStatus.UNREVIEWED, ReviewStatus.ACCEPTED, ReviewStatus.UNREVIEWED,
                                             ReviewStatus.NEGATIVE, ReviewStatus.CORRECTED, ReviewStatus.UNREVIEWED]
    scores = [s.peak_score for s in summaries]
    assert scores[:3] == [2.0, 6.0, 4.0] and scores[4] == 1.0
    assert math.isnan(scores[3]) and math.isnan(scores[5])


def test_summaries_of_some_frames_are_those_frames_and_the_next_as_the_whole_pass_gives_them(project):
    """The queue follows a detection run by summarising the frames it has done since the last look: each one's
    change is counted from the frame before, and the frame after it changes too."""
    whole = summarize(project)
    assert summarize(project, [2]) == whole[2:4]
    assert summarize(project, [5, 0, 3]) == [whole[0], whole[1], whole[3], whole[4], whole[5]]
    assert summarize(project, []) == []


def test_filters(project):
    summaries = summarize(project)
    assert [s.index for s in filter_frames(summaries, statuses=["unreviewed"])] == [0, 2, 5]
    assert [s.index for s in filter_frames(summaries, min_detections=1)] == [0, 1, 2, 4]
    assert [s.index for s in filter_frames(summaries, max_detections=0)] == [3]
    assert [s.index for s in filter_frames(summaries, min_detections=0)] == [0, 1, 2, 3, 4]  # detected frames
    assert [s.index for s in filter_frames(summaries, min_peak_score=3.0)] == [1, 2]
    assert [s.index for s in filter_frames(summaries, min_change=2)] == [3]
    assert [s.index for s in filter_frames(summaries, statuses=[ReviewStatus.UNREVIEWED], min_detections=1,
                                           predicate=lambda s: s.index > 0)] == [2]
    # the frames found changed on disk (the queue's "changed on disk"), with any other condition
    assert [s.index for s in filter_frames(summaries, frames={4, 1, 3})] == [1, 3, 4]
    assert [s.index for s in filter_frames(summaries, frames={4, 1, 3}, statuses=["accepted", "corrected"])] == [1, 4]
    assert filter_frames(summaries, frames=set()) == []


def test_sorts_keep_frame_order_on_ties(project):
    summaries = summarize(project)
    def order(key, descending=False):
        return [s.index for s in sort_frames(summaries, key, descending)]

    assert order("index", True) == [5, 4, 3, 2, 1, 0]
    assert order("status") == [0, 2, 5, 1, 4, 3]
    assert order("detections", True) == [2, 0, 1, 4, 3, 5]
    assert order("peak_score", True) == [1, 2, 0, 4, 3, 5]
    assert order("peak_score") == [4, 0, 2, 1, 3, 5]
    assert order("change", True) == [3, 2, 4, 1, 0, 5]
    assert order("detections") == [3, 0, 1, 4, 2, 5]  # not detected: last either way
    assert order("change") == [1, 2, 4, 3, 0, 5]
    with pytest.raises(ValueError):
        sort_frames(summaries, "size")


def test_the_frame_after_an_undetected_one_has_no_change(tmp_path):
    stems = ["a", "b", "c"]
    project = ReviewProject.create(tmp_path / "p", tmp_path / "src", "folder", stems, SHAPE,
                                   Normalization.identity8().to_dict())
    project.save_prediction("a", boxes((2, 2)))
    project.save_prediction("c", boxes((2, 2), (9, 9)))
    project.flush_detections()
    summaries = summarize(ReviewProject.open(project.folder))
    assert [(s.n_detections, s.change_from_previous) for s in summaries] == [(1, None), (None, None), (2, None)]


def test_status_counts(project):
    for stem in ("f0", "f5", "f2"):
        project.set_status(stem, ReviewStatus.ACCEPTED)
    assert status_counts(project) == {ReviewStatus.UNREVIEWED: 0, ReviewStatus.ACCEPTED: 4, ReviewStatus.CORRECTED: 1,
                                      ReviewStatus.REJECTED: 0, ReviewStatus.NEGATIVE: 1}


def test_summaries_of_ten_thousand_frames_come_from_the_csv_without_touching_masks(tmp_path, monkeypatch):
    """The queue of a long clip is summarised from detections.csv: no stat or read of masks/ per frame (what
    that costs is measured by benchmarks/bench_disk_poll.py, not timed here)."""
    stems = [f"{i:05d}" for i in range(10_000)]
    project = ReviewProject.create(tmp_path / "big", tmp_path / "src", "folder", stems, (512, 640),
                                   Normalization.identity8().to_dict())
    rows = ["frame,stem,target_id,cx,cy,area,x0,y0,x1,y1,peak_score"]
    rows += [f"{i},{s},1,{i % 600}.0,10.0,4,{i % 600},9,{i % 600 + 1},10,2.5" for i, s in enumerate(stems)]
    (project.folder / "detections.csv").write_text("\n".join(rows) + "\n")
    project = ReviewProject.open(project.folder)

    def no_disk(*_args, **_kwargs):
        raise AssertionError("masks/ read for a frame detections.csv lists")
    monkeypatch.setattr(project, "has_prediction", no_disk)
    monkeypatch.setattr(project, "prediction", no_disk)
    summaries = summarize(project)
    assert sum(s.n_detections for s in summaries) == 10_000
    assert [s.index for s in summaries] == list(range(10_000))
    assert all(s.change_from_previous == (0 if (i % 600) else 2) for i, s in enumerate(summaries[1:], 1))


def test_key_text_is_normalised_to_qt_portable_form():
    assert normalize_keys("shift+ctrl+z") == "Ctrl+Shift+Z"
    assert normalize_keys(" space ") == "Space"
    assert normalize_keys("Ctrl++") == "Ctrl++"
    assert normalize_keys("") == ""
    assert normalize_keys("Shift+Backtab") == normalize_keys("Backtab") == "Shift+Tab"  # how Shift+Tab arrives
    for bad in ("Hyper+K", "Ctrl+", "Shift"):
        with pytest.raises(ValueError):
            normalize_keys(bad)


def test_shortcut_defaults_have_no_conflicts_and_edits_report_them():
    shortcuts = ShortcutMap()
    assert shortcuts.conflicts() == {}
    assert shortcuts.get("accept_and_next") == "Space" and shortcuts.get("redo") == "Ctrl+Shift+Z"
    assert shortcuts.set("tool_brush", "e") == ["tool_eraser"]
    assert shortcuts.conflicts() == {"E": ["tool_brush", "tool_eraser"]}  # in action order
    assert shortcuts.actions_for("e") == ["tool_brush", "tool_eraser"]
    shortcuts.reset("tool_brush")
    assert shortcuts.conflicts() == {}
    shortcuts.set("undo", "")
    assert shortcuts.actions_for("Ctrl+Z") == []
    with pytest.raises(KeyError):
        shortcuts.set("fly", "F")
    assert shortcuts.conflicts({"Ctrl+R": "Run on this frame"}) == {}
    shortcuts.set("mark_rejected", "Ctrl+R")
    assert shortcuts.conflicts({"Ctrl+R": "Run on this frame"}) == {"Ctrl+R": ["Run on this frame", "mark_rejected"]}


def test_shortcut_map_round_trips_through_json(tmp_path):
    path = tmp_path / "settings" / "shortcuts.json"
    assert ShortcutMap.load(path).to_dict() == DEFAULT_SHORTCUTS
    shortcuts = ShortcutMap()
    shortcuts.set("next_frame", "Right")
    shortcuts.set("undo", "")
    shortcuts.save(path)
    document = json.loads(path.read_text())
    assert document["shortcuts"] == {"next_frame": "Right", "undo": ""}
    loaded = ShortcutMap.load(path)
    assert loaded.to_dict() == shortcuts.to_dict()
    document["shortcuts"]["removed_action"] = "Q"
    path.write_text(json.dumps(document))
    assert ShortcutMap.load(path).get("next_frame") == "Right"
    path.write_text("{not json")
    with pytest.raises(ValueError):
        ShortcutMap.load(path)


def test_a_new_default_key_the_analyst_gave_another_action_stays_the_analysts(tmp_path):
    """H became Navigate's default: a saved map that bound H to another action then had both on H, which Qt
    reports as ambiguous, so neither fired."""
    path = tmp_path / "shortcuts.json"
    path.write_text(json.dumps({"format": "irsam-review-shortcuts/1", "shortcuts": {"mark_rejected": "H"}}))
    loaded = ShortcutMap.load(path)
    assert loaded.get("mark_rejected") == "H" and loaded.get("tool_navigate") == ""
    assert loaded.conflicts() == {}
    assert loaded.get("tool_brush") == "B"  # the other defaults stay
