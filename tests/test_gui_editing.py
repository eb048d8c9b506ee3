"""Mask editing in the real window under Xvfb: real mouse drags and clicks on the frame view, exact pixels."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets
from PySide6.QtTest import QTest

from app.core.edits import fill_polygon, grow_target, paint_stroke
from app.core.project import ProjectWriteError, ReviewStatus
from app.core.propagation import target_to_carry
from app.core.targets import label_components
from app.editing import Tool
from tests.gui_review_helpers import (click, committed, double_click, drag, open_project, predict_ground_truth,
                                      viewport_point)

pytestmark = pytest.mark.gui


@pytest.fixture
def editing(review):
    """The window on a project whose predictions are the ground truth (conftest's `review`); frame 0 shown."""
    return review


def _use(window, tool: Tool, size: int = 1) -> None:
    palette = window.review_tools.palette
    palette.brush_size.setValue(size)
    palette.set_tool(tool)


def _prediction(window) -> np.ndarray:
    return window.session.project.prediction_mask(window.session.stem(window.index))


def _empty_corner(window, size: int = 30) -> tuple[int, int]:
    """Top-left of a size x size block with no predicted pixel within 3 px."""
    prediction = _prediction(window)
    h, w = prediction.shape
    for y in range(3, h - size - 3, 5):
        for x in range(3, w - size - 3, 5):
            if not prediction[y - 3 : y + size + 3, x - 3 : x + size + 3].any():
                return x, y
    raise AssertionError("no empty block")


def test_one_pixel_brush_drag_is_a_connected_line_without_gaps(editing, qtbot):
    x0, y0 = _empty_corner(editing)
    before = _prediction(editing)
    _use(editing, Tool.BRUSH, size=1)
    # three positions only, 25 px apart: a stamp-per-event brush would leave two long gaps
    drag(editing, [(x0, y0), (x0 + 25, y0 + 10), (x0 + 5, y0 + 28)])
    mask = committed(editing)
    painted = mask & ~before
    expected = paint_stroke(np.zeros_like(mask), [(x0 + .5, y0 + .5), (x0 + 25.5, y0 + 10.5), (x0 + 5.5, y0 + 28.5)],
                            1, True)
    assert np.array_equal(painted, expected)
    assert label_components(painted)[0] == 1  # one 8-connected line
    assert (mask == (before | expected)).all()  # nothing else changed: the prediction is kept
    project, stem = editing.session.project, editing.session.stem(0)
    assert len(project.history(stem)) == 1  # the whole stroke is one undo step
    assert project.status(stem) is ReviewStatus.CORRECTED
    assert editing.session.status_codes[0] == 2  # the timeline's status strip
    assert np.array_equal(editing.frame_view.layers.committed, mask)  # the overlay shows it at once


def test_eraser_removes_a_target_and_keeps_the_rest(editing, qtbot):
    targets = editing.layers.targets
    assert len(targets) == 2
    first, second = targets
    _use(editing, Tool.ERASER, size=5)
    drag(editing, [(first.x0 - 1, round(first.cy)), (first.x1 + 1, round(first.cy))])
    mask = committed(editing)
    erased = paint_stroke(np.zeros_like(mask), [(first.x0 - .5, round(first.cy) + .5),
                                                (first.x1 + 1.5, round(first.cy) + .5)], 5, True)
    assert np.array_equal(mask, _prediction(editing) & ~erased)
    assert mask[second.y0 : second.y1 + 1, second.x0 : second.x1 + 1].any()


def test_polygon_fill_by_clicks_and_double_click(editing, qtbot):
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.POLYGON)
    vertices = [(x0, y0), (x0 + 20, y0 + 2), (x0 + 18, y0 + 20)]
    for x, y in vertices[:2]:
        click(editing, x, y)
    double_click(editing, *vertices[2])
    expected = fill_polygon(_prediction(editing), [(x + .5, y + .5) for x, y in vertices])
    assert np.array_equal(committed(editing), expected)
    assert len(editing.session.project.history(editing.session.stem(0))) == 1


def _dock_scroll_area(window) -> QtWidgets.QWidget:
    """Where the focus lands after a click on a dock's control: its scroll area (buttons take Tab focus only)."""
    return window.review_tools.review_dock.findChild(QtWidgets.QScrollArea) or window.review_tools.review_dock


@pytest.mark.parametrize("focus", ["view", "dock"])
def test_escape_drops_the_polygon_being_drawn(editing, qtbot, focus):
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.POLYGON)
    for x, y in [(x0 + 15, y0 + 15), (x0 + 25, y0 + 15)]:
        click(editing, x, y)  # two vertices far from the triangle below
    target = editing.frame_view.graphics if focus == "view" else _dock_scroll_area(editing)
    target.setFocus()
    qtbot.waitUntil(target.hasFocus)
    QTest.keyClick(target, QtCore.Qt.Key_Escape)  # where the key goes after a click in the view, or in a dock
    assert not editing.review_tools.editing.polygon
    triangle = [(x0, y0), (x0 + 3, y0), (x0, y0 + 3)]
    for x, y in triangle[:2]:
        click(editing, x, y)
    double_click(editing, *triangle[2])
    expected = fill_polygon(_prediction(editing), [(x + .5, y + .5) for x, y in triangle])
    assert np.array_equal(committed(editing), expected)  # the dropped vertices are not part of it


def test_escape_is_free_while_no_polygon_is_drawn(editing, qtbot):
    _use(editing, Tool.POLYGON)
    assert not editing.review_tools.editing.escape.isEnabled()  # a dialog's or a line edit's Esc is not taken


def test_flood_fill_fills_a_closed_brush_outline(editing, qtbot):
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.BRUSH, size=1)
    corners = [(x0, y0), (x0 + 12, y0), (x0 + 12, y0 + 9), (x0, y0 + 9), (x0, y0)]
    drag(editing, corners)
    _use(editing, Tool.FLOOD_FILL)
    click(editing, x0 + 5, y0 + 4)
    mask = committed(editing)
    block = mask[y0 : y0 + 10, x0 : x0 + 13]
    assert block.all()  # outline and inside
    assert not mask[y0 - 3 : y0 + 13, x0 - 3 : x0 + 16].sum() > block.sum()  # nothing outside the outline
    assert len(editing.session.project.history(editing.session.stem(0))) == 2


def test_a_fill_that_leaks_into_the_background_is_refused(editing, qtbot):
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.BRUSH, size=1)
    drag(editing, [(x0, y0), (x0 + 12, y0), (x0 + 12, y0 + 9)])  # an outline left open
    before = committed(editing).copy()
    stem = editing.session.stem(0)
    _use(editing, Tool.FLOOD_FILL)
    click(editing, x0 + 5, y0 + 4)
    assert np.array_equal(committed(editing), before)  # not the whole frame
    assert len(editing.session.project.history(stem)) == 1  # the stroke only
    assert editing.statusBar().message().startswith("Fill refused")


def test_delete_component_with_one_click(editing, qtbot):
    first, second = editing.layers.targets
    _use(editing, Tool.DELETE_COMPONENT)
    ys, xs = np.nonzero(_prediction(editing)[first.y0 : first.y1 + 1, first.x0 : first.x1 + 1])
    click(editing, first.x0 + int(xs[0]), first.y0 + int(ys[0]))
    mask = committed(editing)
    _, labels = label_components(_prediction(editing))
    assert np.array_equal(mask, _prediction(editing) & (labels != first.id))
    assert mask.sum() == second.area


def test_accept_one_predicted_target_then_all(editing, qtbot):
    first, second = editing.layers.targets
    _use(editing, Tool.ACCEPT_TARGET)
    click(editing, round(second.cx), round(second.cy))
    _, labels = label_components(_prediction(editing))
    assert np.array_equal(committed(editing), labels == second.id)  # only the clicked one is committed
    editing.review_tools.palette.accept_all.trigger()
    assert np.array_equal(committed(editing), _prediction(editing))


def test_grow_target_on_the_raw_frame(window, fresh_sequence, qtbot):
    # a bright 16-bit blob stamped into frame 0's file, away from the synthetic targets
    image_path = sorted((fresh_sequence / "images").glob("*.png"))[0]
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    blob = 3000 * np.exp(-((xx - 100.0) ** 2 + (yy - 20.0) ** 2) / (2 * 1.5 ** 2))
    cv2.imwrite(str(image_path), np.clip(image + blob, 0, 65535).astype(np.uint16))
    predict_ground_truth(fresh_sequence)
    open_project(window, qtbot, fresh_sequence)
    assert not _prediction(window)[15:26, 95:106].any()
    _use(window, Tool.GROW_TARGET)
    click(window, 101, 21)  # beside the peak: the seed snaps to it
    expected = grow_target(window.frame, 101.5, 21.5)
    assert expected[20, 100] and 5 <= expected.sum() <= 60
    assert np.array_equal(committed(window), _prediction(window) | expected)
    window.statusBar().clearMessage()
    click(window, 101, 21)  # grown already: nothing changes, and nothing is said to be missing
    assert window.statusBar().message() == "" and np.array_equal(committed(window), _prediction(window) | expected)
    click(window, 20, 60)  # flat background: nothing grows, and the analyst is told
    assert "no region" in window.statusBar().message()
    assert len(window.session.project.history(window.session.stem(0))) == 1


def test_undo_redo_with_the_keyboard(editing, qtbot):
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.BRUSH, size=3)
    drag(editing, [(x0 + 3, y0 + 3), (x0 + 15, y0 + 3)])
    after_first = committed(editing)
    drag(editing, [(x0 + 3, y0 + 12), (x0 + 15, y0 + 12)])
    after_second = committed(editing)
    target = editing.frame_view.graphics
    qtbot.keyClick(target, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert np.array_equal(committed(editing), after_first)
    assert np.array_equal(editing.frame_view.layers.committed, after_first)
    qtbot.keyClick(target, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    # the first edit undone: no committed mask, the proposal shows again
    assert committed(editing) is None and editing.frame_view.layers.committed is None
    assert np.array_equal(editing.session.project.shown_mask(editing.session.stem(0)), _prediction(editing))
    qtbot.keyClick(target, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier)
    qtbot.keyClick(target, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier)
    assert np.array_equal(committed(editing), after_second)
    # undo is per frame: frame 1 has nothing to undo
    qtbot.keyClick(target, QtCore.Qt.Key_D)
    assert editing.index == 1
    qtbot.keyClick(target, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert committed(editing, 1) is None
    assert np.array_equal(committed(editing, 0), after_second)


def test_tool_keys_and_brush_outline(editing, qtbot):
    target = editing.frame_view.graphics
    palette = editing.review_tools.palette
    qtbot.keyClick(target, QtCore.Qt.Key_B)
    assert palette.tool is Tool.BRUSH
    qtbot.keyClick(target, QtCore.Qt.Key_BracketRight)
    qtbot.keyClick(target, QtCore.Qt.Key_BracketRight)
    assert palette.brush_size.value() == 3
    QTest.mouseMove(target.viewport(), viewport_point(editing, 20, 20))
    xs, ys = editing.review_tools.editing.cursor_outline.getData()
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (19, 22, 19, 22)  # the 3x3 stamp's pixel edges
    qtbot.keyClick(target, QtCore.Qt.Key_E)
    assert palette.tool is Tool.ERASER


def test_diff_view_colours(editing, qtbot):
    first, second = editing.layers.targets
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.ACCEPT_TARGET)
    click(editing, round(second.cx), round(second.cy))  # committed: the second target only
    _use(editing, Tool.BRUSH)
    drag(editing, [(x0, y0), (x0 + 4, y0)])
    editing.review_tools.palette.diff.setChecked(True)
    rgba = editing.review_tools.editing.diff_item.image
    _, labels = label_components(_prediction(editing))
    colours = {tuple(rgba[y, x, :3]) for y, x in zip(*np.nonzero(labels == first.id))}
    assert colours == {(255, 0, 255)}  # only predicted
    colours = {tuple(rgba[y, x, :3]) for y, x in zip(*np.nonzero(labels == second.id))}
    assert colours == {(255, 255, 255)}  # in both
    assert tuple(rgba[y0, x0 + 2, :3]) == (30, 120, 255)  # only committed
    assert rgba[y0 + 5, x0 + 10, 3] == 0


def test_failed_save_shows_an_error_and_keeps_the_previous_file(editing, qtbot, monkeypatch):
    x0, y0 = _empty_corner(editing)
    _use(editing, Tool.BRUSH, size=1)
    drag(editing, [(x0, y0), (x0 + 6, y0)])
    project, stem = editing.session.project, editing.session.stem(0)
    label_file = project.folder / "labels" / f"{stem}.png"
    saved = label_file.read_bytes()

    def refuse(write):
        raise ProjectWriteError("disk full (simulated)")

    monkeypatch.setattr(project, "_write", refuse)
    editing.select_target(editing.layers.targets[0])
    drag(editing, [(x0, y0 + 5), (x0 + 6, y0 + 5)])
    assert editing.selected in editing.layers.targets  # the selection moved onto the unsaved mask's targets
    assert any("disk full" in m for m in editing.messages)  # the dialog
    assert "disk full" in editing.statusBar().message()
    assert label_file.read_bytes() == saved
    shown = editing.frame_view.layers.committed
    assert shown[y0 + 5, x0 : x0 + 7].all()  # the unsaved stroke stays visible (in memory)
    editing.update_panels()
    # and the Targets list and boxes are those of the mask shown: the unsaved stroke is a target of its own
    strokes = [t for t in editing.frame_view.layers.targets if t.y0 >= y0 and t.y1 <= y0 + 5 and t.x0 >= x0]
    assert [(t.y0, t.y1) for t in strokes] == [(y0, y0), (y0 + 5, y0 + 5)]
    assert len(editing.target_list.targets) == len(editing.frame_view.layers.targets)
    monkeypatch.undo()
    drag(editing, [(x0, y0 + 10), (x0 + 6, y0 + 10)])  # the next save carries the unsaved stroke too
    mask = committed(editing)
    assert mask[y0 + 5, x0 : x0 + 7].all() and mask[y0 + 10, x0 : x0 + 7].all()


def test_first_edit_without_a_project_creates_it(window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)  # never detected: no project yet
    assert window.session.project is None
    _use(window, Tool.BRUSH, size=1)
    drag(window, [(5, 5), (9, 5)])
    assert committed(window)[5, 5:10].all() and committed(window).sum() == 5
    assert window.session.status(0) is ReviewStatus.CORRECTED
    model = window.review_tools.review_panel.model
    assert model.rowCount() == 60 and model.rows[0].status is ReviewStatus.CORRECTED


def _listed(window) -> list[tuple[str, str]]:
    """(id, peak) as the Targets list shows them, by id."""
    table = window.target_list
    return sorted((table.item(row, 0).text(), table.item(row, 4).text()) for row in range(table.rowCount()))


def _box_labels(window) -> list[str]:
    """The id/score labels of the detection boxes drawn over the frame."""
    return [label.textItem.toPlainText() for label in window.frame_view.box_labels if label.isVisible()]


def test_a_deleted_proposal_target_leaves_the_targets_list_and_the_boxes_and_comes_back_with_undo(editing, qtbot):
    """GUI audit: after the analyst deleted a false alarm, the list and the boxes still showed the proposal's targets;
    they are the committed mask's now, each with the score of the proposal target it is."""
    first, second = editing.layers.targets
    assert _listed(editing) == [("1", "5.00"), ("2", "5.00")] and _box_labels(editing) == ["1 5.00", "2 5.00"]
    assert editing.target_list.caption.text() == "proposal (2 targets)"
    _use(editing, Tool.DELETE_COMPONENT)
    ys, xs = np.nonzero(_prediction(editing)[first.y0 : first.y1 + 1, first.x0 : first.x1 + 1])
    click(editing, first.x0 + int(xs[0]), first.y0 + int(ys[0]))
    (kept,) = editing.layers.targets
    assert (kept.id, kept.x0, kept.y0, kept.x1, kept.y1, kept.peak_score) == (
        1, second.x0, second.y0, second.x1, second.y1, second.peak_score)
    assert _listed(editing) == [("1", "5.00")] and editing.target_list.targets == [kept]
    assert editing.target_list.caption.text() == "committed mask (1 target)"
    assert editing.frame_view.layers.targets == [kept] and _box_labels(editing) == ["1 5.00"]
    qtbot.keyClick(editing.frame_view.graphics, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert committed(editing) is None
    assert _listed(editing) == [("1", "5.00"), ("2", "5.00")] and _box_labels(editing) == ["1 5.00", "2 5.00"]
    assert editing.target_list.caption.text() == "proposal (2 targets)"


def test_targets_grown_by_hand_on_a_frame_never_detected_are_listed_and_one_can_be_selected(window, fresh_sequence,
                                                                                             qtbot):
    """GUI audit: on a frame never detected the list stayed empty after the analyst grew targets, so none could be
    selected for the 3D view or to propagate alone."""
    image_path = sorted((fresh_sequence / "images").glob("*.png"))[0]
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    for cx, cy in ((100.0, 20.0), (100.0, 70.0)):  # away from the synthetic targets (x 39-44)
        image = image + 3000 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
    cv2.imwrite(str(image_path), np.clip(image, 0, 65535).astype(np.uint16))
    predict_ground_truth(fresh_sequence, frames=[1])  # a project, in which frame 0 was never detected
    open_project(window, qtbot, fresh_sequence)
    assert window.layers.prediction is None and window.target_list.rowCount() == 0
    assert window.target_list.caption.text() == "no proposal"
    window.surface_dock.show()
    _use(window, Tool.GROW_TARGET)
    click(window, 100, 20)
    click(window, 100, 70)
    upper, lower = window.layers.targets
    assert (upper.y0 <= 20 <= upper.y1, lower.y0 <= 70 <= lower.y1) == (True, True)
    assert math.isnan(upper.peak_score) and math.isnan(lower.peak_score)
    assert _listed(window) == [("1", "-"), ("2", "-")] and _box_labels(window) == ["1", "2"]
    assert window.target_list.caption.text() == "committed mask (2 targets)"
    row = next(r for r in range(2) if window.target_list.item(r, 0).text() == "2")
    window.target_list.selectRow(row)
    assert window.selected is lower
    assert f"target 2 at ({lower.cx:.0f}, {lower.cy:.0f})" in window.surface_view.caption.text()
    # propagation carries the selected target alone
    working = window.review_tools.editing.editor.working_mask(0)
    carried = target_to_carry(working, (lower.x0, lower.y0, lower.x1, lower.y1))
    _, labels = label_components(working)
    assert np.array_equal(carried, labels == 2)
