"""File > Export labels...: the project's reviewed frames as a training set (app.core.export)."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.core.export import LAYOUTS, SPLITS, ExportError, ExportReport, export_project
from app.core.project import ReviewProject


def describe_report(report: ExportReport) -> str:
    lines = [f"{len(report.exported)} frames exported to {report.root} ({report.layout}, {report.split} split)."]
    if report.removed:
        lines.append(f"{len(report.removed)} frames of an earlier export of this sequence removed.")
    if report.skipped:
        reasons: dict[str, int] = {}
        for _, why in report.skipped:
            reasons[why] = reasons.get(why, 0) + 1
        lines.append(f"{len(report.skipped)} frames skipped:")
        lines += [f"  {n} x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


class ExportDialog(QtWidgets.QDialog):
    def __init__(self, project: ReviewProject, session, parent=None):
        super().__init__(parent)
        self.project, self.session = project, session
        self.report: ExportReport | None = None
        self.setWindowTitle("Export labels")
        self.folder = QtWidgets.QLineEdit()
        self.folder.setPlaceholderText("output folder")
        browse = QtWidgets.QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        self.layout_combo = QtWidgets.QComboBox()
        self.layout_combo.addItems(LAYOUTS)
        self.layout_combo.setToolTip("sirst: images/ masks/ trainval.txt test.txt (SIRST, IRSAM)\n"
                                     "basicirstd: NAME/images NAME/masks NAME/img_idx/\n"
                                     "dnanet: images/ masks/ 50_50/train.txt test.txt")
        self.split_combo = QtWidgets.QComboBox()
        self.split_combo.addItems(SPLITS)
        self.split_combo.setToolTip("A sequence goes to one side: neighbouring frames are near-duplicates")
        self.include_unreviewed = QtWidgets.QCheckBox("include unreviewed frames (their predictions)")
        self.append = QtWidgets.QCheckBox("add to an existing data set")
        self.raw = QtWidgets.QCheckBox("raw copies (original bit depth)")
        self.coco = QtWidgets.QCheckBox("COCO annotations (RLE)")
        self.yolo = QtWidgets.QCheckBox("YOLO boxes")
        self.result = QtWidgets.QPlainTextEdit()
        self.result.setReadOnly(True)
        self.result.setPlaceholderText("What was exported and skipped shows here.")
        self.export_button = QtWidgets.QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.export)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.accept)

        folder_row = QtWidgets.QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        form = QtWidgets.QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("Layout", self.layout_combo)
        form.addRow("Split", self.split_combo)
        for box in (self.include_unreviewed, self.append, self.raw, self.coco, self.yolo):
            form.addRow("", box)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result, 1)
        layout.addLayout(buttons)
        self.resize(560, 440)

    def export(self) -> ExportReport | None:
        folder = self.folder.text().strip()
        if not folder:
            self.result.setPlainText("Choose an output folder first.")
            return None
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.WaitCursor)
        try:
            self.report = export_project(
                self.project, folder, self.layout_combo.currentText(), split=self.split_combo.currentText(),
                include_unreviewed=self.include_unreviewed.isChecked(), append=self.append.isChecked(),
                raw=self.raw.isChecked(), coco=self.coco.isChecked(), yolo=self.yolo.isChecked(),
                sequence_name=self.session.name, source=self.session.source,
                normalization=self.session.normalization,
            )
        except (ExportError, OSError) as e:
            self.result.setPlainText(f"Export failed: {e}")
            return None
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self.result.setPlainText(describe_report(self.report))
        return self.report

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Export labels to")
        if folder:
            self.folder.setText(folder)
