"""The targets of the shown frame: id, centroid, area, peak score, SNR. Clicking one selects it; Esc, or a click
below the rows, clears the selection. Its caption says whose targets they are: the committed mask's where the frame
has one, else the detector's proposal's."""
from __future__ import annotations

import math

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.targets import Target

COLUMNS = ("id", "x", "y", "area", "peak", "SNR")


class NumberItem(QtWidgets.QTableWidgetItem):
    """A cell that sorts by its number (kept in UserRole), not its text ("6" < "16"); no number sorts first."""

    def __lt__(self, other) -> bool:
        return _sort_key(self.data(QtCore.Qt.UserRole)) < _sort_key(other.data(QtCore.Qt.UserRole))


def _sort_key(value) -> tuple[int, float]:
    return (0, 0.0) if value is None or math.isnan(value) else (1, float(value))


def _item(value, text: str) -> QtWidgets.QTableWidgetItem:
    item = NumberItem(text)
    item.setData(QtCore.Qt.UserRole, value)
    item.setTextAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
    return item


def _number(value: float, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


class TargetList(QtWidgets.QTableWidget):
    targetSelected = QtCore.Signal(object)  # Target, or None when the analyst cleared the selection

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.verticalHeader().hide()
        # Stretch, not ResizeToContents: that one re-measures every cell on every setItem (slow when scrubbing)
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        self.horizontalHeader().setSortIndicator(0, QtCore.Qt.AscendingOrder)  # targets by id until a header is clicked
        self.setFocusPolicy(QtCore.Qt.ClickFocus)
        self.targets: list[Target] = []
        # placed above the list by ReviewTools (the list shares its dock with the propagation controls)
        self.caption = QtWidgets.QLabel()
        self.caption.setToolTip("The committed mask's targets (what export writes), each with the peak score of the "
                                "proposal target it overlaps (\"-\" for one drawn by hand); on a frame without a "
                                "committed mask, the detector's proposal")
        self.itemSelectionChanged.connect(self._selection_changed)

    def set_targets(self, targets: list[Target], snrs: list[float], selected_id: int | None = None,
                    caption: str = "") -> None:
        self.targets = list(targets)
        self.caption.setText(caption)
        with QtCore.QSignalBlocker(self):
            self.setUpdatesEnabled(False)
            self.setSortingEnabled(False)
            self.setRowCount(len(targets))
            for row, (t, snr) in enumerate(zip(targets, snrs)):
                cells = (
                    (t.id, str(t.id)), (t.cx, f"{t.cx:.1f}"), (t.cy, f"{t.cy:.1f}"), (t.area, str(t.area)),
                    (t.peak_score, _number(t.peak_score, ".2f")), (snr, _number(snr, ".1f")),
                )
                for col, (value, text) in enumerate(cells):
                    self.setItem(row, col, _item(value, text))
            self.setSortingEnabled(True)
            self.clearSelection()
            if selected_id is not None:
                for row in range(self.rowCount()):
                    if self.item(row, 0).data(QtCore.Qt.UserRole) == selected_id:
                        self.selectRow(row)
            self.setUpdatesEnabled(True)

    def clear_target_selection(self) -> None:
        """No target selected: the row, and the selection the window keeps from a frame where the target was (no row
        shows it here), so `targetSelected(None)` is sent even when no row was selected."""
        with QtCore.QSignalBlocker(self):
            self.clearSelection()
        self.targetSelected.emit(None)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() == QtCore.Qt.Key_Escape and not event.modifiers():
            self.clear_target_selection()
            return
        super().keyPressEvent(event)

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        if not self.indexAt(event.position().toPoint()).isValid():  # below the rows (or on an empty list)
            self.clear_target_selection()
            return
        super().mousePressEvent(event)

    def _selection_changed(self) -> None:
        rows = self.selectionModel().selectedRows()
        if not rows:
            self.targetSelected.emit(None)
            return
        target_id = self.item(rows[0].row(), 0).data(QtCore.Qt.UserRole)
        target = next((t for t in self.targets if t.id == target_id), None)
        if target is not None:
            self.targetSelected.emit(target)
