"""Two clips cut from one recording that overlap by a few frames are two sources: the second exports under its own
name, and the frames the data set already holds as the first's (the same pixels) are left out and named, so that
no frame is in the data set twice (maybe in both splits). A clip renamed with its project since, and maybe grown,
is still the same source (tests/test_export.py::test_frames_already_held_under_another_sequence_name_...)."""
import json

import cv2
import numpy as np
import pytest

import app.cli
from app.core.export import (
    ExportError,
    export_project,
    read_exported_dataset,
    sequence_name_for,
    shared_frame_reason,
)
from app.core.frames import frame_digest, frame_fingerprint, open_source
from app.core.project import ReviewProject
from tests.test_export import DETECTOR, NORMALIZATION, SHAPE, box, snapshot

_RNG = np.random.default_rng(7)
RECORDING = [_RNG.integers(800, 5200, SHAPE).astype(np.uint16) for _ in range(13)]


def clip(tmp_path, name, frames, folder=None):
    """A project over RECORDING's `frames`, files named by their index in the recording, each frame corrected."""
    folder = tmp_path / (folder or name)
    folder.mkdir(parents=True, exist_ok=True)
    for i in frames:
        cv2.imwrite(str(folder / f"{i:04d}.png"), RECORDING[i])
    source = open_source(folder)
    project = ReviewProject.create(tmp_path / f"{name}.irsam-review", source.path, source.kind, source.stems,
                                   source.shape, NORMALIZATION.to_dict(), DETECTOR, exist_ok=True)
    source.close()
    for stem in project.stems:
        project.commit_mask(stem, box(2 + int(stem) % 10, 3))
        project.set_status(stem, "corrected")
    return project


def held_twice(out):
    """Frames whose pixels the data set holds more than once, and the splits they are in."""
    meta = json.loads((out / "meta.json").read_text())["frames"]
    by_pixels = {}
    for stem, record in meta.items():
        by_pixels.setdefault(record["frame_sha1"], []).append((stem, record["split"]))
    return [held for held in by_pixels.values() if len(held) > 1]


def test_an_overlapping_clip_exports_its_own_frames_and_names_those_the_data_set_holds_as_the_other_s(
        tmp_path, capsys, monkeypatch):
    first, second = clip(tmp_path, "X", range(10)), clip(tmp_path, "Y", range(7, 13))
    out = tmp_path / "ds"
    export_project(first, out, "sirst", split="train")

    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    assert app.cli.main(["export", str(second.folder), "--out", str(out), "--append", "--split", "test"]) == 0
    printed = capsys.readouterr()
    assert ("3 frames not exported: the data set already holds their pixels as frames of another sequence"
            in printed.err)
    assert "0007 (as X_0007), 0008 (as X_0008), 0009 (as X_0009)" in printed.err
    assert "reject them in its project and export it again" in printed.err
    assert "exported 3 frames" in printed.out and f"3 {shared_frame_reason('X')}" in printed.out
    assert "already holds the frames of" not in printed.err  # not told that Y is X
    splits = {stem: split for stem, _, _, split in read_exported_dataset(out, "sirst")}
    assert splits == {**{f"X_{i:04d}": "train" for i in range(10)}, **{f"Y_{i:04d}": "test" for i in (10, 11, 12)}}
    assert held_twice(out) == []
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{s}.png" for s in splits)

    report = export_project(second, out, "sirst", split="test", append=True)  # again: the same, nothing removed
    assert report.exported == ["Y_0010", "Y_0011", "Y_0012"] and report.removed == []
    assert report.shared == [("0007", "X_0007"), ("0008", "X_0008"), ("0009", "X_0009")]
    assert dict(report.skipped) == {f"{i:04d}": shared_frame_reason("X") for i in (7, 8, 9)}

    # exporting Y under X's name would replace X's frames: refused, and says what works
    before = snapshot(out)
    with pytest.raises(ExportError, match=r"sequence name 'X' is already used .*export under another sequence name "
                                          r"\(frames the two share are then left out of this export, and named\)"):
        export_project(second, out, "sirst", split="test", append=True, sequence_name="X")
    assert snapshot(out) == before

    # the way the warning gives: leave them out of X, then export Y again
    for i in (7, 8, 9):
        first.set_status(f"{i:04d}", "rejected")
    assert export_project(first, out, "sirst", split="train", append=True).removed == ["X_0007", "X_0008", "X_0009"]
    report = export_project(second, out, "sirst", split="test", append=True)
    assert report.exported == [f"Y_{i:04d}" for i in range(7, 13)] and report.shared == []
    assert held_twice(out) == []
    # and X, exported again with them accepted, leaves them to Y now
    for i in (7, 8, 9):
        first.set_status(f"{i:04d}", "corrected")
    report = export_project(first, out, "sirst", split="train", append=True)
    assert len(report.exported) == 7 and [held for _, held in report.shared] == ["Y_0007", "Y_0008", "Y_0009"]
    assert held_twice(out) == []


def test_an_overlapping_clip_is_another_source_when_the_other_has_exported_only_the_shared_frames(tmp_path):
    """X holds recording frames 0-9, Y 7-12; X's analyst has reviewed and exported only 7-9 so far, the frames Y
    also holds. X's sequence then holds nothing but frames of Y's, with Y's pixels, yet it is not Y: X's clip is
    still where its records say, and holds frames Y has not. Y exports its own frames under its own name; were
    it taken for X, it would be told to export as 'X', replacing X's frames, and X would then be refused under
    its own name (a dead end)."""
    first, second = clip(tmp_path, "X", range(10)), clip(tmp_path, "Y", range(7, 13))
    for i in range(7):
        first.set_status(f"{i:04d}", "unreviewed")
    out = tmp_path / "ds"
    assert export_project(first, out, "sirst", split="train").exported == ["X_0007", "X_0008", "X_0009"]

    report = export_project(second, out, "sirst", split="test", append=True)
    assert report.exported == ["Y_0010", "Y_0011", "Y_0012"]
    assert report.shared == [("0007", "X_0007"), ("0008", "X_0008"), ("0009", "X_0009")]
    # nor may Y replace X's frames under X's name
    before = snapshot(out)
    with pytest.raises(ExportError, match=r"sequence name 'X' is already used .*export under another sequence name"):
        export_project(second, out, "sirst", split="test", append=True, sequence_name="X")
    assert snapshot(out) == before

    for i in range(7):  # X's analyst reviews the rest and exports X again, under its own name
        first.set_status(f"{i:04d}", "corrected")
    report = export_project(first, out, "sirst", split="train", append=True)
    assert report.exported == [f"X_{i:04d}" for i in range(10)] and report.shared == [] and report.removed == []
    splits = {stem: split for stem, _, _, split in read_exported_dataset(out, "sirst")}
    assert splits == {**{f"X_{i:04d}": "train" for i in range(10)}, **{f"Y_{i:04d}": "test" for i in (10, 11, 12)}}
    assert held_twice(out) == []


def test_a_clip_within_one_exported_exports_nothing_and_names_every_frame(tmp_path):
    export_project(clip(tmp_path, "X", range(10)), tmp_path / "ds", "dnanet")
    before = snapshot(tmp_path / "ds")
    report = export_project(clip(tmp_path, "part", range(3, 6)), tmp_path / "ds", "dnanet", split="test", append=True)
    assert report.exported == [] and [held for _, held in report.shared] == ["X_0003", "X_0004", "X_0005"]
    assert snapshot(tmp_path / "ds") == before


def test_a_clip_spanning_two_exported_ones_is_neither_but_can_replace_the_one_it_is_exported_as(tmp_path):
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "X", range(7)), out, "basicirstd")
    export_project(clip(tmp_path, "Y", range(7, 13)), out, "basicirstd", split="test", append=True)
    whole = clip(tmp_path, "Z", range(13))
    report = export_project(whole, out, "basicirstd", append=True)
    assert report.exported == [] and len(report.shared) == 13  # all held: as X's or Y's
    report = export_project(whole, out, "basicirstd", append=True, sequence_name="X")  # Z is X grown
    assert report.exported == [f"X_{i:04d}" for i in range(7)]
    assert [held for _, held in report.shared] == [f"Y_{i:04d}" for i in range(7, 13)]
    assert held_twice(out / "IRSAM-Review") == []


def test_a_clip_renamed_and_grown_since_is_still_the_same_source(tmp_path):
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "clipR1", range(6)), out, "sirst", split="train")
    (tmp_path / "clipR1").rename(tmp_path / "clipR2")
    for i in range(6, 9):  # frames extracted since
        cv2.imwrite(str(tmp_path / "clipR2" / f"{i:04d}.png"), RECORDING[i])
    moved = clip(tmp_path, "clipR2-again", [], folder="clipR2")  # detected again: a new project
    assert moved.stems == [f"{i:04d}" for i in range(9)]
    before = snapshot(out)
    with pytest.raises(ExportError, match=r"already holds the frames of .*clipR2 as sequence 'clipR1' .*export under "
                                          r"the sequence name 'clipR1' to replace them"):
        export_project(moved, out, "sirst", split="test", append=True)
    assert snapshot(out) == before  # not appended twice
    report = export_project(moved, out, "sirst", split="test", append=True, sequence_name="clipR1")
    assert report.exported == [f"clipR1_{i:04d}" for i in range(9)] and report.shared == []
    assert {split for *_, split in read_exported_dataset(out, "sirst")} == {"test"}


def test_a_frame_of_the_same_pixels_under_another_name_is_held_once(tmp_path):
    """A clip whose frames were extracted again under other names (0000.png as frame_0000.png) shares them all;
    a constant frame (no fingerprint: two sources may well share one) is not taken for another's."""
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "X", range(4)), out, "sirst")
    folder = tmp_path / "again"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), RECORDING[i])
    cv2.imwrite(str(folder / "frame_0004.png"), np.full(SHAPE, 1000, np.uint16))
    assert frame_fingerprint(np.full(SHAPE, 1000, np.uint16)) is None
    source = open_source(folder)
    again = ReviewProject.create(tmp_path / "again.irsam-review", source.path, source.kind, source.stems,
                                 source.shape, NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    for stem in again.stems:
        again.set_status(stem, "negative")
    report = export_project(again, out, "sirst", split="test", append=True)
    assert report.exported == ["again_frame_0004"] and len(report.shared) == 4


def fingerprinted_clip(tmp_path, name, folder):
    """A new project over the clip in `folder` (as `irsam detect` makes one): each frame corrected, its work
    recording the fingerprint (`frame_digest`) of the frame it was made on."""
    source = open_source(tmp_path / folder)
    project = ReviewProject.create(tmp_path / f"{name}.irsam-review", source.path, source.kind, source.stems,
                                   source.shape, NORMALIZATION.to_dict(), DETECTOR)
    for i, stem in enumerate(project.stems):
        sha1 = frame_digest(source.frame(i))
        project.commit_mask(stem, box(2 + int(stem) % 10, 3), frame_sha1=sha1)
        project.set_status(stem, "corrected", frame_sha1=sha1)
    source.close()
    return project


def test_a_clip_renamed_since_exports_under_its_earlier_name_without_being_told(tmp_path, capsys, monkeypatch):
    """--sequence's default is the name the data set already gives this source's frames: found by their values
    (those the new project recorded) when the clip was renamed and a new project made over it."""
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "clipA", range(6)), out, "sirst", split="train")
    (tmp_path / "clipA").rename(tmp_path / "clipB")
    # a project that recorded no fingerprints (made before them) cannot tell: the clip's own name, refused as before
    assert sequence_name_for(clip(tmp_path, "old", [], folder="clipB"), out, "sirst") == "clipB"
    moved = fingerprinted_clip(tmp_path, "clipB", "clipB")
    assert sequence_name_for(moved, out, "sirst") == "clipA"
    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    assert app.cli.main(["export", str(moved.folder), "--out", str(out), "--append"]) == 0
    assert "exported 6 frames" in capsys.readouterr().out
    assert [stem for stem, *_ in read_exported_dataset(out, "sirst")] == [f"clipA_{i:04d}" for i in range(6)]
    assert held_twice(out) == []


def test_a_clip_renamed_with_a_frame_replaced_since_replaces_that_frame_under_its_earlier_name(tmp_path):
    """The clip renamed and one frame replaced on disk, a new project made over it: every frame of the old
    sequence is one of this project's, all but the replaced one alike and the old source gone: the same source.
    The replaced frame's new mask (made on its new pixels) replaces its earlier export, under the same name."""
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "clipA", range(10)), out, "sirst", split="train")
    (tmp_path / "clipA").rename(tmp_path / "clipB")
    cv2.imwrite(str(tmp_path / "clipB" / "0003.png"), RECORDING[12])  # frame 0003 replaced by other pixels
    moved = fingerprinted_clip(tmp_path, "clipB", "clipB")
    assert sequence_name_for(moved, out, "sirst") == "clipA"
    report = export_project(moved, out, "sirst", split="train", append=True)
    assert report.exported == [f"clipA_{i:04d}" for i in range(10)] and report.shared == [] and report.removed == []
    meta = json.loads((out / "meta.json").read_text())["frames"]
    assert sorted(meta) == [f"clipA_{i:04d}" for i in range(10)]
    assert meta["clipA_0003"]["frame_sha1"] == frame_fingerprint(RECORDING[12])
    assert held_twice(out) == []
    report = export_project(moved, out, "sirst", split="train", append=True, sequence_name="clipA")  # told: the same
    assert len(report.exported) == 10 and report.shared == []


def test_a_copy_of_a_clip_with_a_frame_replaced_is_another_source_while_the_first_is_still_there(tmp_path):
    """The replaced frame is allowed only where the recorded source is gone: a copy edited beside the clip it was
    copied from is another clip, and the frames the two share are left out as before."""
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "clipA", range(6)), out, "sirst", split="train")
    copy = tmp_path / "clipC"
    copy.mkdir()
    for path in (tmp_path / "clipA").iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    cv2.imwrite(str(copy / "0003.png"), RECORDING[12])
    copied = fingerprinted_clip(tmp_path, "clipC", "clipC")
    assert sequence_name_for(copied, out, "sirst") == "clipC"
    report = export_project(copied, out, "sirst", split="test", append=True)
    assert report.exported == ["clipC_0003"] and len(report.shared) == 5
    assert held_twice(out) == []


def test_a_clip_of_the_same_names_mostly_other_pixels_is_another_source_though_the_first_is_gone(tmp_path):
    """Fewer frames alike than differ: not this clip with some frames replaced, another recording of the same
    frame names."""
    out = tmp_path / "ds"
    export_project(clip(tmp_path, "clipA", range(6)), out, "sirst", split="train")
    (tmp_path / "clipA").rename(tmp_path / "clipB")
    for i in range(1, 6):
        cv2.imwrite(str(tmp_path / "clipB" / f"{i:04d}.png"), RECORDING[i + 7])
    moved = fingerprinted_clip(tmp_path, "clipB", "clipB")
    assert sequence_name_for(moved, out, "sirst") == "clipB"
    report = export_project(moved, out, "sirst", split="test", append=True)
    assert report.exported == [f"clipB_{i:04d}" for i in range(1, 6)] and [s for s, _ in report.shared] == ["0000"]
