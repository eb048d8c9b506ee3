"""The main window's right column of docks (Detection, the Review or Targets tab shown, Overlays), shared by
what each needs."""
from __future__ import annotations

from typing import Callable

from PySide6 import QtCore, QtGui, QtWidgets

OVERLAYS_MIN_HEIGHT = 100  # px: the overlay toggles keep a few rows when the right column is short
# The right column is shared again this long after the window's height last changed (a drag of its edge
# sends many resizes): Qt would take it all from, or give it all to, one dock (the queue once kept no row)
DOCKS_RESHARE_MS = 100


class RightColumnDocks:
    """Shares the window's right column. The window's showEvent, resizeEvent and event pass through it, from the
    window's first child on (so it reads the docks only once the window shows)."""

    def __init__(self, window: QtWidgets.QMainWindow):
        self.window = window
        self.layout_restored = False  # the window's saved layout was restored: its share is kept as one dragged
        self.reshare_timer: QtCore.QTimer | None = None  # made when the window first shows
        self._heights_at_press: tuple[int, int, int] | None = None  # the column's, at a press on the window
        self._dragged_heights: tuple[int, int, int] | None = None  # as the analyst left them by dragging a separator

    def window_shown(self) -> None:
        if self.reshare_timer is None:
            self.reshare_timer = QtCore.QTimer(self.window)
            self.reshare_timer.setSingleShot(True)
            self.reshare_timer.setInterval(DOCKS_RESHARE_MS)
            self.reshare_timer.timeout.connect(self.size_docks)
            QtCore.QTimer.singleShot(0, self.window, self._first_share)  # not after the window is gone

    def _first_share(self) -> None:
        """Share the right column for the first time; a restored layout's share is kept as one dragged by hand."""
        if self.layout_restored:
            self._dragged_heights = self._heights()
        self.size_docks()

    def window_resized(self, event: QtGui.QResizeEvent) -> None:
        if (self.reshare_timer is not None and event.oldSize().isValid()
                and event.size().height() != event.oldSize().height()):
            self.reshare_timer.start()  # shared again once the height stays

    def window_event(self, event: QtCore.QEvent, handle: Callable[[QtCore.QEvent], bool]) -> bool:
        """`handle` (the window's own `event`) handles the event. The separators between docks belong to the
        window itself: a press and release on it that changed the column's heights is the analyst's drag, kept
        from then on (`size_docks`)."""
        kind = event.type()
        if kind == QtCore.QEvent.MouseButtonPress:
            self._heights_at_press = self._heights()
        handled = handle(event)
        if kind == QtCore.QEvent.MouseButtonRelease and self._heights_at_press is not None:
            pressed, self._heights_at_press = self._heights_at_press, None
            heights = self._heights()
            if heights is not None and heights != pressed:
                self._dragged_heights = heights
        return handled

    def _docks(self) -> list[QtWidgets.QDockWidget] | None:
        """Detection, the tab shown of Review and Targets, Overlays: when all three are docked and shown."""
        window = self.window
        review_dock = window.review_tools.review_dock
        # the middle of the column is the tab shown, Review or Targets (the hidden tab's height is stale)
        docked = [d for d in (review_dock, window.targets_dock) if d.isVisible() and not d.isFloating()]
        shown = [d for d in docked if not d.visibleRegion().isEmpty()]  # a tabified dock behind its tab "is visible"
        middle = (shown or docked or [None])[0]
        if middle is None or any(d.isFloating() or not d.isVisible()
                                 for d in (window.detection_dock, window.overlays_dock)):
            return None
        return [window.detection_dock, middle, window.overlays_dock]

    def _heights(self) -> tuple[int, int, int] | None:
        docks = self._docks()
        return None if docks is None else tuple(d.height() for d in docks)

    def size_docks(self) -> None:
        """Share the right column: the review queue what its buttons, filters and four rows need (up to
        half the column), the detection panel
        its full height from the rest, the overlays what is left (at least a few rows); each scrolls
        when short. Qt would otherwise shrink all three alike. Done when the window first shows and again
        whenever its height changes, but for a share the analyst made by dragging a separator: that is kept
        as long as the queue keeps what it needs (or what the analyst left it) and the overlays a few rows."""
        docks = self._docks()
        if docks is None:
            return
        window = self.window
        review_dock = window.review_tools.review_dock
        column = sum(d.height() for d in docks)
        detection_full, overlays_full = (d.height() - d.widget().height() + d.widget().widget().sizeHint().height()
                                         for d in (window.detection_dock, window.overlays_dock))
        # down to the queue table's fourth row (everything above it is fixed); the
        # share is the one the Review tab needs, whichever tab is shown, so switching tabs keeps it
        table = window.review_tools.review_panel.table
        queue_needed = table.mapTo(review_dock.widget().widget(), QtCore.QPoint(0, 0)).y() + table.minimumHeight()
        tabs = max((bar.height() for bar in window.findChildren(QtWidgets.QTabBar)
                    if review_dock.windowTitle() in (bar.tabText(i) for i in range(bar.count()))), default=0)
        review_needed = review_dock.height() - review_dock.widget().height() + queue_needed + 4 + tabs
        if self._dragged_heights is not None:
            floors = (0, min(review_needed, column // 2, self._dragged_heights[1]),
                      min(overlays_full, OVERLAYS_MIN_HEIGHT, self._dragged_heights[2]))
            if all(d.height() >= floor for d, floor in zip(docks, floors)):
                return
            self._dragged_heights = None  # squeezed below what it needs: shared again
        review = max(column - detection_full - overlays_full, min(review_needed, column // 2))
        rest = column - review
        detection = min(detection_full, rest - min(overlays_full, OVERLAYS_MIN_HEIGHT))
        window.resizeDocks(docks, [detection, review, rest - detection], QtCore.Qt.Vertical)

    def fit_detection_dock(self) -> None:
        """Share the column again when the detection panel no longer fits its dock."""
        area = self.window.detection_dock.widget()
        if area.widget().sizeHint().height() > area.viewport().height():
            self.size_docks()
