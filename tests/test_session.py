"""The Qt-free review session: what the review keys step through."""
import pytest

from app.core.project import ReviewStatus
from app.session import ReviewSession
from tests.test_frames import write_folder


@pytest.fixture
def session(tmp_path):
    write_folder(tmp_path / "seq", n=6, names=[f"{i:02d}.png" for i in range(6)])
    (tmp_path / "seq" / "03.png").write_bytes(b"")  # unreadable: nothing to review there
    session = ReviewSession.open(tmp_path / "seq")
    yield session
    session.close()


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
