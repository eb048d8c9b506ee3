"""The window's status bar. A message takes the room of the permanent labels that yield to messages (beside
them, long ones were cut off); one longer than the room left is shortened in its middle, so that its start
and end stay (what happened, and where), and is shown whole as the bar's tooltip. It is shortened again
whenever the bar changes width. Every message is also kept, with the time it was shown, for the window's
message log: a message is shown for some seconds only, and another takes its place."""
from __future__ import annotations

import time
from collections import deque

from PySide6 import QtCore, QtGui, QtWidgets

LABEL_SPACING = 24  # room a permanent label takes beside its own width (margins, separator, a gap)
BAR_MARGINS = 24  # the bar's own margins and size grip
HISTORY_LENGTH = 500  # messages kept for the log


class MessageStatusBar(QtWidgets.QStatusBar):
    messageLogged = QtCore.Signal(float, str)  # time.time() it was shown, the whole message

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._kept: list[QtWidgets.QWidget] = []  # permanent labels that stay beside a message
        self._yielding: list[QtWidgets.QWidget] = []  # and those hidden while one shows
        self._full, self._shown = "", ""  # the last message given to showMessage, and as it is shown
        self.history: deque[tuple[float, str]] = deque(maxlen=HISTORY_LENGTH)  # (time shown, message), oldest first
        # the message's timeout is kept here, not by QStatusBar: shortening it again on a resize restarts Qt's
        self._timeout = QtCore.QTimer(self)
        self._timeout.setSingleShot(True)
        self._timeout.timeout.connect(self._timed_out)
        self.messageChanged.connect(self._message_changed)

    def addPermanentWidget(self, widget: QtWidgets.QWidget, stretch: int = 0, yields_to_messages: bool = False) -> None:
        super().addPermanentWidget(widget, stretch)
        (self._yielding if yields_to_messages else self._kept).append(widget)
        if not yields_to_messages:
            widget.installEventFilter(self)  # a kept label that widens (the device named) takes the message's room

    def showMessage(self, text: str, timeout: int = 0) -> None:
        if not text:  # as QStatusBar takes it: no message
            self.clearMessage()
            return
        for widget in self._yielding:
            widget.hide()
        if text != self._full:  # not the one shown now, given again
            shown_at = time.time()
            self.history.append((shown_at, text))
            self.messageLogged.emit(shown_at, text)
        self._full = text
        self._show_shortened()
        if timeout > 0:
            self._timeout.start(timeout)
        else:
            self._timeout.stop()

    def message(self) -> str:
        """The message shown now, whole ("" when none); `currentMessage` is as shown, perhaps shortened."""
        shown = self.currentMessage()
        return self._full if shown and shown == self._shown else shown

    def _show_shortened(self) -> None:
        text = self._full
        room = self.width() - sum(w.sizeHint().width() + LABEL_SPACING for w in self._kept if not w.isHidden())
        room -= BAR_MARGINS
        metrics = QtGui.QFontMetrics(self.font())
        shown = text
        if room > 0 and metrics.horizontalAdvance(text) > room:
            # (a room too narrow for any of it: the message as it is, cut by the bar, rather than none)
            shown = metrics.elidedText(text, QtCore.Qt.ElideMiddle, room) or text
        self.setToolTip(text if shown != text else "")
        self._shown = shown
        super().showMessage(shown)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._shorten_again()

    def eventFilter(self, watched, event) -> bool:
        if watched in self._kept and event.type() == QtCore.QEvent.Resize:
            self._shorten_again()
        return super().eventFilter(watched, event)

    def _shorten_again(self) -> None:
        if self._full and self.currentMessage() == self._shown:
            self._show_shortened()

    def _timed_out(self) -> None:
        if self.currentMessage() == self._shown:
            self.clearMessage()

    def _message_changed(self, text: str) -> None:
        if not text:  # cleared
            self._full = self._shown = ""
            self._timeout.stop()
            self.setToolTip("")
            for widget in self._yielding:
                widget.show()
