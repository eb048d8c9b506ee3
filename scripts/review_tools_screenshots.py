"""Screenshots of the editing and review views (docs/screenshots/editing.png, review.png).

Run under Xvfb:  xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" .venv/bin/python scripts/review_tools_screenshots.py
The sequence is synthetic; its "predictions" are the ground truth, so no detector is needed.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets
from PySide6.QtTest import QTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    QtCore.QCoreApplication.setAttribute(QtCore.Qt.AA_ShareOpenGLContexts)
    app = QtWidgets.QApplication([])
    from app.core.project import ReviewStatus
    from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
    from app.core.targets import label_components
    from app.editing import Tool
    from app.main_thread_gc import MainThreadGarbageCollector
    from app.main_window import MainWindow
    from tests.gui_review_helpers import click, drag, predict_ground_truth, viewport_point

    MainThreadGarbageCollector(app).start()  # as app.main does

    def wait(ms: int) -> None:
        # not QTest.qWait: PySide's sleeps holding the GIL, which stalls the window's worker threads
        loop = QtCore.QEventLoop()
        QtCore.QTimer.singleShot(ms, loop.quit)
        loop.exec()

    tmp = Path(tempfile.mkdtemp())
    config = SyntheticConfig(n_frames=40, height=192, width=256, n_targets=(3, 3), empty_fraction=0.0,
                             scr=(10.0, 25.0), sigma=(1.2, 2.2))
    sequence = write_sequence(generate_sequence(config, seed=5), tmp / "clip")
    predict_ground_truth(sequence)
    window = MainWindow(QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat))
    window.resize(1500, 950)
    window.show()
    window.open_path(sequence)
    while not window.detection_panel.isEnabled():
        wait(50)
    session, tools = window.session, window.review_tools
    cycle = [ReviewStatus.ACCEPTED, ReviewStatus.ACCEPTED, ReviewStatus.NEGATIVE, ReviewStatus.REJECTED]
    for index in range(12):
        session.set_status(index, cycle[index % 4])
    tools.refresh_queue()
    window.refresh_strip()

    # editing: one false alarm deleted, a 3 px brush stroke beside another target, the diff shown
    window.timeline.go_to(14)
    wait(300)
    first, second = window.layers.targets[:2]
    _, labels = label_components(session.project.prediction_mask(session.stem(14)))
    ys, xs = np.nonzero(labels == first.id)
    tools.palette.set_tool(Tool.DELETE_COMPONENT)
    click(window, int(xs[0]), int(ys[0]))
    tools.palette.brush_size.setValue(3)
    tools.palette.set_tool(Tool.BRUSH)
    cx, cy = int(second.cx), int(second.cy)
    drag(window, [(cx + 2, cy - 1), (cx + 4, cy + 1), (cx + 3, cy + 3)])
    tools.palette.diff.setChecked(True)
    window.frame_view.center_on(second.cx, second.cy, 28)
    QTest.mouseMove(window.frame_view.graphics.viewport(), viewport_point(window, cx + 9, cy + 6))
    wait(300)
    out = REPO / "docs" / "screenshots"
    window.grab().save(str(out / "editing.png"))

    # review: the whole frame, the queue sorted by status
    tools.palette.diff.setChecked(False)
    tools.palette.set_tool(Tool.NAVIGATE)
    window.frame_view.view.autoRange(padding=0.02)
    tools.review_panel.sort_combo.setCurrentText("status")
    window.timeline.go_to(12)
    wait(400)
    window.grab().save(str(out / "review.png"))
    window.close()
    app.quit()


if __name__ == "__main__":
    main()
