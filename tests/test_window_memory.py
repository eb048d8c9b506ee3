"""The place the window was left at in a sequence: found again by the frame's name, so that frames added before it
since (a name sorting earlier) do not reopen the window on another frame."""
from __future__ import annotations

import json

from PySide6 import QtCore

from app.window_memory import LAST_FRAMES_KEY, WindowMemory


def _memory(tmp_path) -> WindowMemory:
    return WindowMemory(QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat))


def test_the_frame_left_is_found_by_its_name(tmp_path):
    memory = _memory(tmp_path)
    stems = [f"{i:06d}" for i in range(1, 11)]
    memory.remember_place("/clip", 4, "000005", None)
    assert memory.last_frame("/clip", stems) == 4
    inserted = stems[:2] + ["000002_5"] + stems[2:]
    assert memory.last_frame("/clip", inserted) == 5  # still 000005
    assert memory.last_frame("/clip", stems[:3] + stems[5:]) == 4  # its file gone: the place it had
    assert memory.last_frame("/clip", stems[:2]) == 1  # within the frames there are now
    assert memory.last_frame("/other", stems) == 0
    assert memory.last_frame("/clip", []) == 0


def test_a_place_remembered_before_names_were_kept_still_reopens(tmp_path):
    memory = _memory(tmp_path)
    memory.settings.setValue(LAST_FRAMES_KEY, json.dumps({"/clip": 7, "/bad": -1, "/worse": ["x", 2]}))
    stems = [f"{i:06d}" for i in range(1, 11)]
    assert memory.last_frame("/clip", stems) == 7
    assert memory.last_frame("/bad", stems) == memory.last_frame("/worse", stems) == 0
    memory.remember_place("/new", 2, "000003", [96, 128, 1, 2, 30, 20])
    assert json.loads(memory.settings.value(LAST_FRAMES_KEY))["/clip"] == [7, None]  # kept, as read
