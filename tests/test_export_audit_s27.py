"""Audit s27: an export into a folder holding a data set of another layout, and an export into a review project's
own folders (its masks/), were accepted; real IR_DRONE_146 frames, detected by `irsam detect`."""
from __future__ import annotations

import shutil
from itertools import permutations
from pathlib import Path

import pytest

from app.cli import main
from app.core.export import ExportError, export_project, read_exported_dataset
from app.core.project import ReviewProject

CLIP = Path("/work/shared/data/sequences/IR_DRONE_146/images")
NUAA = Path("/work/shared/data/nuaa-sirst")
LAYOUTS = ("sirst", "basicirstd", "dnanet")


@pytest.fixture
def project(tmp_path) -> ReviewProject:
    """A review project over four real frames, made by `irsam detect`, its frames all unreviewed."""
    frames = tmp_path / "clip" / "images"
    frames.mkdir(parents=True)
    for path in sorted(CLIP.glob("*.png"))[:4]:
        shutil.copy(path, frames / path.name)
    assert main(["detect", str(frames), "--out", str(tmp_path / "d_int"), "--method", "tophat", "--quiet"]) == 0
    return ReviewProject.open(tmp_path / "d_int")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("first", "second"), list(permutations(LAYOUTS, 2)))
def test_an_export_into_a_data_set_of_another_layout_is_refused_before_anything_is_written(project, tmp_path,
                                                                                            first, second):
    """A basicirstd export into a sirst data set made IRSAM-Review/ inside it: one frame then sat in both data
    sets, on both sides of the split; the reverse (sirst or dnanet into a folder holding a BasicIRSTD data set)
    too."""
    out = tmp_path / "x"
    export_project(project, out, first, include_unreviewed=True)
    before = tree(tmp_path)
    for append in (True, False):
        with pytest.raises(ExportError, match=rf"^{out} holds a {first} data set \(.*\), not {second}: nothing was "
                                              rf"written; export in the {first} layout to add to it, or into another "
                                              "folder$"):
            export_project(project, out, second, include_unreviewed=True, append=append)
    assert tree(tmp_path) == before


def test_the_audit_s_commands_leave_no_frame_in_both_splits(project, tmp_path, capsys):
    export = ["export", str(project.folder), "--out", str(tmp_path / "x_sirst"), "--include-unreviewed"]
    assert main(export) == 0
    capsys.readouterr()
    assert main([*export, "--append", "--layout", "basicirstd"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'x_sirst'} holds a sirst data set")
    assert not (tmp_path / "x_sirst" / "IRSAM-Review").exists()
    assert main([*export, "--append", "--split", "test"]) == 0
    samples = read_exported_dataset(tmp_path / "x_sirst", "sirst")
    assert sorted(split for *_, split in samples) == ["test"] * 4


def test_a_basicirstd_export_into_a_basicirstd_data_set_s_own_folder_is_refused(project, tmp_path):
    out = tmp_path / "bas"
    export_project(project, out, "basicirstd", include_unreviewed=True)
    export_project(project, out, "basicirstd", include_unreviewed=True, dataset_name="Other")  # beside it: fine
    before = tree(tmp_path)
    with pytest.raises(ExportError, match=rf"{out / 'IRSAM-Review'} is the folder of a basicirstd data set, .*: "
                                          rf"nothing was written; to add to it, export into {out} with the data set "
                                          "name 'IRSAM-Review'"):
        export_project(project, out / "IRSAM-Review", "basicirstd", include_unreviewed=True, append=True)
    assert tree(tmp_path) == before


def test_a_published_sirst_takes_a_sirst_append_only(project, tmp_path):
    """NUAA-SIRST as published (images/, masks/, idx_427/ with its split files): a dnanet export into it would
    list this sequence in 50_50/ only, and record the data set as dnanet."""
    published = tmp_path / "nuaa"
    stems = [Path(line).stem for line in (NUAA / "splits" / "idx_427" / "test.txt").read_text().split()[:2]]
    for folder in ("images", "masks"):
        (published / folder).mkdir(parents=True)
        for stem in stems:
            shutil.copy(NUAA / folder / f"{stem}.png", published / folder / f"{stem}.png")
    (published / "idx_427").mkdir()
    (published / "idx_427" / "test.txt").write_text("".join(f"{stem}\n" for stem in stems))
    before = tree(tmp_path)
    with pytest.raises(ExportError, match=rf"holds a sirst data set \({published / 'idx_427'}\), not dnanet"):
        export_project(project, published, "dnanet", include_unreviewed=True, append=True)
    assert tree(tmp_path) == before
    report = export_project(project, published, "sirst", include_unreviewed=True, append=True)
    assert len(report.exported) == 4


@pytest.mark.parametrize("inside", ["masks", "masks/deeper", "labels", "", "elsewhere"])
def test_an_export_inside_a_review_project_is_refused_but_in_its_finetune_folder(project, tmp_path, inside):
    """`--out PROJECT/masks` wrote images/, masks/, trainval.txt and meta.json among the project's proposals; a
    basicirstd export into PROJECT made PROJECT/IRSAM-Review."""
    before = tree(tmp_path)
    for layout in LAYOUTS:
        out = project.folder / inside
        with pytest.raises(ExportError, match=rf"would put the exported frames into a review project "
                                              rf"\({project.folder.resolve()}\): choose a folder outside it"):
            export_project(project, out, layout, include_unreviewed=True)
    assert tree(tmp_path) == before
    report = export_project(project, project.folder / "finetune" / "run" / "data", "sirst", include_unreviewed=True)
    assert len(report.exported) == 4


def test_an_export_inside_another_review_project_or_the_frames_folder_is_refused(project, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["detect", str(tmp_path / "clip" / "images"), "--out", str(other), "--method", "tophat",
                 "--quiet"]) == 0
    capsys.readouterr()
    before = tree(tmp_path)
    assert main(["export", str(project.folder), "--out", str(other / "masks"), "--include-unreviewed"]) == 2
    assert capsys.readouterr().err == (f"error: {other / 'masks'} would put the exported frames into a review "
                                       f"project ({other.resolve()}): choose a folder outside it\n")
    with pytest.raises(ExportError, match="into the sequence's frames folder"):
        export_project(project, tmp_path / "clip" / "images" / "a" / "b", "sirst", include_unreviewed=True)
    assert tree(tmp_path) == before
