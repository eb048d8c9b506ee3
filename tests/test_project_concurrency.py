"""Several instances (windows, `irsam` commands) on one review project: none deletes what another wrote."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from app.core.project import ReviewProject, ReviewStatus, StatusSetElsewhere
from tests.test_project import NORMALIZATION, REPO, SHAPE, STEMS, make_project, result_with_targets, square_mask



def write_from_two_processes(folder: Path, writes: str, prepare: str = "") -> None:
    """Run `writes` in two processes at once on the project in `folder`, after `prepare` (imports, setup): code
    with `project` (the ReviewProject opened there), `name` ("a" or "b") and `first` (0 or 1) defined; both start
    writing once both are ready. Fails unless both exit 0."""
    code = "\n".join([
        "import sys, time",
        "from pathlib import Path",
        "from app.core.project import ReviewProject",
        "folder, name, first = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])",
        "project = ReviewProject.open(folder)",
        textwrap.dedent(prepare),
        "(folder.parent / f'ready-{name}').touch()",
        "while len(list(folder.parent.glob('ready-*'))) < 2:",
        "    time.sleep(0.01)",
        textwrap.dedent(writes)])
    children = [subprocess.Popen([sys.executable, "-c", code, str(folder), name, first], cwd=REPO)
                for name, first in (("a", "0"), ("b", "1"))]
    assert [child.wait(timeout=60) for child in children] == [0, 0]

def test_status_writes_keep_the_statuses_another_instance_wrote(tmp_path):
    make_project(tmp_path / "p")
    a, b = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    a.set_status("f000", "accepted")
    a.set_status("f002", "corrected")
    b.set_status("f001", "rejected")
    b.set_status("f003", "corrected")
    expected = {"f000": "accepted", "f001": "rejected", "f002": "corrected", "f003": "corrected"}
    document = json.loads((tmp_path / "p" / "review.json").read_text())
    assert {stem: entry["status"] for stem, entry in document["frames"].items()} == expected
    assert (tmp_path / "p" / "review.json.bak").read_text() == (tmp_path / "p" / "review.json").read_text()
    assert {stem: b.status(stem).value for stem in STEMS} == expected  # b now shows a's statuses too
    with pytest.raises(StatusSetElsewhere, match="marked rejected by another window"):
        a.set_status("f001", "negative")  # a frame b reviewed, over a status a never saw: refused
    assert a.status("f001").value == "rejected"  # a takes b's status up, so the analyst sees it
    a.set_status("f001", "negative")  # and setting it again, over what a now shows, is the later write
    reopened = ReviewProject.open(tmp_path / "p")
    assert {stem: reopened.status(stem).value for stem in STEMS} == {**expected, "f001": "negative"}


def test_a_re_detection_keeps_what_another_instance_accepted_since_it_opened_the_project(tmp_path):
    make_project(tmp_path / "p")
    first = ReviewProject.open(tmp_path / "p")
    first.save_prediction("f000", result_with_targets([(2, 2, 6, 6)]))
    run = ReviewProject.open(tmp_path / "p")  # a long irsam detect run, opened before the analyst's accept
    window = ReviewProject.open(tmp_path / "p")
    accepted = window.working_mask("f000").copy()
    window.set_status("f000", "accepted")  # accepted as shown: its proposal, no committed mask
    assert run.save_prediction("f000", result_with_targets([(10, 10, 14, 20)]))  # kept before it is replaced
    reopened = ReviewProject.open(tmp_path / "p")
    assert reopened.status("f000") is ReviewStatus.ACCEPTED
    assert np.array_equal(reopened.committed_mask("f000"), accepted)


def test_a_status_whose_backup_cannot_be_written_is_set_all_the_same(tmp_path, monkeypatch):
    import app.core.project as project_module

    project = make_project(tmp_path / "p")
    project.set_status("f000", "accepted")
    write = project_module.atomic_write_json

    def no_backup(path, document):
        if path.name == "review.json.bak":
            raise OSError(28, "No space left on device")
        write(path, document)

    monkeypatch.setattr(project_module, "atomic_write_json", no_backup)
    project.set_status("f001", "rejected")  # no ProjectWriteError: review.json, the record, is written
    assert ReviewProject.open(tmp_path / "p").status("f001") is ReviewStatus.REJECTED
    assert project.status("f001") is ReviewStatus.REJECTED


def test_a_status_of_a_frame_this_instance_does_not_list_is_kept(tmp_path):
    """A frame another instance added (an unreadable file of the source, `follow_source`) keeps its status."""
    make_project(tmp_path / "p")
    a, b = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    a.follow_source(STEMS + ["f004"])
    a.set_status("f004", "rejected")
    b.set_status("f000", "accepted")
    assert ReviewProject.open(tmp_path / "p").status("f004") is ReviewStatus.REJECTED


def test_project_json_writes_keep_what_another_instance_changed(tmp_path):
    make_project(tmp_path / "p")
    a, b = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    changed = {**NORMALIZATION, "high": 9000.0}
    a.set_normalization(changed)
    b.follow_source(STEMS + ["f004"])
    reopened = ReviewProject.open(tmp_path / "p")
    assert reopened.normalization == changed and reopened.stems == STEMS + ["f004"]
    assert b.normalization == changed  # b took the project.json it changed


def test_two_instances_editing_one_frame_share_its_history(tmp_path):
    """Each edit is recorded in the frame's history as its file holds it, so neither instance drops the
    other's steps, and undo takes back the frame's last edit, whoever made it."""
    make_project(tmp_path / "p")
    a, b = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    assert not b.history("f000").can_undo  # b has read the history before a's edit
    a.edit_mask("f000", square_mask(1, 1))
    both = square_mask(1, 1) | square_mask(15, 20)
    np.testing.assert_array_equal(b.working_mask("f000"), square_mask(1, 1))
    b.edit_mask("f000", both)
    assert len(ReviewProject.open(tmp_path / "p").history("f000")) == 2
    assert len(a.history("f000")) == 2  # a sees b's step
    np.testing.assert_array_equal(a.undo("f000"), square_mask(1, 1))  # b's stroke, the frame's last edit
    np.testing.assert_array_equal(b.undo("f000"), np.zeros_like(both))
    np.testing.assert_array_equal(a.redo("f000"), square_mask(1, 1))
    np.testing.assert_array_equal(ReviewProject.open(tmp_path / "p").committed_mask("f000"), square_mask(1, 1))


def test_statuses_set_by_two_processes_at_once_are_all_kept(tmp_path):
    stems = [f"f{i:03d}" for i in range(40)]
    make_project(tmp_path / "p", stems=stems)
    write_from_two_processes(tmp_path / "p", """
        for stem in project.stems[first::2]:
            project.set_status(stem, "accepted" if first == 0 else "rejected")
        """)
    opened = ReviewProject.open(tmp_path / "p")
    assert [opened.status(stem).value for stem in stems] == ["accepted", "rejected"] * 20


def test_a_write_waiting_on_a_lock_held_too_long_fails_with_a_message(tmp_path, monkeypatch):
    import fcntl
    import os

    import app.core.project as project_module
    from app.core.project import ProjectWriteError

    project = make_project(tmp_path / "p")
    monkeypatch.setattr(project_module, "LOCK_WAIT_S", 0.2)
    held = os.open(tmp_path / "p" / "project.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # a stuck instance (another descriptor locks like another process)
    try:
        with pytest.raises(ProjectWriteError, match=r"project.lock has been held by another process for 0.2 s"):
            project.set_status("f000", "accepted")
    finally:
        os.close(held)
    assert project.status("f000") is ReviewStatus.UNREVIEWED
    project.set_status("f000", "accepted")  # released: it writes
    assert ReviewProject.open(tmp_path / "p").status("f000") is ReviewStatus.ACCEPTED


def listed_boxes(project: ReviewProject, stem: str) -> list[tuple[int, int, int, int]]:
    return [(t.y0, t.x0, t.y1 + 1, t.x1 + 1) for t in project.detections(stem)]


def test_detections_flushed_by_two_instances_keep_each_ones_new_proposals(tmp_path):
    """The app open on the project while `irsam detect` re-detects some frames: the instance that flushes last
    does not write back its stale rows for the frames the other proposed again (audit s18 finding 5)."""
    first = make_project(tmp_path / "p")
    for stem in STEMS:
        first.save_prediction(stem, result_with_targets([(2, 2, 4, 4)]))
    first.flush_detections()
    app, cli = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    cli.save_prediction("f000", result_with_targets([(12, 12, 14, 14)]))
    cli.flush_detections()
    app.save_prediction("f001", result_with_targets([(8, 8, 10, 10)]))
    app.flush_detections()  # its rows of f000 are the old proposal's
    reopened = ReviewProject.open(tmp_path / "p")
    assert listed_boxes(reopened, "f000") == [(12, 12, 14, 14)]
    assert listed_boxes(reopened, "f001") == [(8, 8, 10, 10)]
    assert listed_boxes(reopened, "f002") == [(2, 2, 4, 4)]
    assert listed_boxes(app, "f000") == [(12, 12, 14, 14)]  # the flush refreshed the app's rows from disk
    cli.flush_detections()  # proposed nothing since: writes the csv as it is on disk, f001's new rows kept
    assert listed_boxes(ReviewProject.open(tmp_path / "p"), "f001") == [(8, 8, 10, 10)]


def test_a_frame_another_instance_proposed_again_after_this_one_is_listed_as_masks_holds_it(tmp_path):
    make_project(tmp_path / "p")
    a, b = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    a.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    b.save_prediction("f000", result_with_targets([(12, 12, 14, 14)]))  # later: masks/ holds b's
    b.flush_detections()
    a.flush_detections()
    assert listed_boxes(ReviewProject.open(tmp_path / "p"), "f000") == [(12, 12, 14, 14)]


def test_detections_flushed_by_two_processes_at_once_are_all_kept(tmp_path):
    stems = [f"f{i:03d}" for i in range(24)]
    project = make_project(tmp_path / "p", stems=stems)
    for stem in stems:
        project.save_prediction(stem, result_with_targets([(2, 2, 4, 4)]))
    project.flush_detections()
    write_from_two_processes(tmp_path / "p", prepare="from tests.test_project import result_with_targets",
                             writes="""
        for stem in project.stems[first::2]:
            k = int(stem[1:])
            project.save_prediction(stem, result_with_targets([(k % 20, 4 + first * 10, k % 20 + 2, 6 + first * 10)]))
            project.flush_detections()  # each frame flushed, as the app's detection does every few seconds
        """)
    opened = ReviewProject.open(tmp_path / "p")
    for k, stem in enumerate(stems):
        x0 = 4 + (k % 2) * 10
        assert listed_boxes(opened, stem) == [(k % 20, x0, k % 20 + 2, x0 + 2)], stem


def test_a_commit_reads_its_frames_fingerprint_before_taking_the_project_lock(tmp_path):
    """`frame_sha1_of` may decode the frame (tens of ms, an uncached frame of a propagation or an import): other
    instances must not wait on the project's lock meanwhile, as they do not for a status (audit s18 item 9)."""
    import fcntl
    import os

    project = make_project(tmp_path / "p")
    held_when_asked = []

    def sha1_of(stem):
        other = os.open(tmp_path / "p" / "project.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held_when_asked.append(False)
        except BlockingIOError:
            held_when_asked.append(True)
        finally:
            os.close(other)
        return "a" * 40

    project.frame_sha1_of = sha1_of
    assert project.commit_edit("f000", square_mask(1, 1))
    project.commit_edit("f001", np.zeros(SHAPE, bool))  # the proposal (none) committed as it is
    project.edit_mask("f000", square_mask(5, 5))
    project.undo("f000")
    project.redo("f000")
    project.commit_mask("f002", square_mask(2, 2))
    project.set_status("f003", "accepted")
    assert held_when_asked and not any(held_when_asked)
    assert project.committed_frame_sha1("f000") == project.committed_frame_sha1("f001") == "a" * 40


def test_a_flush_lists_a_frame_another_instance_proposed_and_never_flushed_as_masks_holds_it(tmp_path):
    """A run killed before its flush left a proposal newer than detections.csv: another instance's flush lists it
    as masks/ holds it (else the csv, now newer than that mask, would keep the earlier proposal's rows for good)."""
    import time

    first = make_project(tmp_path / "p")
    for stem in STEMS:
        first.save_prediction(stem, result_with_targets([(2, 2, 4, 4)]))
    first.flush_detections()
    app, killed = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    time.sleep(0.05)  # a file system's mtime steps
    killed.save_prediction("f002", result_with_targets([(12, 12, 14, 14)]))  # and never flushed
    app.save_prediction("f000", result_with_targets([(8, 8, 10, 10)]))
    app.flush_detections()
    reopened = ReviewProject.open(tmp_path / "p")
    assert listed_boxes(reopened, "f002") == [(12, 12, 14, 14)]
    assert listed_boxes(reopened, "f000") == [(8, 8, 10, 10)]


@pytest.mark.parametrize("when", ["before its second look", "between its second look and its write"])
def test_two_instances_flushing_a_new_projects_first_csv_at_once_keep_both_proposals(tmp_path, monkeypatch, when):
    """A new project's first detections.csv is written without the project's lock (a fresh `irsam detect` run
    makes no project.lock): another instance's first csv, made after this one looked, is merged, not replaced."""
    import app.core.project as project_module

    make_project(tmp_path / "p")
    a, b = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    a.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    b.save_prediction("f001", result_with_targets([(8, 8, 10, 10)]))
    assert not (tmp_path / "p" / "detections.csv").exists()
    if when == "before its second look":
        looked = a._detections_on_disk

        def look_then_other_flushes(path):
            found = looked(path)
            if not (tmp_path / "p" / "detections.csv").exists():
                b.flush_detections()
            return found
        monkeypatch.setattr(a, "_detections_on_disk", look_then_other_flushes)
    else:
        create = project_module.atomic_create_bytes

        def other_flushes_then_create(path, data):
            monkeypatch.setattr(project_module, "atomic_create_bytes", create)  # b's own write is not held
            b.flush_detections()
            return create(path, data)
        monkeypatch.setattr(project_module, "atomic_create_bytes", other_flushes_then_create)
    a.flush_detections()
    # the csv itself lists both (opening would also recompute a frame it misses from masks/, as after a crash)
    rows = (tmp_path / "p" / "detections.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[1] for row in rows) == ["f000", "f001"]
    reopened = ReviewProject.open(tmp_path / "p")
    assert listed_boxes(reopened, "f000") == [(2, 2, 4, 4)]
    assert listed_boxes(reopened, "f001") == [(8, 8, 10, 10)]
    assert not list((tmp_path / "p").glob(".detections.csv.*"))  # no temporary file left behind


def test_atomic_create_leaves_a_file_made_first_as_it_is(tmp_path):
    from model.atomic import atomic_create_bytes

    assert atomic_create_bytes(tmp_path / "f.csv", b"first\n")
    assert not atomic_create_bytes(tmp_path / "f.csv", b"second\n")
    assert (tmp_path / "f.csv").read_bytes() == b"first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]


def test_atomic_create_without_hard_links_still_leaves_a_file_made_first(tmp_path, monkeypatch):
    import errno
    import os

    from model.atomic import atomic_create_bytes

    def no_links(*_args, **_kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # as FAT and some network mounts answer
    monkeypatch.setattr(os, "link", no_links)
    assert atomic_create_bytes(tmp_path / "f.csv", b"first\n")
    assert not atomic_create_bytes(tmp_path / "f.csv", b"second\n")
    assert (tmp_path / "f.csv").read_bytes() == b"first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]


def test_a_dangling_link_named_detections_csv_is_replaced_by_the_first_flush(tmp_path):
    """`os.stat` saw no csv while the hard link found the name taken: the first flush retried for ever."""
    import os

    project = make_project(tmp_path / "p")
    os.symlink(tmp_path / "nowhere.csv", tmp_path / "p" / "detections.csv")
    project.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    project.flush_detections()
    csv_path = tmp_path / "p" / "detections.csv"
    assert not csv_path.is_symlink() and not (tmp_path / "nowhere.csv").exists()
    assert listed_boxes(ReviewProject.open(tmp_path / "p"), "f000") == [(2, 2, 4, 4)]
