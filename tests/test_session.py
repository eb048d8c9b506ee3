"""The Qt-free review session: what the review keys step through."""
import numpy as np
import pytest

from app.core.project import ProjectWriteError, ReviewStatus
from app.editing import EditRefused, FrameEditor
from app.session import STATUS_CODES, ReviewSession
from model.detectors import FrameResult
from tests.test_frames import write_folder


def proposal_of_one_target() -> FrameResult:
    """A 24x32 frame's proposal: one 3x4 target (logits +-5)."""
    logits = np.full((24, 32), -5.0, np.float32)
    logits[4:7, 5:9] = 5.0
    return FrameResult(logits)


@pytest.fixture
def session(tmp_path):
    write_folder(tmp_path / "seq", n=6, names=[f"{i:02d}.png" for i in range(6)])
    (tmp_path / "seq" / "03.png").write_bytes(b"")  # unreadable: nothing to review there
    session = ReviewSession.open(tmp_path / "seq")
    yield session
    session.close()


def test_next_unreviewed_in_a_given_order(session):
    """The review queue's order (sorted, filtered): the search follows it, wraps round, and starts at its start
    when the frame shown is not in it."""
    order = [5, 0, 4, 2]
    assert session.next_unreviewed(0, 1, order) == 4 and session.next_unreviewed(2, 1, order) == 5
    assert session.next_unreviewed(5, -1, order) == 2 and session.next_unreviewed(0, -1, order) == 5
    assert session.next_unreviewed(1, 1, order) == 5  # frame 1 is filtered out of the queue
    assert session.next_unreviewed(1, -1, order) == 2
    session.set_status(4, ReviewStatus.ACCEPTED)
    assert session.next_unreviewed(0, 1, order) == 2
    assert session.next_unreviewed(0, 1, [3, 0]) is None  # frame 3 is unreadable: nothing left in this order


def test_next_unreviewed_steps_over_reviewed_and_unreadable_frames(session):
    assert session.project is None  # no detection yet: every readable frame is unreviewed
    assert session.is_unreadable(3)
    assert session.next_unreviewed(2) == 4 and session.next_unreviewed(4, step=-1) == 2
    session.set_status(4, ReviewStatus.ACCEPTED)
    session.set_status(0, ReviewStatus.REJECTED)
    assert session.next_unreviewed(2) == 5
    assert session.next_unreviewed(5) == 1  # wraps round, past the rejected frame 0
    assert session.next_unreviewed(1, step=-1) == 5
    for i in (1, 2, 5):
        session.set_status(i, ReviewStatus.NEGATIVE)
    assert session.next_unreviewed(0) is None and session.next_unreviewed(0, step=-1) is None
    session.set_status(2, ReviewStatus.UNREVIEWED)
    assert session.next_unreviewed(2) is None  # the frame shown is not the next one
    assert session.next_unreviewed(1) == 2 and session.next_unreviewed(4, step=-1) == 2
    with pytest.raises(ValueError, match="step"):
        session.next_unreviewed(0, step=2)


def test_a_status_set_while_the_project_is_being_read_is_kept(tmp_path, monkeypatch):
    """The window reads the project in a worker (load_details); a status set meanwhile waits for it
    instead of being overwritten by the statuses it reads."""
    import threading

    import app.session

    write_folder(tmp_path / "seq", n=4, names=[f"{i:02d}.png" for i in range(4)])
    first = ReviewSession.open(tmp_path / "seq")
    first.set_status(1, ReviewStatus.REJECTED)  # an earlier session's review, on disk
    first.close()

    session = ReviewSession.open(tmp_path / "seq", details=False)
    reading, release = threading.Event(), threading.Event()
    find_ground_truth = app.session.find_ground_truth

    def slow_find_ground_truth(source):
        reading.set()
        release.wait(10)
        return find_ground_truth(source)

    monkeypatch.setattr(app.session, "find_ground_truth", slow_find_ground_truth)
    loader = threading.Thread(target=session.load_details)
    loader.start()
    assert reading.wait(10)
    writer = threading.Thread(target=session.set_status, args=(2, ReviewStatus.ACCEPTED))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()  # waits for the project being read
    release.set()
    loader.join(10)
    writer.join(10)
    assert session.status(1) is ReviewStatus.REJECTED and session.status(2) is ReviewStatus.ACCEPTED
    session.close()
    reopened = ReviewSession.open(tmp_path / "seq")
    assert [reopened.status(i) for i in range(4)] == [ReviewStatus.UNREVIEWED, ReviewStatus.REJECTED,
                                                      ReviewStatus.ACCEPTED, ReviewStatus.UNREVIEWED]
    reopened.close()


def test_a_project_created_before_the_read_starts_is_the_one_kept(tmp_path):
    write_folder(tmp_path / "seq", n=3, names=[f"{i:02d}.png" for i in range(3)])
    session = ReviewSession.open(tmp_path / "seq", details=False)
    session.set_status(0, ReviewStatus.NEGATIVE)  # before the worker began reading: creates the project
    project = session.project
    session.load_details()
    assert session.project is project and session.status(0) is ReviewStatus.NEGATIVE
    assert session.status_codes[0] == 4  # the timeline's colour code for negative
    session.close()


def test_a_malformed_boxes_csv_is_a_warning_not_a_failure_to_open(tmp_path):
    write_folder(tmp_path / "seq" / "images", n=2, names=["01.png", "02.png"])
    (tmp_path / "seq" / "boxes.csv").write_text("frame;class;x;y;w;h\n1;DRONE;4;5;3;3\n")
    session = ReviewSession.open(tmp_path / "seq")
    assert session.ground_truth is not None and not session.ground_truth.has_boxes
    assert any("boxes.csv: line 1: expected the header" in w for w in session.warnings)
    session.set_status(0, ReviewStatus.ACCEPTED)  # the project was read: the review goes on
    session.close()


def test_accepting_the_proposal_replaces_a_label_file_that_cannot_be_read(tmp_path):

    write_folder(tmp_path / "seq", n=2, names=["01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    proposal = proposal_of_one_target()
    session.ensure_project().save_prediction("01", proposal)
    (session.project.folder / "labels").mkdir(exist_ok=True)
    (session.project.folder / "labels" / "01.png").write_bytes(b"\x89PNG damaged")
    session.close()
    session = ReviewSession.open(tmp_path / "seq")
    assert session.project.committed_mask("01") is None  # unreadable: the proposal is what the analyst sees
    assert FrameEditor(session).accept_all(0)
    np.testing.assert_array_equal(session.project.committed_mask("01"), proposal.logits > 0)
    assert session.status(0) is ReviewStatus.CORRECTED
    session.close()


def test_only_a_frame_with_a_proposal_can_be_accepted_and_corrected_commits_what_it_shows(tmp_path):

    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    editor = FrameEditor(session)
    with pytest.raises(EditRefused, match="Frame 1 has no proposal to accept yet"):
        editor.set_status(0, ReviewStatus.ACCEPTED)  # not detected yet: nothing shown is a proposal
    assert session.project is None  # nothing was written
    session.ensure_project().save_prediction("00", FrameResult(np.full((24, 32), -5.0, np.float32)))
    session.record_result(0)  # as a detection run does: it found no target, which is a proposal too
    editor.set_status(0, ReviewStatus.ACCEPTED)
    with pytest.raises(EditRefused, match="Frame 2 has no proposal"):
        editor.set_status(1, ReviewStatus.ACCEPTED)
    with pytest.raises(EditRefused, match="Frame 2 has no proposal to mark corrected yet"):
        editor.set_status(1, ReviewStatus.CORRECTED)  # nothing shown is a proposal: no empty mask committed
    assert session.project.committed_mask("01") is None
    editor.set_status(1, ReviewStatus.NEGATIVE)  # the way to say the frame holds no target
    assert editor.paint(2, [(5, 5), (9, 5)], 1)
    editor.set_status(2, ReviewStatus.ACCEPTED)  # the targets drawn
    assert [session.status(i) for i in range(3)] == [ReviewStatus.ACCEPTED, ReviewStatus.NEGATIVE,
                                                     ReviewStatus.ACCEPTED]
    session.close()


def test_a_status_change_saves_the_mask_whose_save_failed_first(tmp_path):
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    session = ReviewSession.open(tmp_path / "seq")
    proposal = proposal_of_one_target()
    project = session.ensure_project()
    project.save_prediction("00", proposal)
    session.record_result(0)
    labels = project.folder / "labels"
    labels.write_text("not a folder")  # no committed mask can be written
    editor = FrameEditor(session)
    with pytest.raises(ProjectWriteError):
        editor.paint(0, [(20, 10), (25, 10)], 1)
    drawn = editor.working_mask(0)
    with pytest.raises(ProjectWriteError):
        editor.set_status(0, ReviewStatus.ACCEPTED)  # export would take the proposal, not the stroke shown
    assert session.status(0) is ReviewStatus.UNREVIEWED and not (project.folder / "review.json").exists()
    labels.unlink()
    editor.set_status(0, ReviewStatus.ACCEPTED)
    assert 0 not in editor.unsaved
    session.close()
    session = ReviewSession.open(tmp_path / "seq")
    assert session.status(0) is ReviewStatus.ACCEPTED
    np.testing.assert_array_equal(session.project.committed_mask("00"), drawn)
    assert drawn[10, 20:26].all() and drawn[4:7, 5:9].all()
    np.testing.assert_array_equal(session.project.undo("00"), proposal.logits > 0)  # the stroke is one undoable edit
    session.close()


def test_a_status_set_shows_the_statuses_another_window_set_meanwhile(tmp_path):
    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    first, second = ReviewSession.open(tmp_path / "seq"), ReviewSession.open(tmp_path / "seq")
    first.set_status(0, ReviewStatus.ACCEPTED)  # creates the project: the second window has none yet
    second.set_status(1, ReviewStatus.REJECTED)
    first.set_status(2, ReviewStatus.NEGATIVE)
    second.set_status(1, ReviewStatus.CORRECTED)
    expected = [ReviewStatus.ACCEPTED, ReviewStatus.CORRECTED, ReviewStatus.NEGATIVE]
    assert [second.status(i) for i in range(3)] == expected
    assert list(second.status_codes) == [STATUS_CODES[s] for s in expected]  # the timeline's colours
    first.close()
    second.close()


def test_how_boxes_csv_was_paired_with_the_frames_is_said_when_it_was_a_choice(tmp_path):
    """Frames named 000100..000104 beside a boxes.csv of frames 1-5 (a clip cut out and renumbered by its
    position): paired by position, and the opening says so, as irsam eval --clip does."""
    write_folder(tmp_path / "seq" / "images", n=5, names=[f"{k:06d}.png" for k in range(100, 105)])
    rows = "".join(f"{n},DRONE,4,5,3,3\n" for n in range(1, 6))
    (tmp_path / "seq" / "boxes.csv").write_text("frame,class,x,y,w,h\n" + rows)
    session = ReviewSession.open(tmp_path / "seq")
    assert session.ground_truth.numbering.by == "position" and session.ground_truth.boxes(4)
    assert any(w.startswith("boxes.csv paired by position: ") for w in session.warnings), session.warnings
    session.close()


def test_a_frame_read_by_two_threads_at_once_keeps_the_arrays_cached_first(session):
    """The read-ahead and the GUI thread reading one frame at once: the later store replaced the arrays the window
    had scored, so a re-show scored the frame again (seen as a flaky panel test on CI)."""
    session.ensure_project().save_prediction(session.stem(2), proposal_of_one_target())
    session.record_result(2)
    inner = {}

    def read_while_another_thread_stores(index, keys):
        session._read_files = read  # the other thread reads and caches the frame while this one reads it
        inner.update(session._layer_files(index, set(keys)))
        return read(index, keys)

    read, session._read_files = session._read_files, read_while_another_thread_stores
    outer = session._layer_files(2, {"prediction", "committed"})
    assert outer["prediction"] is inner["prediction"]
    assert session._layer_files(2, {"prediction", "committed"})["prediction"] is inner["prediction"]


def test_a_project_that_fails_to_open_closes_its_source(tmp_path, monkeypatch):
    """A project whose source no longer holds its frames raised ProjectError with the source (a TIFF stack's file
    and memory map) left open: the window goes on, so every such open leaked a descriptor."""
    import app.session as session_module
    from app.core.project import ProjectError

    write_folder(tmp_path / "seq", n=4, names=[f"{i:02d}.png" for i in range(4)])
    session = ReviewSession.open(tmp_path / "seq")
    session.set_status(0, ReviewStatus.ACCEPTED)  # makes its project
    project_dir = session.project_dir
    session.close()
    (tmp_path / "seq" / "02.png").unlink()
    opened, closed = [], []

    def recording_open_source(path):
        source = open_source(path)
        close = source.close
        source.close = lambda: (closed.append(source), close())
        opened.append(source)
        return source

    open_source = session_module.open_source
    monkeypatch.setattr(session_module, "open_source", recording_open_source)
    with pytest.raises(ProjectError, match="no longer holds the frames"):
        ReviewSession.open(project_dir)
    assert len(opened) == 1 and closed == opened


def test_a_frame_whose_proposal_file_cannot_be_read_is_not_accepted(tmp_path):
    """It showed as detected with no target, and Accept was taken: export then skipped it as damaged."""
    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    project = session.ensure_project()
    project.save_prediction("01", proposal_of_one_target())
    session.close()
    (project.folder / "masks" / "01.png").write_text("not a png")
    session = ReviewSession.open(tmp_path / "seq")
    editor = FrameEditor(session)
    with pytest.raises(EditRefused, match=r"Frame 2's proposal, masks/01.png, cannot be read: accepted, it would "
                                          "export nothing"):
        editor.set_status(1, ReviewStatus.ACCEPTED)
    assert session.status(1) is ReviewStatus.UNREVIEWED
    editor.set_status(1, ReviewStatus.NEGATIVE)  # what it can be marked
    editor.set_status(1, ReviewStatus.CORRECTED)  # the (empty) mask shown committed: accepted then takes it
    editor.set_status(1, ReviewStatus.ACCEPTED)
    session.close()


def test_a_frames_targets_are_its_committed_masks_whatever_the_overlays_and_labelled_once_per_change(tmp_path,
                                                                                                   monkeypatch):
    """The targets listed and boxed are the committed mask's where there is one, with the proposal's scores; the
    proposal's stay in `proposals`. The committed mask is read for them with its overlay off too (the edit tools'
    diff switches it off), and labelled again only once it changed."""
    import app.session

    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    session = ReviewSession.open(tmp_path / "seq")
    session.ensure_project().save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    labelled = []
    counting = app.session.committed_targets
    monkeypatch.setattr(app.session, "committed_targets", lambda *a: labelled.append(1) or counting(*a))
    editor = FrameEditor(session)
    assert editor.paint(0, [(20, 15), (22, 15)], 1)  # a target drawn by hand, after the proposal's in raster order
    for wanted in (set(), {"committed"}, {"edges"}):
        layers = session.layers(0, wanted)
        assert [(t.id, t.x0, t.y0, t.peak_score) for t in layers.proposals] == [(1, 5, 4, 5.0)]
        assert [(t.id, t.x0, t.y0) for t in layers.targets] == [(1, 5, 4), (2, 20, 15)]
        assert layers.targets[0].peak_score == 5.0 and np.isnan(layers.targets[1].peak_score)
    assert len(labelled) == 1
    assert editor.delete_component(0, 6, 5)
    assert [(t.id, t.x0, t.y0) for t in session.layers(0, set()).targets] == [(1, 20, 15)]
    assert len(labelled) == 2
    assert editor.undo(0) and editor.undo(0)  # no committed mask: the proposal's targets
    layers = session.layers(0, set())
    assert layers.targets == layers.proposals and len(layers.targets) == 1
    session.close()
