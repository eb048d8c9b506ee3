"""Export and import-labels over damaged inputs: a review.json that cannot be read, a malformed meta.json, frames
that cannot be exported (app.core.export, app.core.label_import, `irsam export`, `irsam import-labels`)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core.export import ExportError, export_project
from app.core.label_import import LabelImportError, import_labels
from app.core.project import ReviewProject, ReviewStatus

SHAPE = (24, 32)


def box(y, x, size=3):
    mask = np.zeros(SHAPE, bool)
    mask[y : y + size, x : x + size] = True
    return mask


def reviewed_project(tmp_path: Path) -> ReviewProject:
    """`irsam detect` over six frames (data/images, their masks in data/masks); im0 accepted, im1 rejected,
    im2 negative, im3 corrected to a mask of its own."""
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(6):
        image = np.full(SHAPE, 30, np.uint8)
        image[box(2 + 2 * i, 3 + 3 * i)] = 200
        cv2.imwrite(str(images / f"im{i}.png"), image)
        cv2.imwrite(str(masks / f"im{i}.png"), box(2 + 2 * i, 3 + 3 * i).astype(np.uint8) * 255)
    out = tmp_path / "project"
    assert main(["detect", str(images), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(out)
    project.set_status("im0", ReviewStatus.ACCEPTED)
    project.set_status("im1", ReviewStatus.REJECTED)
    project.set_status("im2", ReviewStatus.NEGATIVE)
    project.commit_mask("im3", box(0, 0))
    project.set_status("im3", ReviewStatus.CORRECTED)
    return project


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def damage_review_statuses(project: ReviewProject) -> None:
    for name in ("review.json", "review.json.bak"):
        (project.folder / name).write_text("{", encoding="utf-8")


def test_export_refuses_a_project_whose_review_statuses_cannot_be_read(tmp_path, capsys):
    project = reviewed_project(tmp_path)
    dataset = tmp_path / "ds"
    assert main(["export", str(project.folder), "--out", str(dataset)]) == 0
    before = files_of(dataset)
    damage_review_statuses(project)
    capsys.readouterr()

    assert main(["export", str(project.folder), "--out", str(dataset), "--append", "--include-unreviewed"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert str(project.folder / "review.json") in errors[0] and "restore review.json" in errors[0]
    assert "review the frames again" in errors[0]
    assert files_of(dataset) == before  # rejected im1 not exported, negative im2's empty mask kept
    with pytest.raises(ExportError, match="review statuses are not known, and such a frame reads as unreviewed"):  # the app's export dialog too
        export_project(ReviewProject.open(project.folder), tmp_path / "fresh", "sirst")
    assert not (tmp_path / "fresh").exists()


def test_a_backup_standing_in_for_a_damaged_review_json_lets_export_run(tmp_path, capsys):
    project = reviewed_project(tmp_path)
    (project.folder / "review.json").write_text("{", encoding="utf-8")
    assert main(["export", str(project.folder), "--out", str(tmp_path / "ds")]) == 0
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert {record["source_stem"] for record in meta["frames"].values()} == {"im0", "im2", "im3"}


def test_import_labels_replace_refuses_a_project_whose_review_statuses_cannot_be_read(tmp_path, capsys):
    project = reviewed_project(tmp_path)
    damage_review_statuses(project)
    labels_before = files_of(project.folder / "labels")
    capsys.readouterr()

    assert main(["import-labels", str(project.folder), "--replace"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(project.folder / "review.json") in errors[0]
    assert files_of(project.folder / "labels") == labels_before  # corrected im3 keeps its own mask
    with pytest.raises(LabelImportError):
        import_labels(ReviewProject.open(project.folder), lambda stem: box(0, 0), replace=True)


@pytest.mark.parametrize("sequence", [5, "../x"])
def test_a_malformed_meta_json_record_is_refused_as_unreadable(tmp_path, capsys, sequence):
    project = reviewed_project(tmp_path)
    dataset = tmp_path / "ds"
    assert main(["export", str(project.folder), "--out", str(dataset)]) == 0
    meta = json.loads((dataset / "meta.json").read_text())
    for record in meta["frames"].values():
        record["sequence"] = sequence
    (dataset / "meta.json").write_text(json.dumps(meta))
    before = files_of(dataset)
    capsys.readouterr()

    assert main(["export", str(project.folder), "--out", str(dataset), "--append"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {dataset / 'meta.json'} is unreadable (")
    assert err.endswith("; cannot append safely\n") and "sequence name" not in err
    assert files_of(dataset) == before


def test_export_names_the_frames_skipped_for_a_problem(tmp_path, capsys):
    project = reviewed_project(tmp_path)
    images = tmp_path / "data" / "images"
    project.set_status("im4", ReviewStatus.ACCEPTED)
    project.set_status("im5", ReviewStatus.ACCEPTED)
    (images / "im4.png").unlink()
    (images / "im5.png").write_bytes(b"not a png")
    (project.folder / "labels" / "im3.png").write_bytes(b"damaged")
    capsys.readouterr()

    assert main(["export", str(project.folder), "--out", str(tmp_path / "ds")]) == 0
    skipped = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped: "))
    assert "1 rejected" in skipped and "1 not in the source: im4" in skipped
    assert "1 unreadable frame: im5 (" in skipped and "1 damaged committed mask: im3" in skipped


def test_import_labels_a_refused_mask_beside_a_kept_one_is_no_failure(tmp_path, capsys):
    project = reviewed_project(tmp_path)
    for stem in ("im1", "im2", "im3"):
        project.set_status(stem, ReviewStatus.UNREVIEWED)
    masks = tmp_path / "other"
    masks.mkdir()
    cv2.imwrite(str(masks / "im3.png"), box(10, 10).astype(np.uint8) * 255)  # im3 keeps its own mask
    cv2.imwrite(str(masks / "im4.png"), np.zeros((10, 10), np.uint8))  # another size: refused
    capsys.readouterr()

    assert main(["import-labels", str(project.folder), "--masks", str(masks)]) == 0
    out, err = capsys.readouterr()
    assert "1 frame kept its own committed mask" in out and "refused im4: " in err and "error" not in err

    assert main(["import-labels", str(project.folder), "--masks", str(masks / "im3.png")]) == 2
    assert capsys.readouterr().err == f"error: --masks {masks / 'im3.png'}: a file, not a folder of masks\n"


def test_export_refuses_when_one_frames_status_is_lost_too(tmp_path, capsys):
    """review.json read entry by entry: one unreadable entry (and no backup) leaves that frame's status unknown,
    which could be a rejection: refused the same way."""
    import json

    project = reviewed_project(tmp_path)
    review = project.folder / "review.json"
    document = json.loads(review.read_text(encoding="utf-8"))
    stem = next(iter(document["frames"]))
    document["frames"][stem]["status"] = "bogus"
    review.write_text(json.dumps(document), encoding="utf-8")
    (project.folder / "review.json.bak").unlink()
    with pytest.raises(ExportError, match=f"{stem}: unknown status 'bogus'"):
        export_project(ReviewProject.open(project.folder), tmp_path / "fresh", "sirst")
    assert not (tmp_path / "fresh").exists()
