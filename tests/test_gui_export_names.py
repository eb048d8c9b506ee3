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
