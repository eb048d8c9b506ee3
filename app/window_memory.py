"""What the review window remembers between runs, in its QSettings: the place left in each sequence (frame and
zoom), the recent files and the window's layout."""
from __future__ import annotations

import json
from typing import Sequence

from PySide6 import QtCore, QtWidgets

MAX_RECENT = 10
RECENT_KEY = "recent"  # the sources and projects opened, the most recent first
# source path -> [index, name] of the frame shown when it was left (a bare index, written before session 27)
LAST_FRAMES_KEY = "review/last_frames"
# source path -> [frame height, frame width, x, y, width, height]: the part of the frame in view when it was left
# zoomed in (none when the whole frame was in view)
LAST_VIEWS_KEY = "review/last_views"
WINDOW_GEOMETRY_KEY, WINDOW_STATE_KEY = "window/geometry", "window/state"  # as the window was last closed
WINDOW_STATE_VERSION = 1  # raise when the docks change: an older saved layout is then not restored
MAX_LAST_FRAMES = 50  # sources remembered, the most recently left kept


class WindowMemory:
    """Reads and writes what the window remembers in `settings`."""

    def __init__(self, settings: QtCore.QSettings):
        self.settings = settings

    def _remembered(self, key: str) -> dict:
        try:
            places = json.loads(self.settings.value(key, "{}"))
        except (TypeError, ValueError):
            return {}
        return places if isinstance(places, dict) else {}

    def _last_frames(self) -> dict[str, list]:
        places = {}
        for source, place in self._remembered(LAST_FRAMES_KEY).items():
            if isinstance(place, int):
                place = [place, None]
            if (isinstance(place, list) and len(place) == 2 and isinstance(place[0], int) and place[0] >= 0
                    and (place[1] is None or isinstance(place[1], str))):
                places[source] = place
        return places

    def last_frame(self, source: str, stems: Sequence[str]) -> int:
        """The frame `source` (now holding the frames `stems`) was left at: found by its name, so that frames added
        before it since do not move the window to another frame; else at its index, within the frames; else 0."""
        index, stem = self._last_frames().get(source, (0, None))
        if stem is not None:
            try:
                return list(stems).index(stem)
            except ValueError:
                pass
        return min(index, max(len(stems) - 1, 0))

    def _last_views(self) -> dict[str, list[float]]:
        return {k: v for k, v in self._remembered(LAST_VIEWS_KEY).items()
                if isinstance(v, list) and len(v) == 6 and all(isinstance(n, (int, float)) for n in v)}

    def remember_place(self, source: str, frame: int, stem: str, view: list[float] | None) -> None:
        """The frame shown in `source` (its index and name) and the `view` ([frame height, frame width, x, y,
        width, height]; None when the whole frame is in view) it is left at."""
        frames, views = self._last_frames(), self._last_views()
        frames.pop(source, None)
        frames[source] = [frame, stem]
        views.pop(source, None)
        if view is not None:
            views[source] = view
        self.settings.setValue(LAST_FRAMES_KEY, json.dumps(dict(list(frames.items())[-MAX_LAST_FRAMES:])))
        self.settings.setValue(LAST_VIEWS_KEY, json.dumps(dict(list(views.items())[-MAX_LAST_FRAMES:])))

    def zoomed_rect(self, source: str, frame_size: tuple[int, int]) -> tuple[float, ...] | None:
        """The part of the frame (x, y, width, height) `source` was left zoomed in on, if its frames still have the
        size (height, width) they had then."""
        view = self._last_views().get(source)
        if view is not None and tuple(view[:2]) == frame_size:
            return tuple(view[2:])
        return None

    def recent(self) -> list[str]:
        return self.settings.value(RECENT_KEY, [], list)

    def remember_recent(self, path: str) -> None:
        recent = [p for p in self.recent() if p != path]
        self.settings.setValue(RECENT_KEY, [path] + recent[: MAX_RECENT - 1])

    def restore_layout(self, window: QtWidgets.QMainWindow) -> bool:
        """The window's size and place, and its docks and toolbars, as it was last closed. False when none was
        saved (or saved by an older layout of docks)."""
        geometry, state = self.settings.value(WINDOW_GEOMETRY_KEY), self.settings.value(WINDOW_STATE_KEY)
        if isinstance(geometry, QtCore.QByteArray):
            window.restoreGeometry(geometry)
        return isinstance(state, QtCore.QByteArray) and window.restoreState(state, WINDOW_STATE_VERSION)

    def save_layout(self, window: QtWidgets.QMainWindow) -> None:
        self.settings.setValue(WINDOW_GEOMETRY_KEY, window.saveGeometry())
        self.settings.setValue(WINDOW_STATE_KEY, window.saveState(WINDOW_STATE_VERSION))
