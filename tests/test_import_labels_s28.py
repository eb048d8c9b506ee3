"""`irsam import-labels` from an irsam export, its counts and its --masks messages; and the export messages the same
audit found wrong (a count of 1, unreadable frames described as frames without a proposal).

An export names its masks after the data set's frames (<sequence>_<frame>) and records each one's sequence and
source frame in meta.json: import-labels matches the frames of the project's source by those records, and refuses
an export of other sequences only, saying so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from app.cli import main
from app.core.export import export_project
from app.core.label_import import import_labels
from app.core.project import ReviewProject
from tests.test_export import DETECTOR, NORMALIZATION, reviewed_project, snapshot


def exported_masks_of(out: Path) -> dict[str, np.ndarray]:
    """Source frame -> the mask the export at `out` holds for it, read back through meta.json."""
    import cv2

    records = json.loads((out / "meta.json").read_text())["frames"]
    return {record["source_stem"]: cv2.imread(str(out / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
            for name, record in records.items()}


def fresh_project(project: ReviewProject, folder: Path) -> ReviewProject:
    """A new review project over `project`'s source, every frame unreviewed with nothing committed."""
    return ReviewProject.create(folder, project.source_path, project.source_kind, project.stems,
                                project.frame_shape, NORMALIZATION.to_dict(), DETECTOR)


def test_a_project_takes_the_masks_of_an_export_of_its_own_source(tmp_path, capsys):
    """The audit's case: "no mask file ... is named after one of the unreviewed frames ... the folder holds names
    such as 'IR_DRONE_146_000001.png'". Frames: 0 accepted, 1 corrected, 2 negative, 3 rejected, 4 unreviewed,
    5 accepted; exported with the unreviewed one (its prediction), so frame 3 alone has no mask there."""
    project = reviewed_project(tmp_path)[0]
    out = tmp_path / "ds"
    export_project(project, out, "sirst", include_unreviewed=True)
    exported = exported_masks_of(out)
    assert sorted(exported) == [project.stems[i] for i in (0, 1, 2, 4, 5)]
    capsys.readouterr()

    assert main(["import-labels", str(project.folder), "--masks", str(out / "masks")]) == 0
    printed = capsys.readouterr().out
    # the reviewed frames with a mask there are left alone; the rejected one without is not counted among them
    assert printed == (f"{project.folder}: 1 mask committed, 4 reviewed frames left alone (masks from {out / 'masks'}: "
                       "an irsam export: its frames of sequence 'seqA', this project's source, matched to the "
                       f"project's frames by the source frame names {out / 'meta.json'} records)\n")
    unreviewed = project.stems[4]
    np.testing.assert_array_equal(ReviewProject.open(project.folder).committed_mask(unreviewed), exported[unreviewed])

    # a new project over the same source, given the data set folder itself: every exported frame's mask
    again = fresh_project(project, tmp_path / "again.irsam-review")
    assert main(["import-labels", str(again.folder), "--masks", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{again.folder}: 5 masks committed, 1 frame without a mask (masks "
                                              f"from {out / 'masks'}: an irsam export: its frames of sequence 'seqA'")
    opened = ReviewProject.open(again.folder)
    for stem, mask in exported.items():
        np.testing.assert_array_equal(opened.committed_mask(stem), mask)
    assert not opened.has_committed_mask(project.stems[3])


def test_only_the_frames_of_the_project_s_sequence_are_taken_and_the_others_are_counted(tmp_path, capsys):
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]  # the same frame names, other pixels
    out = tmp_path / "ds"
    export_project(first, out, "sirst", include_unreviewed=True)
    export_project(second, out, "sirst", append=True, split="test")  # 4 frames: its unreviewed one left out
    exported = exported_masks_of(out)
    capsys.readouterr()

    again = fresh_project(first, tmp_path / "again.irsam-review")
    assert main(["import-labels", str(again.folder), "--masks", str(out / "masks")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{again.folder}: 5 masks committed, 1 frame without a mask")
    assert printed.endswith("its frames of sequence 'seqA', this project's source, matched to the project's frames by "
                            f"the source frame names {out / 'meta.json'} records; its 4 frames of other sequences "
                            "left out)\n")
    records = json.loads((out / "meta.json").read_text())["frames"]
    opened = ReviewProject.open(again.folder)
    for name, record in records.items():
        if record["sequence"] == "seqA":
            mask = opened.committed_mask(record["source_stem"])
            np.testing.assert_array_equal(mask, exported[record["source_stem"]])


def test_an_export_of_another_sequence_only_is_refused_and_nothing_is_committed(tmp_path, capsys):
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]
    out = tmp_path / "ds"
    export_project(first, out, "sirst")
    project = fresh_project(second, tmp_path / "b.irsam-review")
    before = snapshot(project.folder)
    capsys.readouterr()
    assert main(["import-labels", str(project.folder), "--masks", str(out / "masks")]) == 2
    assert capsys.readouterr().err == (
        f"error: --masks {out / 'masks'}: {out} is an irsam export of sequence 'seqA' (from {first.source_path}), not "
        f"of this project's source {second.source_path}: its masks are of other frames. Nothing was committed: import "
        "from an export of this source, or from a folder of masks named after the project's frames\n")
    assert snapshot(project.folder) == before


def test_a_plain_folder_of_masks_beside_another_tool_s_meta_json_is_read_by_frame_name(tmp_path, capsys):
    project = reviewed_project(tmp_path)[0]
    project = fresh_project(project, tmp_path / "fresh.irsam-review")
    folder = tmp_path / "truth"
    (folder / "masks").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"format": "some-other-tool/2", "frames": {}}))
    import cv2

    cv2.imwrite(str(folder / "masks" / f"{project.stems[0]}.png"), np.full(project.frame_shape, 255, np.uint8))
    assert main(["import-labels", str(project.folder), "--masks", str(folder / "masks")]) == 0
    assert capsys.readouterr().out == (f"{project.folder}: 1 mask committed, 5 frames without a mask (masks from "
                                       f"{folder / 'masks'})\n")


def test_reviewed_frames_left_alone_are_those_with_a_mask_in_the_folder(tmp_path):
    """The audit: "27 reviewed frames left alone" where 2 of the 27 (rejected) had no mask in the folder."""
    project, _, _, predicted = reviewed_project(tmp_path)
    masks = {stem: predicted[i] for i, stem in enumerate(project.stems) if i != 3}  # none for the rejected frame 3
    report = import_labels(project, masks.get)
    assert report.reviewed == [project.stems[i] for i in (0, 1, 2, 5)]
    assert report.imported == [project.stems[4]] and report.missing == []
    assert report.summary() == "1 mask committed, 4 reviewed frames left alone"


def test_a_bad_masks_folder_is_named_by_its_option(tmp_path, capsys):
    project = reviewed_project(tmp_path)[0]
    capsys.readouterr()
    assert main(["import-labels", str(project.folder), "--masks", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"error: --masks {tmp_path / 'nowhere'}: no such folder\n"
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["import-labels", str(project.folder), "--masks", str(tmp_path / "a.png")]) == 2
    assert capsys.readouterr().err == f"error: --masks {tmp_path / 'a.png'}: a file, not a folder of masks\n"


def test_export_counts_one_frame_as_one(tmp_path, capsys):
    """"kept the earlier export of 1 frames" (the audit); the one frame named without "e.g."."""
    project = reviewed_project(tmp_path)[0]
    out = tmp_path / "ds"
    assert main(["export", str(project.folder), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"exported 4 frames to {out} (sirst, train)")
    shutil.move(str(project.source_path / f"{project.stems[0]}.png"), str(tmp_path / "away.png"))
    project.set_status(project.stems[1], "rejected")
    assert main(["export", str(project.folder), "--out", str(out), "--append"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"exported 2 frames to {out} (sirst, train)")
    assert "removed 1 frame of an earlier export of this sequence (no longer selected)" in printed
    assert (f"kept the earlier export of 1 frame that cannot be read now (seqA_{project.stems[0]}: not in the "
            "source); restore it and export again to update it") in printed


def test_export_says_that_frames_without_a_proposal_cannot_be_read(tmp_path, capsys):
    """`export --include-unreviewed` described frames detect could not read as "unreviewed but no prediction or
    committed mask"."""
    project = reviewed_project(tmp_path)[0]
    unreadable, unproposed = project.stems[4], project.stems[3]
    project.set_status(unproposed, "unreviewed")
    for stem in (unreadable, unproposed):
        (project.folder / "masks" / f"{stem}.png").unlink()  # no proposal, as detect leaves a frame it skipped
    (project.source_path / f"{unreadable}.png").write_bytes(b"not a PNG")
    capsys.readouterr()
    out = tmp_path / "ds"
    assert main(["export", str(project.folder), "--out", str(out), "--include-unreviewed"]) == 0
    skipped = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped: "))
    assert skipped.startswith(f"skipped: 1 unreviewed but no prediction or committed mask: {unproposed}; "
                              f"1 unreadable frame: {unreadable} (")
