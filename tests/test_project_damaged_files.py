"""Damaged project files lose nothing silently: a review.json with a few bad entries keeps the others' statuses and is
kept aside before it is written over; a project.json holding values the project cannot use counts as damaged."""
import json

import pytest

from app.cli import main
from app.core.project import ProjectError, ReviewProject, ReviewStatus

SHAPE = (24, 32)
STEMS = ["f000", "f001", "f002", "f003"]
NORMALIZATION = {"mode": "window", "low": 100.0, "high": 4000.0}


def reviewed_project(folder):
    project = ReviewProject.create(folder, folder.parent / "frames", "folder", STEMS, SHAPE, NORMALIZATION, None)
    project.set_status("f000", "accepted")
    project.set_status("f001", "negative")
    project.set_status("f003", "rejected")
    return project


@pytest.mark.parametrize("bad_entry, why", [
    ({"status": "bogus", "time": "2026-01-01T00:00:00+00:00"}, "f001: unknown status 'bogus'"),
    ("negative", "f001: 'negative' is not an entry"),
    ({"status": "negative"}, 'f001: no "time"'),
])
def test_a_bad_review_entry_loses_only_its_frame_and_the_file_is_kept_aside_before_a_write(tmp_path, bad_entry, why):
    folder = tmp_path / "p"
    reviewed_project(folder)
    review = folder / "review.json"
    document = json.loads(review.read_text())
    document["frames"]["f001"] = bad_entry
    review.write_text(json.dumps(document))
    damaged_bytes = review.read_bytes()
    (folder / "review.json.bak").unlink()

    opened = ReviewProject.open(folder)
    assert opened.status("f000") is ReviewStatus.ACCEPTED and opened.status("f003") is ReviewStatus.REJECTED
    assert opened.status("f001") is ReviewStatus.UNREVIEWED and opened.statuses_incomplete
    ((path, reason),) = opened.damaged
    assert path == review
    assert reason == f"1 frame's status unreadable ({why}); its frame counts as unreviewed"

    opened.set_status("f002", "corrected")
    (kept,) = folder.glob("review.json.damaged-*")
    assert kept.read_bytes() == damaged_bytes
    assert opened.damaged == [(review, f"{reason}; the file as it was is kept as {kept.name}")]
    reopened = ReviewProject.open(folder)
    assert [reopened.status(stem).value for stem in STEMS] == ["accepted", "unreviewed", "corrected", "rejected"]
    assert reopened.damaged == [] and not reopened.statuses_incomplete
    opened.set_status("f002", "accepted")  # the file written since is whole: nothing more is kept aside
    assert len(list(folder.glob("review.json.damaged-*"))) == 1


def test_an_unreadable_review_json_without_backup_is_kept_aside_before_a_write(tmp_path):
    folder = tmp_path / "p"
    reviewed_project(folder)
    review = folder / "review.json"
    review.write_text('{"format": "irsam-review-status/1", "frames": {"f000": ')
    (folder / "review.json.bak").unlink()
    opened = ReviewProject.open(folder)
    assert opened.statuses_incomplete and [p for p, _ in opened.damaged] == [review]
    opened.set_status("f002", "corrected")
    (kept,) = folder.glob("review.json.damaged-*")
    assert kept.read_text() == '{"format": "irsam-review-status/1", "frames": {"f000": '
    assert opened.damaged[0][1].endswith(f"; the file as it was is kept as {kept.name}")


def test_a_review_json_restored_from_its_backup_is_still_kept_aside(tmp_path):
    folder = tmp_path / "p"
    reviewed_project(folder)
    (folder / "review.json").write_text("[]")
    opened = ReviewProject.open(folder)
    assert opened.status("f001") is ReviewStatus.NEGATIVE and not opened.statuses_incomplete
    opened.set_status("f002", "corrected")
    (kept,) = folder.glob("review.json.damaged-*")
    assert kept.read_text() == "[]"


BAD_VALUES = [
    (("source", "path"), None, "source.path is None, not a non-empty string"),
    (("source", "frame_shape"), "x", "source.frame_shape is 'x', not [height, width]"),
    (("normalization",), {}, "normalization is {}: no 'mode'"),
    (("normalization",), {"mode": "bogus", "low": 0, "high": 255},
     "normalization is {'mode': 'bogus', 'low': 0, 'high': 255}: normalisation mode must be one of"),
]


def _with_value(meta, keys, value):
    place = meta
    for key in keys[:-1]:
        place = place[key]
    place[keys[-1]] = value
    return meta


@pytest.mark.parametrize("keys, value, said", BAD_VALUES)
def test_a_project_json_with_an_unusable_value_is_restored_from_its_backup(tmp_path, keys, value, said):
    folder = tmp_path / "p"
    reviewed_project(folder)
    meta = folder / "project.json"
    meta.write_text(json.dumps(_with_value(json.loads(meta.read_text()), keys, value)))
    opened = ReviewProject.open(folder)
    ((path, reason),) = opened.damaged
    assert path == meta and reason.startswith(f"{meta} holds an unusable value: {said}")
    assert reason.endswith("it was restored from its backup, project.json.bak")
    assert opened.normalization == NORMALIZATION and opened.frame_shape == SHAPE
    assert opened.source_path == (tmp_path / "frames").resolve()


@pytest.mark.parametrize("keys, value, said", BAD_VALUES)
def test_a_project_json_with_an_unusable_value_and_no_backup_is_one_line_error(tmp_path, capsys, keys, value, said):
    folder = tmp_path / "p"
    reviewed_project(folder)
    meta = folder / "project.json"
    meta.write_text(json.dumps(_with_value(json.loads(meta.read_text()), keys, value)))
    (folder / "project.json.bak").unlink()
    with pytest.raises(ProjectError, match=f"^{meta} holds an unusable value: "):
        ReviewProject.open(folder)
    capsys.readouterr()
    for command in (["info", str(folder)], ["export", str(folder), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"{meta} holds an unusable value: {said}" in err


def test_an_unusable_normalisation_is_not_written(tmp_path):
    folder = tmp_path / "p"
    project = reviewed_project(folder)
    before = (folder / "project.json").read_bytes()
    with pytest.raises(ValueError, match="unusable normalisation {'mode': 'bogus'}: "):
        project.set_normalization({"mode": "bogus"})
    assert (folder / "project.json").read_bytes() == before and project.normalization == NORMALIZATION
