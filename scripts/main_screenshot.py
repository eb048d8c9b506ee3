"""The README's main screenshot (docs/screenshots/main.png): the built-in demo sequence with the default detector's
proposals over the whole sequence, frame 1 shown.

Run under Xvfb:  xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" .venv/bin/python scripts/main_screenshot.py
The demo is generated into a temporary folder (not the app's cache, whose review project stays untouched) and the
detector runs as "Whole sequence" in the Detection dock does: about 3 minutes on a 2-core CPU.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from PySide6 import QtCore, QtWidgets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    QtCore.QCoreApplication.setAttribute(QtCore.Qt.AA_ShareOpenGLContexts)
    app = QtWidgets.QApplication([])
    from app.core.synthetic import demo_sequence_dir
    from app.main_thread_gc import MainThreadGarbageCollector
    from app.main_window import MainWindow

    MainThreadGarbageCollector(app).start()  # as app.main does

    def wait(ms: int) -> None:
        # not QTest.qWait: PySide's sleeps holding the GIL, which stalls the window's worker threads
        loop = QtCore.QEventLoop()
        QtCore.QTimer.singleShot(ms, loop.quit)
        loop.exec()

    tmp = Path(tempfile.mkdtemp())
    demo = demo_sequence_dir(tmp / "cache" / "demo")
    window = MainWindow(QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat))
    window.resize(1440, 1052)  # every dock whole with the detector's description shown (at 950 high, Overlays scrolls)
    window.show()
    window.open_path(demo)
    while not window.detection_panel.isEnabled():
        wait(50)
    window.run_detection("all")  # starts once IRSAM has loaded
    while window.detection_runner.busy or not (window.session.detection_counts >= 0).all():
        wait(200)
    window.timeline.go_to(0)
    window.frame_view.show_whole_frame()
    wait(600)
    window.grab().save(str(REPO / "docs" / "screenshots" / "main.png"))
    window.close()
    app.quit()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
