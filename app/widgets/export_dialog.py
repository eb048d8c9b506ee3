"""File > Export labels...: the project's reviewed frames as a training set (app.core.export)."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6 import QtWidgets

from app.core.export import (
    FRAME_CHANGED,
    LAYOUTS,
    SPLITS,
    ExportError,
    ExportReport,
    dataset_formats,
    dataset_stem_names,
    export_project,
    sequence_name_for,
    split_files_not_updated_message,
)
from app.core.project import ReviewProject
from app.widgets.workers import ProgressCallWorker, WorkerRunner
from model.data import counted


KEEP_SPLIT = "as before (a new sequence: train)"


def _frames(count: int) -> str:
    return counted(count, "frame", "frames")


def describe_report(report: ExportReport) -> str:
    lines = [f"{_frames(len(report.exported))} exported to {report.root} ({report.layout}, {report.split} split)."]
    moved = sorted({earlier for _, earlier in report.moved})
    if moved:
        one = len(report.moved) == 1
        lines.append(f"{_frames(len(report.moved))} of this sequence {'was' if one else 'were'} on the "
                     f"{' and '.join(moved)} side before: {'it' if one else 'they'} moved to {report.split}.")
    if report.replaced:
        projects = sorted({str(project) for _, project, _ in report.replaced})
        lines.append(f"{_frames(len(report.replaced))} exported before from another project or source under this "
                     f"sequence name {'was' if len(report.replaced) == 1 else 'were'} replaced (this clip holds every "
                     f"frame of that one): {', '.join(projects)}.")
    if report.removed:
        lines.append(f"{_frames(len(report.removed))} of an earlier export of this sequence removed (no longer "
                     "selected).")
    if report.changed:
        names = ", ".join(report.changed[:5]) + (f" and {len(report.changed) - 5} more" if len(report.changed) > 5 else "")
        they, their, them = ("it", "its", "it") if len(report.changed) == 1 else ("they", "their", "them")
        lines.append(f"{_frames(len(report.changed))} not exported: {they} changed on disk since {their} mask or "
                     f"status was made ({names}). Review {them} again (Review > Check frames on disk marks {them}) and "
                     "export again.")
    if report.split_files_not_updated:
        note = split_files_not_updated_message(report).removeprefix("note: ")
        lines.append(note[0].upper() + note[1:] + ".")
    if report.shared:
        named = [f"{stem} (as {held})" for stem, held in report.shared[:5]]
        more = f" and {len(report.shared) - 5} more" if len(report.shared) > 5 else ""
        held = ("its pixels as a frame", "it") if len(report.shared) == 1 else ("their pixels as frames", "them")
        lines.append(f"{_frames(len(report.shared))} not exported: the data set already holds {held[0]} of another "
                     f"sequence, a clip that overlaps this one ({', '.join(named)}{more}). To export {held[1]} with "
                     f"this sequence instead, reject {held[1]} in the other sequence's project, export it again "
                     "(adding to the data set), then export this one again.")
    if report.temporary_removed:
        n = len(report.temporary_removed)
        lines.append(f"{counted(n, 'temporary file', 'temporary files')} left by an export cut short "
                     f"{'was' if n == 1 else 'were'} removed.")
    changed_kept = [stem for stem, why in report.kept if why == FRAME_CHANGED]
    unreadable_kept = [(stem, why) for stem, why in report.kept if why != FRAME_CHANGED]
    if changed_kept:
        one = len(changed_kept) == 1
        every = len(changed_kept) == len(report.changed)
        which = ("It" if one else "They") if every else f"{len(changed_kept)} of them"
        lines.append(f"{which} {'keeps its' if one else 'keep their'} earlier export, made from the pixels of then.")
    if unreadable_kept:
        stem, why = unreadable_kept[0]
        one = len(unreadable_kept) == 1
        lines.append(f"{_frames(len(unreadable_kept))} that cannot be read now {'keeps its' if one else 'keep their'} "
                     f"earlier export ({'' if one else 'e.g. '}{stem}: {why}); restore {'it' if one else 'them'} and "
                     f"export again to update {'it' if one else 'them'}.")
    lines += report.formats_summary()
    if report.skipped:
        reasons: dict[str, int] = {}
        for _, why in report.skipped:
            reasons[why] = reasons.get(why, 0) + 1
        lines.append(f"{_frames(len(report.skipped))} skipped:")
        lines += [f"  {n} x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


class ExportDialog(QtWidgets.QDialog):
    """Export options, and the export run in a worker thread with its progress shown.

    The dialog is opened window-modal (`open()`), so the main window takes no edits while an export reads
    the project. While it runs, the options, Export and Close are disabled and Esc / the title bar's close
    are ignored: the split files and meta.json are written last, so an export cut short would leave a
    data set without them. `done` (the dialog closed from code) and `wait_for_export` (the main window
    closing its session) wait for a running export to finish.
    """

    def __init__(self, project: ReviewProject, session, parent=None):
        super().__init__(parent)
        self.project, self.session = project, session
        self.report: ExportReport | None = None
        self.runner = WorkerRunner(self)
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
        self.split_combo.addItem(KEEP_SPLIT, None)
        for split in SPLITS:
            self.split_combo.addItem(split, split)
        self.split_combo.setToolTip("A sequence goes to one side: neighbouring frames are near-duplicates. Added to a "
                                    "data set that has it already, it stays on its side unless another is chosen.")
        self.sequence = QtWidgets.QLineEdit(session.sequence_name)
        self.sequence.setToolTip("The prefix of this sequence's frames in the data set; every sequence in a data "
                                 "set needs its own")
        self.saved_as = QtWidgets.QLabel()
        self.sequence.textChanged.connect(self._show_saved_as)
        self._show_saved_as()
        self.include_unreviewed = QtWidgets.QCheckBox("include unreviewed frames (their committed mask, else the prediction)")
        self.append = QtWidgets.QCheckBox("add to an existing data set")
        self.raw = QtWidgets.QCheckBox("raw copies (original bit depth)")
        self.coco = QtWidgets.QCheckBox("COCO annotations (RLE)")
        self.yolo = QtWidgets.QCheckBox("YOLO boxes")
        self.format_boxes = {"raw": self.raw, "coco": self.coco, "yolo": self.yolo}
        self._sequence_typed = False  # the analyst's own name is kept; else it follows the data set
        self.sequence.textEdited.connect(self._sequence_was_typed)
        for changed in (self.append.toggled, self.folder.textChanged, self.layout_combo.currentTextChanged):
            changed.connect(self._tick_formats_the_data_set_has)
            changed.connect(self._name_as_the_data_set_does)
        self.result = QtWidgets.QPlainTextEdit()
        self.result.setReadOnly(True)
        self.result.setPlaceholderText("What was exported and skipped shows here.")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFormat("Exporting... %v / %m frames")
        self.progress.hide()
        self.export_button = QtWidgets.QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.export)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.clicked.connect(self.accept)
        self.options = [self.folder, browse, self.layout_combo, self.split_combo, self.sequence,
                        self.include_unreviewed, self.append, self.raw, self.coco, self.yolo]

        folder_row = QtWidgets.QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        form = QtWidgets.QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("Layout", self.layout_combo)
        form.addRow("Split", self.split_combo)
        form.addRow("Sequence name", self.sequence)
        form.addRow("", self.saved_as)
        for box in (self.include_unreviewed, self.append, self.raw, self.coco, self.yolo):
            form.addRow("", box)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.close_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result, 1)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        self.resize(560, 440)

    @property
    def exporting(self) -> bool:
        return self.runner.busy

    def export(self) -> bool:
        """Start the export in the worker thread; False when it cannot start (no folder, one running).
        The report (`self.report`, shown in `result`) comes when it ends."""
        folder = self._folder()
        if folder is None:
            self.result.setPlainText("Choose an output folder first.")
            return False
        if self.exporting:
            return False
        project, session = self.project, self.session
        layout, split = self.layout_combo.currentText(), self.split_combo.currentData()
        options = dict(include_unreviewed=self.include_unreviewed.isChecked(), append=self.append.isChecked(),
                       raw=self.raw.isChecked(), coco=self.coco.isChecked(), yolo=self.yolo.isChecked(),
                       sequence_name=self.sequence.text().strip(), source=session.source,
                       normalization=session.normalization)
        worker = ProgressCallWorker(
            lambda progress: export_project(project, folder, layout, split=split, progress=progress, **options),
            (ExportError, OSError))  # their messages say what to do
        worker.progress.connect(self._show_progress)
        worker.finished.connect(self._exported)
        self.report = None
        self.result.setPlainText(f"Exporting to {folder}...")
        self.progress.setRange(0, 0)  # busy until the first frame is done
        self.progress.show()
        self._set_running(True)
        self.runner.start(worker)
        return True

    def wait_for_export(self) -> None:
        """Block until a running export has finished (its report then arrives queued)."""
        self.runner.stop()

    def _show_saved_as(self) -> None:
        """The name the first frame gets, by export's own rule (a TIFF's pages are not prefixed twice)."""
        stems = self.project.stems
        sequence = self.sequence.text().strip()
        if not stems or not sequence:
            self.saved_as.setText(f"frames are saved as {sequence or '<sequence>'}_<frame>.png")
            return
        first = dataset_stem_names(sequence, stems[:1], stems, {})[stems[0]]
        self.saved_as.setText(f"frames are saved as {first}.png, ...")

    def _folder(self) -> Path | None:
        """The output folder typed or chosen, "~" expanded as a shell does; None when none is given.
        (os.path.expanduser: Path.expanduser raises for "~name" of an unknown user, typed on the way to "~/")"""
        folder = self.folder.text().strip()
        return Path(os.path.expanduser(folder)) if folder else None

    def _tick_formats_the_data_set_has(self) -> None:
        """An append writes them anyway (app.core.export): ticked, the options say so before it runs."""
        folder = self._folder()
        if self.append.isChecked() and folder:
            for name in dataset_formats(folder, self.layout_combo.currentText()):
                self.format_boxes[name].setChecked(True)

    def _sequence_was_typed(self) -> None:
        self._sequence_typed = True

    def _name_as_the_data_set_does(self) -> None:
        """Adding to a data set that holds this source's frames under another name: that name, so the export
        replaces them (app.core.export refuses to hold them twice)."""
        folder = self._folder()
        if self._sequence_typed:
            return
        name = self.session.sequence_name
        if self.append.isChecked() and folder:
            try:
                name = sequence_name_for(self.project, folder, self.layout_combo.currentText())
            except (ExportError, OSError, ValueError):  # an unreadable or malformed meta.json: the export says so
                pass
        self.sequence.setText(name)

    def _set_running(self, running: bool) -> None:
        for widget in (*self.options, self.export_button, self.close_button):
            widget.setEnabled(not running)

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _exported(self, report: ExportReport | None, error: str | None) -> None:
        self.runner.release_if_done(self.sender())
        self.progress.hide()
        self._set_running(False)
        if error:
            self.result.setPlainText(f"Export failed: {error}")
        else:
            self.report = report
            self.result.setPlainText(describe_report(report))

    def reject(self) -> None:
        if not self.exporting:  # Esc and the title bar's close wait for the end of the export
            super().reject()

    def done(self, result: int) -> None:
        self.wait_for_export()
        super().done(result)

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Export labels to")
        if folder:
            self.folder.setText(folder)
