"""The window's status bar. A message takes the room of the permanent labels that yield to messages (beside
them, long ones were cut off); one longer than the room left is shortened in its middle, so that its start
and end stay (what happened, and where), and is shown whole as the bar's tooltip."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

LABEL_SPACING = 24  # room a permanent label takes beside its own width (margins, separator, a gap)


class MessageStatusBar(QtWidgets.QStatusBar):
    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._kept: list[QtWidgets.QWidget] = []  # permanent labels that stay beside a message
        self._yielding: list[QtWidgets.QWidget] = []  # and those hidden while one shows
        self._full, self._shown = "", ""  # the last message given to showMessage, and as it was shown
        self.messageChanged.connect(self._message_changed)

    def addPermanentWidget(self, widget: QtWidgets.QWidget, stretch: int = 0, yields_to_messages: bool = False) -> None:
        super().addPermanentWidget(widget, stretch)
        (self._yielding if yields_to_messages else self._kept).append(widget)

    def showMessage(self, text: str, timeout: int = 0) -> None:
        for widget in self._yielding:
            widget.hide()
        room = self.width() - sum(w.sizeHint().width() + LABEL_SPACING for w in self._kept if not w.isHidden()) - 24
        metrics = QtGui.QFontMetrics(self.font())
        shown = text
        if self.isVisible() and room > 0 and metrics.horizontalAdvance(text) > room:
            shown = metrics.elidedText(text, QtCore.Qt.ElideMiddle, room)
        self.setToolTip(text if shown != text else "")
        self._full, self._shown = text, shown
        super().showMessage(shown, timeout)

    def message(self) -> str:
        """The message shown now, whole ("" when none); `currentMessage` is as shown, perhaps shortened."""
        shown = self.currentMessage()
        return self._full if shown and shown == self._shown else shown

    def _message_changed(self, text: str) -> None:
        if not text:  # timed out or cleared
            self.setToolTip("")
            for widget in self._yielding:
                widget.show()
