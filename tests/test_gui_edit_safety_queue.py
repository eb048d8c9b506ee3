"""The review queue says what the analyst must see (GUI audit 6): frames changed on disk are marked, counted
and listed by a filter; markers and stems are not cut off. The real window under Xvfb, real files."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.project import FrameChange, ReviewStatus
from app.core.review_queue import FrameSummary
from app.widgets.review_panel import CHANGED_FILTER, ReviewPanel, elide_keeping_number

pytestmark = pytest.mark.gui


# --- 3. frames changed on disk in the review queue ------------------------------------------------------


def _replace_frame(window, index: int) -> None:
    """Write other pixels of the same size and depth under frame `index`'s file name."""
    path = window.session.source.frame_path(index)
    frame = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert cv2.imwrite(path, np.ascontiguousarray(frame[::-1, ::-1]) + 7)


def _window_hook(window) -> None:
    """What MainWindow.refresh_strip does each time it repaints the strip (pink = changed on disk):
    `self.review_tools.review_panel.set_changed_frames(self.session.changed_frames)`. Called here again after
    each step that repaints the strip; a second call changes nothing (tests/test_gui_frame_changes.py checks
    that the window makes it)."""
    window.review_tools.review_panel.set_changed_frames(window.session.changed_frames)


def _status_cells(panel) -> dict[int, str]:
    model = panel.model
    return {s.index: model.data(model.index(row, 2)) for row, s in enumerate(model.rows)}


def test_frames_changed_on_disk_are_marked_counted_and_listed_by_the_queue(review, qtbot):
    """The queue listed frames found changed on disk as accepted / corrected / negative, counted them so, and
    no filter listed them: only the timeline's pink showed them."""
    tools, panel = review.review_tools, review.review_tools.review_panel
    for index, status in ((1, ReviewStatus.ACCEPTED), (2, ReviewStatus.CORRECTED), (3, ReviewStatus.NEGATIVE)):
        review.timeline.go_to(index)
        assert tools.set_status(status)
    review.timeline.go_to(0)
    for index in (1, 2, 3, 4):  # 4: unreviewed, its proposal detected on other pixels
        _replace_frame(review, index)
    review.frame_check.start()
    qtbot.waitUntil(lambda: not review.frame_check.busy, timeout=20000)
    qtbot.wait(50)  # the queued `finished`
    _window_hook(review)

    cells = _status_cells(panel)
    assert cells[1] == "accepted \u26a0 changed" and cells[2] == "corrected \u26a0 changed"
    assert cells[3] == "negative \u26a0 changed" and cells[4] == "unreviewed \u26a0 changed"
    assert cells[0] == "unreviewed" and cells[5] == "unreviewed"
    model = panel.model
    row = model.row_of(1)
    assert "review it again" in model.data(model.index(row, 2), QtCore.Qt.ToolTipRole)
    assert model.data(model.index(row, 2), QtCore.Qt.DecorationRole) == QtGui.QColor(255, 105, 180)
    assert "changed on disk 4" in panel.counts.text()

    panel.status_filter.setCurrentIndex(panel.status_filter.findData(CHANGED_FILTER))
    assert [s.index for s in model.rows] == [1, 2, 3, 4]
    assert panel.counts.text().endswith("(showing 4)")
    width = panel.table.horizontalHeader().sectionSize(2)
    text_width = panel.table.fontMetrics().horizontalAdvance("unreviewed \u26a0 changed")
    assert width >= text_width + 16  # the marker is not cut off

    # reviewed again over the new pixels: no longer changed, and off the filtered list
    review.timeline.go_to(1)
    assert tools.set_status(ReviewStatus.ACCEPTED)
    _window_hook(review)
    assert [s.index for s in model.rows] == [2, 3, 4]
    assert "changed on disk 3" in panel.counts.text()
    panel.status_filter.setCurrentIndex(0)
    assert _status_cells(panel)[1] == "accepted"

    # another sequence: nothing changed there
    review.session.changed_frames.clear()
    _window_hook(review)
    assert "changed on disk" not in panel.counts.text()


def test_the_changed_filter_on_10000_frames_rebuilds_the_rows_only_when_the_changes_change(qtbot, monkeypatch):
    """The window hands the changed frames over with every repaint of the timeline's strip: the same set again
    must not rebuild (sort and filter) the whole queue."""
    panel = ReviewPanel()
    qtbot.addWidget(panel)
    summaries = [FrameSummary(i, f"flight_{i:06d}", ReviewStatus.ACCEPTED if i % 3 else ReviewStatus.UNREVIEWED,
                              2, 1.5, 0) for i in range(10000)]
    panel.set_summaries(summaries)
    changes = {i: FrameChange(f"flight_{i:06d}", review=True, reviewed=True) for i in range(0, 10000, 7)}
    panel.set_changed_frames(changes)
    panel.status_filter.setCurrentIndex(panel.status_filter.findData(CHANGED_FILTER))
    assert len(panel.model.rows) == len(changes)
    assert panel.model.data(panel.model.index(1, 2)) == "accepted \u26a0 changed"
    rebuilt = []
    monkeypatch.setattr(panel.model, "_rebuild", lambda: rebuilt.append(True))
    panel.set_changed_frames(dict(changes))  # the same again
    assert rebuilt == []
    panel.set_changed_frames({**changes, 1: FrameChange("flight_000001", review=True, reviewed=True)})
    assert rebuilt == [True]


# --- 5. the queue's columns keep their markers visible --------------------------------------------------


def test_the_status_column_fits_the_stop_marker_and_stems_keep_their_frame_number(review, qtbot):
    """"unreviewed \u25c6 stop" showed as "unreviewe…" (a column sized for 11 characters), and a TIFF stack's
    stems as "stack_000…", their frame number cut off."""
    panel = review.review_tools.review_panel
    table, header = panel.table, panel.table.horizontalHeader()
    metrics = table.fontMetrics()
    assert header.sectionSize(2) >= metrics.horizontalAdvance("unreviewed") + 16
    panel.model.set_marked({5: "ended at frame 6: the frame limit"})  # as a propagation run's end marks it
    model = panel.model
    text = model.data(model.index(model.row_of(5), 2))
    assert text == "unreviewed \u25c6 stop"
    assert header.sectionSize(2) >= metrics.horizontalAdvance(text) + 16  # icon and text both fit
    assert model.data(model.index(0, 1), QtCore.Qt.ToolTipRole) == review.session.stem(0)
    # GUI audit 19: a narrow stem column (76 px beside "⚠ changed") showed "drone146_000001" as "dro…001"
    stem = review.session.stem(5)
    number = stem[len(stem.rstrip("0123456789")):]
    assert number, stem
    for width in (76, 60, 200):
        option = QtWidgets.QStyleOptionViewItem()
        option.widget, option.rect = table, QtCore.QRect(0, 0, width, 20)
        table.itemDelegateForColumn(1).initStyleOption(option, model.index(model.row_of(5), 1))
        assert option.text.endswith(number) and metrics.horizontalAdvance(option.text) <= width - 3
        assert option.text == stem or "\u2026" in option.text
    for column in (0, 3, 4, 5):  # the number columns fit their header (Qt's own size for its text)
        assert header.sectionSize(column) >= header.sectionSizeHint(column)
    panel.model.set_marked({})
    assert header.sectionSize(2) < metrics.horizontalAdvance("unreviewed \u25c6 stop") + 16


def test_a_stem_is_shortened_in_its_middle_keeping_its_last_number():
    def fits(n):
        return lambda text: len(text) <= n

    assert elide_keeping_number("drone146_000001", fits(20)) == "drone146_000001"
    assert elide_keeping_number("drone146_000001", fits(10)) == "dro\u2026000001"
    assert elide_keeping_number("drone146_000001", fits(7)) == "\u2026000001"
    assert elide_keeping_number("drone146_000001", fits(4)) == "\u2026001"  # even the number does not fit
    assert elide_keeping_number("pass_12_left", fits(9)) == "p\u202612_left"  # what follows the number stays
    assert elide_keeping_number("flight", fits(4)) == "fl\u2026t"  # no number: the end letter
    assert elide_keeping_number("drone146_000001", fits(0)) == "\u2026"


def test_the_number_columns_fit_peaks_of_a_hundred_and_counts_of_three_digits(review):
    """The shipped weights score peaks of 100-125 on real clips: sized for "-00.00", the peak column showed
    122.72 as "1…2", which reads as a range."""
    panel = review.review_tools.review_panel
    table, header = panel.table, panel.table.horizontalHeader()
    style = table.style()
    margin = 2 * (style.pixelMetric(QtWidgets.QStyle.PM_FocusFrameHMargin, None, table) + 1)
    summaries = list(panel.model.summaries)
    summaries[3] = dataclasses.replace(summaries[3], n_detections=123, peak_score=122.72, change_from_previous=118)
    panel.set_summaries(summaries)
    row = panel.model.row_of(3)
    for column, text in ((3, "123"), (4, "122.72"), (5, "118")):
        assert panel.model.data(panel.model.index(row, column)) == text
        assert header.sectionSize(column) >= table.fontMetrics().horizontalAdvance(text) + margin, column


def test_a_click_pressed_while_a_run_reorders_the_queue_goes_to_the_frame_pressed(qtbot):
    """Sorted by a column a detection run changes, a tick between a press and its release moved the row pressed
    away: the release fell on another frame's row and the click chose nothing. Ticks now wait for the release."""
    from PySide6.QtTest import QTest

    panel = ReviewPanel()
    qtbot.addWidget(panel)
    panel.resize(500, 600)
    panel.show()
    qtbot.waitExposed(panel)
    summaries = [FrameSummary(i, f"f{i:03d}", ReviewStatus.UNREVIEWED, i % 5, float(i), 0) for i in range(30)]
    panel.set_summaries(summaries)
    panel.sort_combo.setCurrentText("detections")
    panel.descending.setChecked(True)
    model, table = panel.model, panel.table
    row = 3
    pressed_frame = model.rows[row].index
    center = table.visualRect(model.index(row, 0)).center()
    chosen = []
    panel.frameChosen.connect(chosen.append)
    QTest.mousePress(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
    # the run's tick: the frame pressed loses its detections and sinks to the bottom, others rise
    moved = [dataclasses.replace(summaries[pressed_frame], n_detections=0)]
    moved += [dataclasses.replace(summaries[i], n_detections=9) for i in (0, 5, 10, 15)]
    panel.update_summaries(moved, pressed_frame)
    assert model.rows[row].index == pressed_frame  # held while the button is down
    QTest.mouseRelease(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
    assert chosen == [pressed_frame]
    qtbot.waitUntil(lambda: model.rows[0].n_detections == 9, timeout=2000)  # taken in once released
    assert model.summaries[pressed_frame].n_detections == 0
    assert model.row_of(pressed_frame) >= len(model.rows) - 3  # among the three frames left with none
    # statuses another window set and frames found unreadable rebuild the rows: they wait for the release too
    chosen.clear()
    panel.status_filter.setCurrentIndex(panel.status_filter.findText("unreviewed"))
    row = 2
    pressed_frame = model.rows[row].index
    center = table.visualRect(model.index(row, 0)).center()
    QTest.mousePress(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
    above = [model.rows[r].index for r in range(row)]
    panel.set_unreadable_frames(set(above))  # no longer listed as unreviewed: the rows would move up
    panel.set_statuses([ReviewStatus.ACCEPTED if s.index in above else s.status for s in model.summaries])
    assert model.rows[row].index == pressed_frame
    QTest.mouseRelease(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
    assert chosen == [pressed_frame]
    qtbot.waitUntil(lambda: model.rows[0].index not in above, timeout=2000)  # made once released
    # a press whose release the table never sees (a dialog opened over it): later ticks are not held for ever
    QTest.mousePress(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
    QTest.mouseRelease(panel.counts, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier)
    panel.update_summaries([dataclasses.replace(summaries[1], n_detections=12)], pressed_frame)
    assert model.rows[0].index == 1
