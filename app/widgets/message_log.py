"""View > Messages: every status-bar message of the session, newest first, with the time it was shown. A
message stays in the bar for some seconds, or until the analyst moves to another frame; what it said (an
unreadable file named, a propagation stopped, a warning about the ground truth) can be read again here."""
from __future__ import annotations

import time

from PySide6 import QtCore, QtWidgets

from app.widgets.status_bar import MessageStatusBar


def log_line(shown_at: float, text: str) -> str:
    return f"{time.strftime('%H:%M:%S', time.localtime(shown_at))}  {text}"


class MessageLog(QtWidgets.QDialog):
    def __init__(self, bar: MessageStatusBar, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Messages")
        self.resize(900, 360)
        self.text = QtWidgets.QPlainTextEdit(readOnly=True)
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.WidgetWidth)
        self.text.setPlaceholderText("No message yet.")
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.text.setPlainText("\n".join(log_line(*entry) for entry in reversed(bar.history)))
        bar.messageLogged.connect(self._logged)

    @QtCore.Slot(float, str)
    def _logged(self, shown_at: float, text: str) -> None:
        cursor = self.text.textCursor()
        cursor.movePosition(cursor.MoveOperation.Start)
        cursor.insertText(log_line(shown_at, text) + ("\n" if self.text.document().characterCount() > 1 else ""))
