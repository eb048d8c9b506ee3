"""Dock contents that scroll when the screen is too short for them."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


def scrolling(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
    """`widget` in a frameless scroll area: at its size hint it looks as before, squeezed it scrolls.

    Docked panels stacked in one column need more height than a laptop screen has (the right
    column asked for 1105 px); Qt then either makes the window taller than the screen or squeezes the
    panels below their minimum, cutting off what is at their bottom. In a scroll area a panel can shrink
    to a few rows and stays usable.
    """
    area = QtWidgets.QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QtWidgets.QFrame.NoFrame)
    # it scrolls up and down only: as wide as the panel needs with the vertical scroll bar shown
    area.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area
