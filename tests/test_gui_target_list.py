"""The targets table sorts by value, not by text."""
import math

import pytest
from PySide6 import QtCore

from app.core.targets import Target
from app.widgets.target_list import TargetList

pytestmark = pytest.mark.gui


def column(table: TargetList, col: int) -> list[str]:
    return [table.item(row, col).text() for row in range(table.rowCount())]


def test_targets_sort_by_number_and_start_in_id_order(qtbot):
    table = TargetList()
    qtbot.addWidget(table)
    areas = [16, 21, 6, 70, 9, 3, 12, 100, 5, 8, 40]
    targets = [Target(id=k + 1, cx=float(k), cy=float(k), area=a, x0=0, y0=0, x1=1, y1=1, peak_score=float(a) / 10)
               for k, a in enumerate(areas)]
    table.set_targets(targets, [float("nan")] + [1.0] * 10)
    assert column(table, 0) == [str(k) for k in range(1, 12)]  # 10 and 11 after 9, not after 1
    table.sortItems(3, QtCore.Qt.AscendingOrder)
    assert column(table, 3) == [str(a) for a in sorted(areas)]
    table.sortItems(5, QtCore.Qt.AscendingOrder)
    assert column(table, 5)[0] == "-" and not math.isnan(float(column(table, 5)[-1]))  # no SNR sorts first
    table.sortItems(4, QtCore.Qt.DescendingOrder)
    assert column(table, 4)[0] == "10.00"
