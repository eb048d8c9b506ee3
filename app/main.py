"""`irsam-review [SOURCE] [--demo]`: open the review window on a folder, TIFF stack, image or review project."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irsam-review", description="Review IRSAM detections on IR sequences.")
    parser.add_argument("source", nargs="?", help="folder of frames, multi-page TIFF, image, or review project folder")
    parser.add_argument("--demo", action="store_true", help="open the built-in synthetic 16-bit demo sequence")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Qt and pyqtgraph are imported only now, so `--help` works without a display
    from PySide6 import QtCore, QtGui, QtWidgets

    from app.main_thread_gc import MainThreadGarbageCollector
    from app.main_window import MainWindow
    from app.paths import RESOURCES

    # pyqtgraph's GL items cache shader programs; shared contexts keep them valid in every GL view
    QtCore.QCoreApplication.setAttribute(QtCore.Qt.AA_ShareOpenGLContexts)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("irsam-review")
    app.setOrganizationName("irsam-review")
    app.setDesktopFileName("irsam-review")
    app.setWindowIcon(QtGui.QIcon(str(RESOURCES / "irsam-review.svg")))
    MainThreadGarbageCollector(app).start()  # workers must never be the thread that frees Qt objects
    window = MainWindow()
    window.show()
    if args.demo:
        QtCore.QTimer.singleShot(0, window.open_demo)
    elif args.source:
        QtCore.QTimer.singleShot(0, lambda: window.open_path(args.source))
    else:
        QtCore.QTimer.singleShot(0, window.offer_demo)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
