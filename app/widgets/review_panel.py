"""The review dock: status buttons, status counts, and the frame queue (filter + sort) as one table view
over `review_queue` summaries (a QAbstractTableModel: no widget per frame, fine for 10k+ frames).

Frames changed on disk since their work was made (`ReviewSession.changed_frames`, given by
`ReviewPanel.set_changed_frames`) keep their stored status, shown as "accepted ⚠ changed" with the
timeline's pink and what changed as its tooltip; the status filter's "changed on disk" lists them."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Mapping

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.project import FrameChange, ReviewStatus
from app.core.review_queue import FrameSummary, filter_frames, sort_frames
from app.widgets.timeline import CHANGED_ON_DISK, STATUS_COLORS

COLUMNS = ("frame", "stem", "status", "det.", "peak", "change")
SORT_CHOICES = {"frame": "index", "status": "status", "detections": "detections", "peak score": "peak_score",
                "change from previous": "change"}
STATUS_BUTTONS = {ReviewStatus.ACCEPTED: "Accept", ReviewStatus.CORRECTED: "Corrected",
                  ReviewStatus.REJECTED: "Rejected", ReviewStatus.NEGATIVE: "Negative",
                  ReviewStatus.UNREVIEWED: "Unreviewed"}
_STATUS_QCOLORS = {status: QtGui.QColor(*STATUS_COLORS[k]) for k, status in enumerate(ReviewStatus)}
_CHANGED_QCOLOR = QtGui.QColor(*STATUS_COLORS[CHANGED_ON_DISK])
CHANGED_FILTER = "changed on disk"  # the status filter's entry (and its data) listing the frames changed on disk
CHANGED_MARKER = " \u26a0 changed"  # short: the column leaves room for the stem; the tooltip says more
STOP_MARKER = " \u25c6 stop"
# an unreadable frame not reviewed: listed and counted apart (review steps over it; it can only be rejected)
UNREADABLE = "unreadable"


def elide_keeping_number(text: str, fits: Callable[[str], bool]) -> str:
    """`text` shortened until `fits(text)`: from its middle, keeping its start and its last number and whatever
    follows it ("drone146_…000001"), so a narrow column still tells frames apart; then from the start of the number
    itself when even "…" and the number do not fit."""
    if fits(text):
        return text
    number = re.search(r"\d+\D*$", text)
    tail = text[number.start():] if number else text[-1:]
    head = text[: len(text) - len(tail)]
    for keep in range(len(head) - 1, -1, -1):
        if fits(shorter := head[:keep] + "\u2026" + tail):
            return shorter
    for keep in range(len(tail) - 1, 0, -1):
        if fits(shorter := "\u2026" + tail[-keep:]):
            return shorter
    return "\u2026"


def cell_text_margins(widget: QtWidgets.QWidget | None) -> int:
    """What an item view's cell leaves beside its text, both sides together (Qt's: PM_FocusFrameHMargin + 1 each)."""
    style = widget.style() if widget is not None else QtWidgets.QApplication.style()
    return 2 * (style.pixelMetric(QtWidgets.QStyle.PM_FocusFrameHMargin, None, widget) + 1)


class StemDelegate(QtWidgets.QStyledItemDelegate):
    """Draws the stem column elided by `elide_keeping_number` (Qt's middle elision halves the width between the
    start and the end, which cut "drone146_000001" to "dro…001")."""

    def initStyleOption(self, option: QtWidgets.QStyleOptionViewItem, index: QtCore.QModelIndex) -> None:
        super().initStyleOption(option, index)
        room = option.rect.width() - cell_text_margins(option.widget) - 1
        metrics = option.fontMetrics
        option.text = elide_keeping_number(option.text, lambda text: metrics.horizontalAdvance(text) <= room)
        option.textElideMode = QtCore.Qt.ElideLeft  # should a pixel still be short: the number stays


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)  # None: not detected, or no frame before to compare with


def status_text(summary: FrameSummary, changed: bool = False, marked: bool = False, unreadable: bool = False) -> str:
    """The status column's text: the stored status ("unreadable" for an unreadable frame not reviewed), and whether
    the frame changed on disk or is where the last propagation stopped."""
    status = UNREADABLE if unreadable and summary.status is ReviewStatus.UNREVIEWED else summary.status.value
    return status + (CHANGED_MARKER if changed else "") + (STOP_MARKER if marked else "")


class FrameQueueModel(QtCore.QAbstractTableModel):
    """Rows: the summaries passing the filter, in the chosen order. `marked` frames (where propagation
    stopped) and `changed` ones (changed on disk) get a marker in the status column; the filter
    `{"changed_on_disk": True}` keeps only the changed ones. `markersChanged` follows a change of either."""

    markersChanged = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summaries: list[FrameSummary] = []  # every frame, in frame order
        self.rows: list[FrameSummary] = []
        self.filters: dict = {}
        self.sort_key, self.descending = "index", False
        self.marked: dict[int, str] = {}  # frame index -> why (tooltip)
        self.changed: dict[int, str] = {}  # frame index changed on disk -> what changed (tooltip)
        self.unreadable: set[int] = set()  # frames whose file cannot be decoded

    def set_summaries(self, summaries: list[FrameSummary]) -> None:
        self.summaries = list(summaries)
        self._rebuild()

    def update_summaries(self, summaries: list[FrameSummary]) -> None:
        """Replace the summaries of the frames given (by their index), as a layout change, not a reset: the
        views keep their selection, pressed row and current row on the same frames (a detection run updates
        the queue every second; a reset there lost a click pressed across it)."""
        for summary in summaries:
            if 0 <= summary.index < len(self.summaries):
                self.summaries[summary.index] = summary
        if not summaries:
            return
        rows = self._rows()
        if {s.index for s in rows} != {s.index for s in self.rows}:  # the filter took frames in or out
            self._rebuild()
            return
        if [s.index for s in rows] == [s.index for s in self.rows]:
            self.rows = rows
            if rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(COLUMNS) - 1))
            return
        self.layoutAboutToBeChanged.emit()
        row_of_frame = {s.index: r for r, s in enumerate(rows)}
        before = self.persistentIndexList()
        after = [self.createIndex(row_of_frame[self.rows[i.row()].index], i.column()) for i in before]
        self.rows = rows
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    def set_status(self, index: int, status: ReviewStatus) -> None:
        if 0 <= index < len(self.summaries) and self.summaries[index].status is not status:
            self.summaries[index] = dataclasses.replace(self.summaries[index], status=status)
            self._rebuild()

    def set_statuses(self, statuses: list[ReviewStatus]) -> None:
        """Every frame's status (in frame order): another instance on the project may have changed some."""
        changed = False
        for index, (summary, status) in enumerate(zip(self.summaries, statuses)):
            if summary.status is not status:
                self.summaries[index] = dataclasses.replace(summary, status=status)
                changed = True
        if changed:
            self._rebuild()

    def set_query(self, filters: dict, sort_key: str, descending: bool) -> None:
        self.filters, self.sort_key, self.descending = filters, sort_key, descending
        self._rebuild()

    def set_marked(self, marked: dict[int, str]) -> None:
        self.marked = dict(marked)
        if self.rows:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.rows) - 1, 2))
        self.markersChanged.emit()

    def set_changed(self, changes: Mapping[int, FrameChange]) -> bool:
        """The frames changed on disk (`ReviewSession.changed_frames`; entries whose `changed` is false are
        left out). True when that changed what the queue shows."""
        changed = {i: change.describe() for i, change in list(changes.items()) if change.changed}
        if changed == self.changed:
            return False
        self.changed = changed
        if self.filters.get("changed_on_disk"):
            self._rebuild()
        elif self.rows:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.rows) - 1, 2))
        self.markersChanged.emit()
        return True

    def set_unreadable(self, unreadable: set[int]) -> bool:
        """The frames found unreadable (named so in the status column while unreviewed); True when that changed
        what is shown."""
        if unreadable == self.unreadable:
            return False
        self.unreadable = set(unreadable)
        if self._rows_depend_on_unreadable():
            self._rebuild()
        elif self.rows:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.rows) - 1, 2))
        self.markersChanged.emit()
        return True

    def row_of(self, frame_index: int) -> int | None:
        return next((r for r, s in enumerate(self.rows) if s.index == frame_index), None)

    def _rows_depend_on_unreadable(self) -> bool:
        """Whether the status filter is "unreviewed" or "unreadable" (both list unreviewed frames only, and
        unreadable ones are listed under the second)."""
        return self.filters.get("statuses") == [ReviewStatus.UNREVIEWED]

    def _rows(self) -> list[FrameSummary]:
        filters = dict(self.filters)
        if filters.pop("changed_on_disk", False):
            filters["frames"] = self.changed
        if filters.pop("unreadable", False):
            filters["frames"] = self.unreadable
        elif self._rows_depend_on_unreadable():  # "unreviewed": listed as unreadable, not unreviewed
            filters["predicate"] = lambda s: s.index not in self.unreadable
        return sort_frames(filter_frames(self.summaries, **filters), self.sort_key, self.descending)

    def _rebuild(self) -> None:
        self.beginResetModel()
        self.rows = self._rows()
        self.endResetModel()

    def rowCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=QtCore.Qt.DisplayRole):
        if orientation == QtCore.Qt.Horizontal and role == QtCore.Qt.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index, role=QtCore.Qt.DisplayRole):
        if not index.isValid():
            return None
        s, column = self.rows[index.row()], index.column()
        if role == QtCore.Qt.DisplayRole:
            if column == 2:
                return status_text(s, s.index in self.changed, s.index in self.marked, s.index in self.unreadable)
            return (str(s.index + 1), s.stem, None, _count(s.n_detections),
                    "-" if math.isnan(s.peak_score) else f"{s.peak_score:.2f}", _count(s.change_from_previous))[column]
        if role == QtCore.Qt.DecorationRole and column == 2:
            return _CHANGED_QCOLOR if s.index in self.changed else _STATUS_QCOLORS[s.status]
        if role == QtCore.Qt.ToolTipRole and column == 1:
            return s.stem  # elided keeping its frame number when the column is narrow (StemDelegate)
        if role == QtCore.Qt.ToolTipRole and column == 2 and (s.index in self.marked or s.index in self.changed):
            return "\n".join(t for t in (self.changed.get(s.index), self.marked.get(s.index)) if t)
        if role == QtCore.Qt.TextAlignmentRole and column in (0, 3, 4, 5):
            return int(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        return None


class ReviewPanel(QtWidgets.QWidget):
    statusRequested = QtCore.Signal(object)  # ReviewStatus
    acceptAndNextRequested = QtCore.Signal()
    nextUnreviewedRequested = QtCore.Signal()
    frameChosen = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.status_buttons: dict[ReviewStatus, QtWidgets.QPushButton] = {}
        buttons = QtWidgets.QGridLayout()
        for k, (status, label) in enumerate(STATUS_BUTTONS.items()):
            button = QtWidgets.QPushButton(label)
            button.setCheckable(True)
            button.setToolTip(f"Mark this frame {status.value}")
            button.clicked.connect(lambda _=False, s=status: self.statusRequested.emit(s))
            r, g, b = STATUS_COLORS[list(ReviewStatus).index(status)]
            button.setStyleSheet(f"QPushButton:checked {{ background-color: rgb({r},{g},{b}); color: white; }}")
            buttons.addWidget(button, 0, k)
            self.status_buttons[status] = button
        self.accept_next = QtWidgets.QPushButton("Accept + next")
        self.accept_next.setToolTip("Mark accepted and go to the next unreviewed frame")
        self.accept_next.clicked.connect(self.acceptAndNextRequested)
        self.next_unreviewed = QtWidgets.QPushButton("Next unreviewed")
        self.next_unreviewed.clicked.connect(self.nextUnreviewedRequested)
        buttons.addWidget(self.accept_next, 1, 0, 1, 3)
        buttons.addWidget(self.next_unreviewed, 1, 3, 1, 2)
        self.counts = QtWidgets.QLabel()
        self.counts.setWordWrap(True)

        self.status_filter = QtWidgets.QComboBox()
        self.status_filter.addItem("all statuses", None)
        for status in ReviewStatus:
            self.status_filter.addItem(status.value, status)
        self.status_filter.addItem(UNREADABLE, UNREADABLE)
        self.status_filter.setItemData(self.status_filter.count() - 1, "Frames whose file cannot be decoded, not "
                                       "reviewed (red in the timeline): they can only be rejected",
                                       QtCore.Qt.ToolTipRole)
        self.status_filter.addItem(CHANGED_FILTER, CHANGED_FILTER)
        self.status_filter.setItemData(self.status_filter.count() - 1,
                                       "Frames replaced on disk since their status, mask or proposal was made "
                                       "(Review > Check frames on disk; pink in the timeline)",
                                       QtCore.Qt.ToolTipRole)
        self.min_detections = QtWidgets.QSpinBox()
        self.min_detections.setRange(0, 9999)
        self.min_detections.setToolTip("At least this many detections")
        self.min_peak = QtWidgets.QDoubleSpinBox()
        self.min_peak.setRange(-1000, 1000)
        self.min_peak.setSpecialValueText("any")
        self.min_peak.setValue(-1000)
        self.min_peak.setToolTip("Peak score (max logit) at least this")
        self.min_change = QtWidgets.QSpinBox()
        self.min_change.setRange(0, 9999)
        self.min_change.setToolTip("Targets appeared + disappeared since the previous frame, at least this")
        self.sort_combo = QtWidgets.QComboBox()
        self.sort_combo.addItems(SORT_CHOICES)
        self.descending = QtWidgets.QCheckBox("descending")
        for w in (self.status_filter, self.sort_combo):
            w.currentIndexChanged.connect(self._query_changed)
        for w in (self.min_detections, self.min_peak, self.min_change):
            w.valueChanged.connect(self._query_changed)
        self.descending.toggled.connect(self._query_changed)
        query = QtWidgets.QFormLayout()
        query.addRow("Status", self.status_filter)
        row = QtWidgets.QHBoxLayout()
        for label, w in (("detections \u2265", self.min_detections), ("peak \u2265", self.min_peak),
                         ("change \u2265", self.min_change)):
            row.addWidget(QtWidgets.QLabel(label))
            row.addWidget(w)
        query.addRow(row)
        sort_row = QtWidgets.QHBoxLayout()
        sort_row.addWidget(self.sort_combo, 1)
        sort_row.addWidget(self.descending)
        query.addRow("Sort by", sort_row)

        self.model = FrameQueueModel(self)
        self.model.markersChanged.connect(self._update_counts)  # the counts and the status column's width
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(20)
        # a long stem keeps its start and its frame number ("stack_…000006"); the full stem is its tooltip
        self.table.setTextElideMode(QtCore.Qt.ElideMiddle)
        self._stem_delegate = StemDelegate(self.table)
        self.table.setItemDelegateForColumn(1, self._stem_delegate)
        header = self.table.horizontalHeader()
        # the stem takes what is left; the other columns are sized to their header and to the widest text
        # they can hold now (`_fit_columns`), without measuring every row
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.Stretch)
        self._fit_columns()
        # header and four rows: a short dock keeps the current frame's row in sight (the table lies
        # below the buttons and filters; a taller minimum pushed it out of a docked panel's view)
        rows = 4 * self.table.verticalHeader().defaultSectionSize()
        self.table.setMinimumHeight(header.sizeHint().height() + rows + 2 * self.table.frameWidth())
        self.table.setFocusPolicy(QtCore.Qt.ClickFocus)  # keys belong to the window's shortcuts
        self.table.setTabKeyNavigation(False)  # Tab leaves the table, as it leaves any control
        self.shown_index: int | None = None  # the frame the window shows (its row is selected once it settles)
        self.table.clicked.connect(lambda index: self.frameChosen.emit(self.model.rows[index.row()].index))
        # what would change the rows while a mouse button is held on the table, kept for its release: rows moved
        # or rebuilt between a press and its release (a run's counts, statuses another window set, a frame found
        # unreadable) would make the click another frame's, or none
        self._held_changes: list = []
        self._button_held = False
        self.table.viewport().installEventFilter(self)
        self.table.installEventFilter(self)  # a key that moves its current row goes to that row's frame

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addWidget(self.counts)
        layout.addLayout(query)
        layout.addWidget(self.table, 1)

    def set_summaries(self, summaries: list[FrameSummary]) -> None:
        self._held_changes.clear()  # older than these
        self.model.set_summaries(summaries)
        self._update_counts()

    def update_summaries(self, summaries: list[FrameSummary], index: int) -> None:
        """As `set_summaries` for some frames (a run's frames come in every second): the frame at the top of the
        table stays there, whatever order the rows take, and frame `index` stays selected."""
        self._when_released(lambda: self._update_summaries(summaries, index))

    def _update_summaries(self, summaries: list[FrameSummary], index: int) -> None:
        model, table = self.model, self.table
        top_row = table.rowAt(0)
        top = model.rows[top_row].index if 0 <= top_row < len(model.rows) else None
        model.update_summaries(summaries)
        self._update_counts()
        if model.row_of(index) is not None and not table.selectionModel().selectedRows():  # after a reset
            table.selectRow(model.row_of(index))
        row = model.row_of(top) if top is not None else None
        if row is not None:
            table.scrollTo(model.index(row, 0), QtWidgets.QAbstractItemView.PositionAtTop)

    def _when_released(self, change) -> None:
        """Make a change of the rows now, or, while a mouse button is held on the table, once it is released."""
        if self._button_held and QtWidgets.QApplication.mouseButtons() == QtCore.Qt.NoButton:
            self._button_held = False  # released where the table did not see it (over a dialog that opened)
        if self._button_held:
            self._held_changes.append(change)
            return
        self._make_held_changes()
        change()

    def _make_held_changes(self) -> None:
        held, self._held_changes = self._held_changes, []
        for change in held:
            change()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.table and event.type() == QtCore.QEvent.KeyPress:
            # the highlighted row and the frame shown (which the status keys act on) stay one: a key moves from the
            # frame shown (its row is selected only once it settles), and the row it moves to is shown
            row = None if self.shown_index is None else self.model.row_of(self.shown_index)
            if row is not None and row != self.table.currentIndex().row():
                self.table.setCurrentIndex(self.model.index(row, 0))
            # only a key that moves the row goes to a frame (a modifier, Ctrl+C: none); the persistent index
            # follows its row through a re-sort by a running detection, and is lost with a reset
            before = QtCore.QPersistentModelIndex(self.table.currentIndex())
            QtCore.QTimer.singleShot(0, self, lambda: self._go_to_current_row(before))
        if watched is self.table.viewport():
            if event.type() == QtCore.QEvent.MouseButtonPress:
                self._button_held = True
            elif event.type() == QtCore.QEvent.MouseButtonRelease:
                self._button_held = False
                if self._held_changes:
                    QtCore.QTimer.singleShot(0, self, self._released)  # once the click is taken
        return super().eventFilter(watched, event)

    def _go_to_current_row(self, before: QtCore.QPersistentModelIndex) -> None:
        current = self.table.currentIndex()
        if before.isValid() and QtCore.QModelIndex(before) == current:  # the key did not move the row
            return
        row = current.row()
        if 0 <= row < len(self.model.rows) and self.model.rows[row].index != self.shown_index:
            self.frameChosen.emit(self.model.rows[row].index)

    def _released(self) -> None:
        if not self._button_held:
            self._make_held_changes()

    def set_frame_status(self, index: int, status: ReviewStatus) -> None:
        self._when_released(lambda: (self.model.set_status(index, status), self._update_counts()))

    def set_statuses(self, statuses: list[ReviewStatus]) -> None:
        self._when_released(lambda: (self.model.set_statuses(statuses), self._update_counts()))

    def set_changed_frames(self, changes: Mapping[int, FrameChange]) -> None:
        """The frames found changed on disk (`ReviewSession.changed_frames`): marked in the status column,
        counted, and listed by the status filter's "changed on disk". The window calls this whenever it
        repaints the timeline's strip (which shows them pink)."""
        changes = dict(changes)  # as they are now, if held
        self._when_released(lambda: self.model.set_changed(changes))

    def set_unreadable_frames(self, unreadable: set[int]) -> None:
        """The frames found unreadable: while unreviewed, listed and counted as "unreadable" (review
        steps over them; they can only be rejected). The window calls this with `set_changed_frames`."""
        unreadable = set(unreadable)
        self._when_released(lambda: self.model.set_unreadable(unreadable))

    def show_current(self, index: int, status: ReviewStatus, scroll: bool = True) -> None:
        for s, button in self.status_buttons.items():
            button.setChecked(s is status)
        row = self.model.row_of(index)
        if row is not None:
            scrolled = self.table.verticalScrollBar().value()
            self.table.selectRow(row)  # (which scrolls to the row)
            if scroll:
                self.table.scrollTo(self.model.index(row, 0))
                self._show_row_in_the_dock(row)
            else:
                self.table.verticalScrollBar().setValue(scrolled)
        else:
            self.table.clearSelection()

    def _show_row_in_the_dock(self, row: int) -> None:
        """Scroll the dock's own scroll area (a short screen: the panel is taller than the dock) so that the row,
        which the table scrolled into its view, is not under the dock's edge."""
        area = self.parentWidget()
        while area is not None and not isinstance(area, QtWidgets.QScrollArea):
            area = area.parentWidget()
        if area is None or area.widget() is None:
            return
        rect = self.table.visualRect(self.model.index(row, 0))
        centre = self.table.viewport().mapTo(area.widget(), rect.center())
        area.ensureVisible(centre.x(), centre.y(), 0, rect.height() // 2 + 1)

    def _update_counts(self) -> None:
        counts = {status: 0 for status in ReviewStatus}
        unreadable = 0
        for s in self.model.summaries:
            if s.status is ReviewStatus.UNREVIEWED and s.index in self.model.unreadable:
                unreadable += 1
            else:
                counts[s.status] += 1
        extra = f"  {UNREADABLE} {unreadable}" if unreadable else ""
        extra += f"  {CHANGED_FILTER} {len(self.model.changed)}" if self.model.changed else ""
        self.counts.setText("  ".join(f"{status.value} {n}" for status, n in counts.items()) + extra
                            + f"   (showing {len(self.model.rows)})")
        self._fit_columns(counts)

    def _fit_columns(self, counts: dict[ReviewStatus, int] | None = None) -> None:
        """Size the frame, status and number columns to their header and the widest text they hold: the
        status column to the statuses present and the markers shown (a changed frame's, a stop's), so no
        marker is cut off. Measures a handful of texts, not every row; the stem column takes the rest
        (elided keeping the frame number)."""
        model, table = self.model, self.table
        metrics, header, style = table.fontMetrics(), table.horizontalHeader(), table.style()
        margin = cell_text_margins(table) + 2
        icon = table.iconSize().width()
        icon = (icon if icon > 0 else style.pixelMetric(QtWidgets.QStyle.PM_SmallIconSize, None, table)) + margin
        statuses = [s for s, n in (counts or {}).items() if n] or list(ReviewStatus)
        texts = {s.value for s in statuses}  # each text measured once, however many frames show it
        for index in set(model.changed) | set(model.marked) | model.unreadable:
            if 0 <= index < len(model.summaries):
                texts.add(status_text(model.summaries[index], index in model.changed, index in model.marked,
                                      index in model.unreadable))
        digits = len(str(len(model.summaries))) if model.summaries else 3
        # the number columns as wide as their longest value, digits measured as 0 (a peak of 122.72 was cut)
        most_detections = max((s.n_detections or 0 for s in model.summaries), default=0)
        most_change = max((s.change_from_previous or 0 for s in model.summaries), default=0)
        peaks = [s.peak_score for s in model.summaries if not math.isnan(s.peak_score)]
        peak_texts = ["-00.00"] + ([f"{min(peaks):.2f}", f"{max(peaks):.2f}"] if peaks else [])
        widest = {0: "0" * digits, 2: max(texts, key=metrics.horizontalAdvance),
                  3: "0" * max(2, len(str(most_detections))),
                  4: max(("".join("0" if c.isdigit() else c for c in t) for t in peak_texts),
                         key=metrics.horizontalAdvance),
                  5: "0" * max(2, len(str(most_change)))}
        for column, text in widest.items():
            width = metrics.horizontalAdvance(text) + margin + (icon if column == 2 else 0)
            width = max(width, header.sectionSizeHint(column))
            if header.sectionSize(column) != width:
                header.resizeSection(column, width)

    def _query_changed(self) -> None:
        status = self.status_filter.currentData()
        changed_only = status == CHANGED_FILTER
        filters = {
            "statuses": (None if status is None or changed_only else
                         [ReviewStatus.UNREVIEWED] if status == UNREADABLE else [status]),
            "changed_on_disk": changed_only,
            "unreadable": status == UNREADABLE,
            "min_detections": self.min_detections.value() or None,
            "min_peak_score": None if self.min_peak.value() == self.min_peak.minimum() else self.min_peak.value(),
            "min_change": self.min_change.value() or None,
        }
        self.model.set_query(filters, SORT_CHOICES[self.sort_combo.currentText()], self.descending.isChecked())
        self._update_counts()
