"""Dialogs that do not pile up over a session."""
from __future__ import annotations

from PySide6 import QtWidgets


def replace_dialog(previous: QtWidgets.QDialog | None, dialog: QtWidgets.QDialog) -> QtWidgets.QDialog:
    """`dialog`, the one kept now of its kind: the previous one (closed, or still open) is deleted, unless it is
    still at work (`busy` or `exporting`: training, exporting), when it is left to the window. A dialog
    parented to the window outlives its closing, and with it the project and sequence it was opened on: one
    per export piled up for the whole session."""
    at_work = getattr(previous, "busy", False) or getattr(previous, "exporting", False)
    if previous is not None and previous is not dialog and not at_work:
        previous.close()
        previous.deleteLater()
    return dialog
