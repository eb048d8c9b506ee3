"""The window on a project whose frames were replaced on disk under the same names (real files, under Xvfb):
Review > Check frames on disk finds them, the timeline paints them, the frame says so, export names them."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.project import ReviewStatus
from app.widgets.timeline import STATUS_COLORS, CHANGED_ON_DISK

pytestmark = pytest.mark.gui


def _replace_frame(window, index: int) -> None:
    """Write other pixels of the same size and depth under frame `index`'s file name."""
    path = window.session.source.frame_path(index)
    frame = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert cv2.imwrite(path, np.ascontiguousarray(frame[::-1, ::-1]) + 7)


def _strip_status(window, index: int) -> tuple[int, ...]:
    return tuple(int(v) for v in window.timeline.strip._pixels[1, index])


def test_check_frames_marks_a_replaced_frame_and_the_frame_says_so(review, qtbot):
    tools = review.review_tools
    review.timeline.go_to(1)
    assert tools.set_status(ReviewStatus.ACCEPTED)
    review.timeline.go_to(0)
    assert not review.frame_view.warning.isVisible()
    _replace_frame(review, 1)
    _replace_frame(review, 2)  # unreviewed, with a proposal: detect it again

    review.frame_check.start()
    qtbot.waitUntil(lambda: not review.frame_check.busy, timeout=20000)
    qtbot.wait(50)  # the queued `finished`
    message = review.statusBar().message()
    assert message.startswith("2 frames changed on disk since they were worked on (pink in the timeline)")
    assert "1 to review again" in message and "2 with a proposal to detect again" in message
    assert _strip_status(review, 1) == STATUS_COLORS[CHANGED_ON_DISK]
    assert _strip_status(review, 2) == STATUS_COLORS[CHANGED_ON_DISK]
    assert _strip_status(review, 3) == STATUS_COLORS[0]
    queue = review.review_tools.review_panel.model  # the queue marks them too, and counts them
    cells = {s.index: queue.data(queue.index(row, 2)) for row, s in enumerate(queue.rows)}
    assert cells[1] == "accepted \u26a0 changed" and cells[2] == "unreviewed \u26a0 changed" and cells[3] == "unreviewed"
    assert "changed on disk 2" in review.review_tools.review_panel.counts.text()

    review.timeline.go_to(1)  # read again from disk, not from the view's cache of the old pixels
    assert review.frame_view.warning.isVisible()
    assert "review it again" in review.frame_view.warning.text()
    assert "changed on disk" in review.frame_label.text()
    assert np.array_equal(review.frame, cv2.imread(review.session.source.frame_path(1), cv2.IMREAD_UNCHANGED))

    assert tools.set_status(ReviewStatus.ACCEPTED)  # reviewed again over the new pixels
    review.timeline.go_to(1)
    assert not review.frame_view.warning.isVisible()
    assert _strip_status(review, 1) == STATUS_COLORS[1]
    assert _strip_status(review, 2) == STATUS_COLORS[CHANGED_ON_DISK]


def test_unchanged_frames_check_clean(review, qtbot):
    review.review_tools.set_status(ReviewStatus.ACCEPTED)
    review.frame_check.start()
    qtbot.waitUntil(lambda: not review.frame_check.busy, timeout=20000)
    qtbot.wait(50)
    assert review.statusBar().message() == (
        "Every frame worked on still holds the pixels its masks and statuses were made on.")
    assert not review._painted_changed


def test_export_dialog_names_the_frames_it_did_not_export(review, qtbot, tmp_path):
    tools = review.review_tools
    for index in (0, 1):
        review.timeline.go_to(index)
        assert tools.set_status(ReviewStatus.ACCEPTED)
    _replace_frame(review, 1)
    review.session.source.forget([1])  # as if the app had been opened after the replacement
    dialog = tools.export_dialog()
    dialog.folder.setText(str(tmp_path / "export"))
    dialog.export_button.click()
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
    text = dialog.result.toPlainText()
    assert text.startswith("1 frame exported")
    assert f"1 frame not exported: it changed on disk since its mask or status was made ({review.session.stem(1)})" in text
    assert "cannot be read now" not in text
    dialog.close()


def test_the_check_reports_progress_a_few_times_a_second_not_per_frame(qtbot):
    from app.widgets.frame_check import FrameCheckWorker

    class TenThousandFrames:
        def check_frames(self, progress, cancelled):
            for done in range(1, 10_001):
                progress(done, 10_000)
            return {}

    worker = FrameCheckWorker(TenThousandFrames())
    updates = []
    worker.progress.connect(lambda done, total: updates.append(done))
    worker.run()
    assert updates[-1] == 10_000 and len(updates) <= 5  # the last always; the status bar is not flooded
