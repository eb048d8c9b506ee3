"""The export dialog's sequence name follows the data set it adds to: the name it already gives this source."""
from __future__ import annotations

from app.core.export import read_exported_dataset
from app.core.project import ReviewStatus


def _export(dialog, qtbot) -> str:
    dialog.export_button.click()
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
    return dialog.result.toPlainText()


def test_adding_to_a_data_set_takes_the_name_it_gives_this_source_unless_one_was_typed(review, qtbot, tmp_path):
    session, tools = review.session, review.review_tools
    for index in range(2):
        session.set_status(index, ReviewStatus.ACCEPTED)
    out = tmp_path / "export"
    dialog = tools.export_dialog()
    assert dialog.sequence.text() == session.sequence_name == "sequence"
    dialog.folder.setText(str(out))
    dialog.sequence.clear()
    qtbot.keyClicks(dialog.sequence, "day1")  # typed by the analyst
    assert "2 frames exported" in _export(dialog, qtbot)
    dialog.close()

    dialog = tools.export_dialog()
    dialog.folder.setText(str(out))
    assert dialog.sequence.text() == "sequence"  # a new data set, until "add to" is ticked
    dialog.append.setChecked(True)
    assert dialog.sequence.text() == "day1"
    session.set_status(2, ReviewStatus.ACCEPTED)
    assert "3 frames exported" in _export(dialog, qtbot)  # replacing the earlier two, not refused
    assert [stem for stem, *_ in read_exported_dataset(out, "sirst")] == [f"day1_{session.stem(i)}" for i in range(3)]
    dialog.append.setChecked(False)
    assert dialog.sequence.text() == "sequence"
    dialog.sequence.clear()
    qtbot.keyClicks(dialog.sequence, "mine")
    dialog.append.setChecked(True)
    assert dialog.sequence.text() == "mine"  # what the analyst typed stays
    dialog.close()


def test_a_folder_under_home_is_found_and_exported_to_and_a_malformed_data_set_is_left_to_the_export(
        review, qtbot, tmp_path, monkeypatch):
    from app.widgets import export_dialog

    session, tools = review.session, review.review_tools
    for index in range(2):
        session.set_status(index, ReviewStatus.ACCEPTED)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)  # an unexpanded "~/export" would be a folder named "~" here
    dialog = tools.export_dialog()
    dialog.folder.setText("~/export")
    dialog.sequence.clear()
    qtbot.keyClicks(dialog.sequence, "day1")
    assert "2 frames exported" in _export(dialog, qtbot)
    assert not (tmp_path / "~").exists()
    assert [stem for stem, *_ in read_exported_dataset(home / "export", "sirst")] == [
        f"day1_{session.stem(i)}" for i in range(2)]
    dialog.close()

    dialog = tools.export_dialog()
    dialog.append.setChecked(True)
    qtbot.keyClicks(dialog.folder, "~/export")  # "~" alone, then "~/", ... as typed
    assert dialog.sequence.text() == "day1"  # the name the data set at ~/export gives this source
    dialog.folder.clear()

    def malformed(*args, **kwargs):  # a meta.json of the right format whose frames are not records
        raise ValueError("malformed frames")

    monkeypatch.setattr(export_dialog, "sequence_name_for", malformed)
    qtbot.keyClicks(dialog.folder, "~/export")  # no traceback per keystroke: the name stays the default
    assert dialog.sequence.text() == session.sequence_name
    dialog.close()
