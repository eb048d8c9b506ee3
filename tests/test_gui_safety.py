"""The window does not mislead or change review work by accident, under Xvfb."""
from __future__ import annotations

import pytest

from tests.gui_review_helpers import open_project

pytestmark = pytest.mark.gui


def test_opening_another_sequence_clears_the_selected_targets_box(review, sequence_16bit, qtbot):
    qtbot.waitUntil(lambda: review.target_list.rowCount() > 0, timeout=2000)
    review.target_list.selectRow(0)
    assert review.selected is not None and len(review.frame_view.selection.xData) > 0
    open_project(review, qtbot, sequence_16bit)
    xs = review.frame_view.selection.xData
    assert review.selected is None and (xs is None or len(xs) == 0)
