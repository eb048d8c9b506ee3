"""`irsam stats`: input sizes outside the range the count works for are one line, exit 2."""
from __future__ import annotations

import pytest

from app import cli
from model.complexity import MAX_INPUT_SIZE, MIN_INPUT_SIZE, complexity_report


@pytest.mark.parametrize("size", [0, -512, MIN_INPUT_SIZE - 1, MAX_INPUT_SIZE + 1])
def test_a_size_outside_the_range_is_one_error_line(size, capsys):
    assert cli.main(["stats", "--config", "tiny", "--size", str(size)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --size: input size must be 32..2048 pixels, got {size}\n"
    assert captured.out == ""


def test_the_smallest_size_is_counted():
    report = complexity_report("tiny", MIN_INPUT_SIZE)
    assert report["input_size"] == MIN_INPUT_SIZE and report["gmacs"] > 0 and report["parameters"] > 0
