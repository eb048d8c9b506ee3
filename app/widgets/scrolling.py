"""Dock contents that scroll when the screen is too short for them."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class ScrollingPanel(QtWidgets.QScrollArea):
    """A panel in a frameless scroll area: given room it fills it, squeezed it keeps its minimum and scrolls.

    Docked panels stacked in one column need more height than a laptop screen has (the right
    column asked for 1105 px); Qt then either makes the window taller than the screen or squeezes the
    panels below their minimum, cutting off what is at their bottom.

    The panel is sized here rather than by `widgetResizable`: with a word-wrapping label inside,
    QScrollArea gives a panel its preferred height (the review queue's table at full size, its rows
    below the dock's view) where its minimum would still fit.
    """

    def __init__(self, panel: QtWidgets.QWidget):
        super().__init__()
        self.setWidget(panel)
        self.setFrameShape(QtWidgets.QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)  # up and down only
        self.setMinimumWidth(panel.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width())
        panel.installEventFilter(self)

    def needed_height(self, width: int) -> int:
        layout = self.widget().layout()
        if layout is not None and layout.hasHeightForWidth():
            return layout.totalMinimumHeightForWidth(width)
        return self.widget().minimumSizeHint().height()

    def fit(self) -> None:
        viewport = self.viewport().size()
        self.widget().resize(viewport.width(), max(viewport.height(), self.needed_height(viewport.width())))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QtCore.QEvent.LayoutRequest:
            self.fit()  # the panel's content changed (a longer message, a hidden row)
        return False

    def sizeHint(self) -> QtCore.QSize:
        hint = self.widget().sizeHint()
        return QtCore.QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())
