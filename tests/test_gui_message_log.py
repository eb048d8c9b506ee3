"""Status-bar messages: the opening message gives way to the frame label when the analyst moves on, and every
message can be read again in View > Messages."""
from __future__ import annotations

import pytest
from app.widgets.status_bar import MessageStatusBar

pytestmark = pytest.mark.gui


def test_status_bar_logs_each_message_once(qtbot):
    bar = MessageStatusBar()
    qtbot.addWidget(bar)
    bar.showMessage("first", 5000)
    bar.showMessage("first", 5000)  # the same, still shown: given again, not said again
    bar.showMessage("second")
    bar.clearMessage()
    bar.showMessage("second")  # said again after it was gone: a new entry
    bar.showMessage("")
    assert [text for _, text in bar.history] == ["first", "second", "second"]
    times = [shown_at for shown_at, _ in bar.history]
    assert times == sorted(times)


def test_opening_message_gives_way_to_the_frame_label_and_stays_in_the_log(window, fresh_sequence, qtbot):
    assert window.open_path(fresh_sequence)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    opened = window.statusBar().message()
    assert opened.startswith("60 frames, 128x96") and "normalisation" in opened
    assert window.frame_label.isHidden()  # a message takes the label's place

    window.timeline.step(1)
    assert window.statusBar().message() == ""
    assert window.frame_label.isVisible() and window.frame_label.text().startswith("frame 2/60")

    log = window.show_message_log()
    shown = log.text.toPlainText().splitlines()
    assert any(line.endswith(opened) for line in shown)  # the whole message, with the time it was shown
    assert shown[0].endswith(opened)  # newest first

    window.say_about_frame("Frame 2: a later message", 5000)
    assert log.text.toPlainText().splitlines()[0].endswith("Frame 2: a later message")
    assert window.show_message_log() is log  # one log per window, raised again
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert "&Messages..." in [a.text() for a in view_menu.actions()]


def test_a_message_about_a_frame_stays_while_the_frame_does(window, fresh_sequence, qtbot):
    assert window.open_path(fresh_sequence)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    window.show_frame(window.index)  # the frame shown again (a result came in): the message stays
    assert window.statusBar().message().startswith("60 frames")
