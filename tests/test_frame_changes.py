"""A review project over frames replaced on disk under the same names (a re-recorded clip, frames extracted again
at another offset): what the project recorded of each frame's pixels tells, so the old masks are neither shown
as the new frames' nor exported as their labels. Real files, real projects, no Qt."""
import json
from pathlib import Path

import cv2
import numpy as np

import app.cli
from app.core.export import FRAME_CHANGED, export_project, read_exported_dataset
from app.core.frames import frame_digest, open_source
from app.core.normalization import Normalization
from app.core.project import FRAME_TEXT_KEY, ReviewProject, ReviewStatus, find_changed_frames
from app.session import ReviewSession
from model.detectors import FrameResult
from tests.test_project_concurrency import write_from_two_processes

SHAPE = (20, 28)
NORMALIZATION = Normalization.fixed(1000, 5000)


def frames_of(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(800, 5200, SHAPE).astype(np.uint16) for _ in range(n)]


def write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:04d}.png"), frame)


def box(y, x, h=2, w=3):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y : y + h, x : x + w] = True
    return mask


def proposal(mask) -> FrameResult:
    return FrameResult(logits=np.where(mask, 4.0, -4.0).astype(np.float32))


def review_in_a_session(source_path: Path) -> list[np.ndarray]:
    """Detected and reviewed through the session, as the app does: 0 accepted as proposed, 1 corrected, 2
    negative, 3 rejected, 4 unreviewed, 5 accepted with a committed mask. Returns the mask each frame exports."""
    session = ReviewSession.open(source_path)
    try:
        project = session.ensure_project()
        masks = [box(2 + i, 3 + 2 * i) for i in range(6)]
        for i, stem in enumerate(project.stems):
            project.save_prediction(stem, proposal(masks[i]))  # the app's detection worker saves like this
        session.commit_mask(1, box(10, 10))
        session.commit_mask(5, box(12, 4))
        for i, status in ((0, "accepted"), (1, "corrected"), (2, "negative"), (3, "rejected"), (5, "accepted")):
            session.set_status(i, ReviewStatus(status))
        exported = [masks[0], box(10, 10), np.zeros(SHAPE, bool), None, None, box(12, 4)]
    finally:
        session.close()
    return exported


def exported_masks(out: Path) -> dict[str, np.ndarray]:
    return {stem: mask for stem, _, mask, _ in read_exported_dataset(out, "sirst")}


def test_frames_replaced_under_the_same_names_are_not_exported_with_their_old_masks(tmp_path, capsys):
    old = frames_of(0, 6)
    write_frames(tmp_path / "clip", old)
    masks = review_in_a_session(tmp_path / "clip")
    project_dir = tmp_path / "clip.irsam-review"

    new = frames_of(1, 6)
    for i in (0, 1, 2):  # re-recorded: same names, same size, other pixels
        assert cv2.imwrite(str(tmp_path / "clip" / f"{i:04d}.png"), new[i])

    project = ReviewProject.open(project_dir)
    report = export_project(project, tmp_path / "out", "sirst")
    assert report.changed == ["0000", "0001", "0002"]
    assert ("0000", FRAME_CHANGED) in report.skipped
    exported = exported_masks(tmp_path / "out")
    assert sorted(exported) == ["clip_0005"]  # the unchanged frame exports as before
    np.testing.assert_array_equal(exported["clip_0005"], masks[5])
    # nothing the analyst made is gone: statuses and masks stay on disk, marked as made on other pixels
    assert project.status("0001") is ReviewStatus.CORRECTED
    np.testing.assert_array_equal(project.committed_mask("0001"), masks[1])
    assert project.frame_change("0001", new[1]).review and not project.frame_change("0005", old[5]).changed

    # the CLI names them and goes on with the others
    assert app.cli.main(["export", str(project_dir), "--out", str(tmp_path / "cli")]) == 0
    err = capsys.readouterr().err
    assert "3 frames not exported: their pixels differ" in err and "0000, 0001, 0002" in err
    assert sorted(exported_masks(tmp_path / "cli")) == ["clip_0005"]


def test_the_session_tells_a_frame_changed_on_disk_and_a_new_status_takes_its_new_pixels(tmp_path):
    write_frames(tmp_path / "clip", frames_of(0, 6))
    masks = review_in_a_session(tmp_path / "clip")
    new = frames_of(1, 6)
    assert cv2.imwrite(str(tmp_path / "clip" / "0001.png"), new[1])

    session = ReviewSession.open(tmp_path / "clip")
    try:
        frame, layers = session.frame_and_layers(1, {"committed"})
        np.testing.assert_array_equal(frame, new[1])
        assert layers.change is not None and layers.change.review and layers.change.proposal
        assert "changed on disk" in layers.change.describe()
        np.testing.assert_array_equal(layers.committed, masks[1])  # still shown, to accept it again
        assert session.needs_review_again(1) and set(session.changed_frames) == {1}
        assert session.status(1) is ReviewStatus.CORRECTED  # the stored status stands
        assert session.next_unreviewed(0) == 1  # the review keys stop on it
        _, unchanged = session.frame_and_layers(0, {"committed"})
        assert unchanged.change is not None and not unchanged.change.changed
        assert session.layers(1, {"committed"}).change.review  # a refresh of the layers alone says it too
        assert set(session.check_frames()) == {1}  # the whole sequence, on request

        session.set_status(1, ReviewStatus.CORRECTED)  # checked and confirmed on the new pixels
        assert not session.needs_review_again(1)
        assert not session.changed_frames[1].review and session.changed_frames[1].proposal  # detect it again
        assert session.next_unreviewed(0) == 4
    finally:
        session.close()
    project = ReviewProject.open(tmp_path / "clip.irsam-review")
    assert project.status_frame_sha1("0001") == frame_digest(new[1])
    report = export_project(project, tmp_path / "out", "sirst")
    assert report.changed == [] and "clip_0001" in report.exported
    np.testing.assert_array_equal(exported_masks(tmp_path / "out")["clip_0001"], masks[1])


def test_a_project_without_fingerprints_works_as_before_and_gains_them_as_frames_are_touched(tmp_path):
    """Made as before fingerprints (no frame_sha1_of: nothing recorded), then the source replaced: nothing is
    flagged, everything exports as before. A frame reviewed again through the session records its pixels,
    and only that one is caught when the source is replaced once more."""
    write_frames(tmp_path / "clip", frames_of(0, 3))
    source = open_source(tmp_path / "clip")
    project = ReviewProject.create(tmp_path / "p", source.path, source.kind, source.stems, source.shape,
                                   NORMALIZATION.to_dict())
    source.close()
    for i, stem in enumerate(project.stems):
        project.save_prediction(stem, proposal(box(2 + i, 4)))
        project.set_status(stem, "accepted")
    review = json.loads((tmp_path / "p" / "review.json").read_text())
    assert all(set(entry) == {"status", "time"} for entry in review["frames"].values())  # as old projects hold
    write_frames(tmp_path / "clip", frames_of(1, 3))

    report = export_project(ReviewProject.open(tmp_path / "p"), tmp_path / "out", "sirst")
    assert report.changed == [] and len(report.exported) == 3
    session = ReviewSession.open(tmp_path / "p")
    try:
        assert not session.frame_and_layers(0, {"committed"})[1].change.changed
        assert session.check_frames() == {} and session.changed_frames == {}
        session.set_status(2, ReviewStatus.ACCEPTED)  # reviewed again: its pixels are recorded now
    finally:
        session.close()
    write_frames(tmp_path / "clip", frames_of(2, 3))
    report = export_project(ReviewProject.open(tmp_path / "p"), tmp_path / "out2", "sirst")
    assert report.changed == ["0002"] and report.exported == ["clip_0000", "clip_0001"]


def test_two_instances_recording_fingerprints_at_once_keep_each_others(tmp_path):
    frames = frames_of(0, 40)
    write_frames(tmp_path / "clip", frames)
    source = open_source(tmp_path / "clip")
    ReviewProject.create(tmp_path / "p", source.path, source.kind, source.stems, source.shape, NORMALIZATION.to_dict())
    source.close()
    write_from_two_processes(tmp_path / "p", prepare="""
        from app.core.frames import frame_digest, open_source
        source = open_source(project.source_path)
        project.frame_sha1_of = lambda stem: frame_digest(source.frame(source.stems.index(stem)))
        """, writes="""
        for stem in project.stems[first::2]:
            project.set_status(stem, "accepted" if first == 0 else "negative")
        """)
    project = ReviewProject.open(tmp_path / "p")
    assert [project.status_frame_sha1(stem) for stem in project.stems] == [frame_digest(f) for f in frames]
    backup = json.loads((tmp_path / "p" / "review.json.bak").read_text())
    assert all("frame_sha1" in entry for entry in backup["frames"].values())


def test_a_tiff_stack_rewritten_with_other_pages_is_caught(tmp_path, capsys):
    import tifffile

    stack = tmp_path / "flight.tif"
    tifffile.imwrite(stack, np.stack(frames_of(0, 4)), photometric="minisblack")
    assert app.cli.main(["detect", str(stack), "--out", str(tmp_path / "p"), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(tmp_path / "p")
    with open_source(stack) as source:  # irsam detect recorded each proposal's pixels
        assert [project.proposal_frame_sha1(s) for s in project.stems] == [frame_digest(source.frame(i))
                                                                          for i in range(4)]
    pages = frames_of(0, 4)
    pages[2] = frames_of(7, 1)[0]  # the stack written again, one page of other pixels
    tifffile.imwrite(stack, np.stack(pages), photometric="minisblack")
    capsys.readouterr()

    assert app.cli.main(["export", str(tmp_path / "p"), "--out", str(tmp_path / "out"), "--include-unreviewed"]) == 0
    captured = capsys.readouterr()
    assert "1 frame not exported" in captured.err and "flight_000003" in captured.err
    assert [stem for stem, *_ in read_exported_dataset(tmp_path / "out", "sirst")] == [
        "flight_000001", "flight_000002", "flight_000004"]

    assert app.cli.main(["info", str(tmp_path / "p")]) == 0
    assert "changed:       1 of the 4 frames holding a fingerprint differ" in capsys.readouterr().out
    with open_source(stack) as source:
        assert [s for s, c in find_changed_frames(ReviewProject.open(tmp_path / "p"), source).items()
                if c.changed] == ["flight_000003"]


def test_an_accepted_proposal_kept_by_a_re_detection_keeps_the_pixels_it_was_accepted_on(tmp_path):
    """Accepted as proposed over the old pixels, the frame replaced, detection run again: the accepted mask is
    committed before the proposal is replaced (as ever), recorded as made on the old pixels, and not exported."""
    old, new = frames_of(0, 2), frames_of(1, 2)
    write_frames(tmp_path / "clip", old)
    session = ReviewSession.open(tmp_path / "clip")
    try:
        project = session.ensure_project()
        for i, stem in enumerate(project.stems):
            project.save_prediction(stem, proposal(box(3, 3 + 5 * i)))
            session.set_status(i, ReviewStatus.ACCEPTED)
    finally:
        session.close()
    write_frames(tmp_path / "clip", [new[0], old[1]])
    project = ReviewProject.open(tmp_path / "clip.irsam-review")
    project.frame_sha1_of = {"0000": frame_digest(new[0]), "0001": frame_digest(old[1])}.get
    for stem in project.stems:
        assert project.save_prediction(stem, proposal(box(9, 9)))  # the accepted proposals are committed first
    assert project.committed_frame_sha1("0000") == frame_digest(old[0])
    assert project.proposal_frame_sha1("0000") == frame_digest(new[0])
    report = export_project(project, tmp_path / "out", "sirst")
    assert report.changed == ["0000"] and report.exported == ["clip_0001"]
    np.testing.assert_array_equal(exported_masks(tmp_path / "out")["clip_0001"], box(3, 8))


def test_an_unreviewed_proposal_made_on_other_pixels_is_not_exported_with_include_unreviewed(tmp_path):
    old, new = frames_of(0, 2), frames_of(1, 2)
    write_frames(tmp_path / "clip", old)
    source = open_source(tmp_path / "clip")
    project = ReviewProject.create(tmp_path / "p", source.path, source.kind, source.stems, source.shape,
                                   NORMALIZATION.to_dict())
    source.close()
    for i, stem in enumerate(project.stems):
        project.save_prediction(stem, proposal(box(3, 3)), frame_sha1=frame_digest(old[i]))
    data = (tmp_path / "p" / "masks" / "0000.png").read_bytes()
    assert FRAME_TEXT_KEY.encode() + b"\0" + frame_digest(old[0]).encode() in data  # in the mask's own file
    write_frames(tmp_path / "clip", [old[0], new[1]])
    report = export_project(project, tmp_path / "out", "sirst", include_unreviewed=True)
    assert report.changed == ["0001"] and report.exported == ["clip_0000"]


def test_an_append_keeps_the_earlier_export_of_a_frame_changed_since(tmp_path, capsys):
    """Its earlier export is the old pixels with their mask (a true pair): kept, and said to be kept."""
    write_frames(tmp_path / "clip", frames_of(0, 6))
    review_in_a_session(tmp_path / "clip")
    project_dir = tmp_path / "clip.irsam-review"
    assert app.cli.main(["export", str(project_dir), "--out", str(tmp_path / "out")]) == 0
    before = exported_masks(tmp_path / "out")
    assert cv2.imwrite(str(tmp_path / "clip" / "0001.png"), frames_of(1, 2)[1])
    capsys.readouterr()
    assert app.cli.main(["export", str(project_dir), "--out", str(tmp_path / "out"), "--append"]) == 0
    out = capsys.readouterr().out
    assert "kept the earlier export of 1 frame changed on disk since" in out
    after = exported_masks(tmp_path / "out")
    assert sorted(after) == sorted(before)
    np.testing.assert_array_equal(after["clip_0001"], before["clip_0001"])
