"""Export names its frames so that a split file line gives them back: the field's loaders (and model.data) strip
each line and drop an image extension, so a frame file "a .png" cannot be listed as "seq_a "."""
import json

import cv2
import numpy as np
import pytest

from app.core.export import ExportError, dataset_stem_names, export_project, listable_name, read_exported_dataset
from app.core.frames import open_source
from app.core.project import ReviewProject
from model.data import find_dataset, read_split, split_line_stem
from tests.test_export import DETECTOR, NORMALIZATION, SHAPE, box, snapshot


def _project(tmp_path, names, name="seq"):
    folder = tmp_path / name
    folder.mkdir()
    rng = np.random.default_rng(3)
    for file_name in names:
        cv2.imwrite(str(folder / file_name), rng.integers(800, 5200, SHAPE).astype(np.uint16))
    source = open_source(folder)
    project = ReviewProject.create(tmp_path / f"{name}.irsam-review", source.path, source.kind, source.stems,
                                   source.shape, NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    masks = {}
    for i, stem in enumerate(project.stems):
        masks[stem] = box(2 + i, 3 + i)
        project.commit_mask(stem, masks[stem])
        project.set_status(stem, "corrected")
    return project, masks


@pytest.mark.parametrize("layout", ["sirst", "basicirstd", "dnanet"])
def test_frames_named_with_spaces_at_either_end_or_an_image_extension_export_as_names_a_split_file_keeps(
        tmp_path, layout):
    project, masks = _project(tmp_path, ["a .png", " b.png", "c.tif.png", "d.png", "e  .png"])
    report = export_project(project, tmp_path / "out", layout)
    names = dict(zip(project.stems, report.exported))
    assert names == {"a ": "seq_a_", " b": "seq_ b", "c.tif": "seq_c_tif", "d": "seq_d", "e  ": "seq_e__"}
    exported = {stem: mask for stem, _, mask, _ in read_exported_dataset(tmp_path / "out", layout)}
    assert list(exported) == report.exported  # as training and eval read it (model.data), every frame found
    for stem, name in names.items():
        np.testing.assert_array_equal(exported[name], masks[stem])
    meta = json.loads(next((tmp_path / "out").rglob("meta.json")).read_text())
    assert {record["source_stem"] for record in meta["frames"].values()} == set(project.stems)  # provenance kept


def test_two_frames_that_would_take_one_name_are_refused_and_nothing_written(tmp_path):
    project, _ = _project(tmp_path, ["a .png", "a_.png", "b.png"])
    with pytest.raises(ExportError, match=r"frames .*'a '.*'a_'.* same name seq_a_: .*rename one of the frame files"):
        export_project(project, tmp_path / "out", "sirst")
    assert not (tmp_path / "out").exists()
    project.set_status("a_", "rejected")  # the way out the message gives
    assert export_project(project, tmp_path / "out", "sirst").exported == ["seq_a_", "seq_b"]
    project.set_status("a ", "rejected")
    project.set_status("a_", "corrected")  # the other one instead: it replaces the first
    report = export_project(project, tmp_path / "out", "sirst", append=True)
    assert report.exported == ["seq_a_", "seq_b"] and report.removed == []
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["frames"]["seq_a_"]["source_stem"] == "a_"


def test_a_data_set_exported_under_the_unlistable_names_is_mended_by_an_append(tmp_path, monkeypatch):
    """Exported as "seq_a " before (its split line read back as "seq_a", found by no loader): an append exports
    the frame as seq_a_ and removes the old files and split line."""
    import app.core.export as export_module

    project, masks = _project(tmp_path, ["a .png", "b.png"])
    out = tmp_path / "out"
    monkeypatch.setattr(export_module, "listable_name", lambda name: name)  # the earlier rule
    assert export_project(project, out, "sirst").exported == ["seq_a ", "seq_b"]
    monkeypatch.undo()
    assert read_split(out / "trainval.txt") == ["seq_a", "seq_b"]  # what the loaders saw

    report = export_project(project, out, "sirst", append=True)
    assert report.exported == ["seq_a_", "seq_b"] and report.removed == ["seq_a "]
    assert (out / "trainval.txt").read_text() == "seq_a_\nseq_b\n"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["seq_a_.png", "seq_b.png"]
    samples = find_dataset(out / "images", out / "masks", out / "trainval.txt")
    assert [s.stem for s in samples] == ["seq_a_", "seq_b"]
    assert set(json.loads((out / "meta.json").read_text())["frames"]) == {"seq_a_", "seq_b"}
    before = snapshot(out)
    assert export_project(project, out, "sirst", append=True).exported == ["seq_a_", "seq_b"]
    assert set(snapshot(out)) == set(before)


@pytest.mark.parametrize("name", ["trail ", " lead", "two\nlines", "tab\tin", "nb\u00a0", "para\u2029graph",
                                  "x.PNG", "x.tif", "bom\ufeff", "plain", "dots.in.it", "x.png.png", "  "])
def test_a_listable_name_reads_back_from_a_split_file_as_written(name, tmp_path):
    listed = listable_name(name)
    assert listed == listable_name(listed)
    split = tmp_path / "split.txt"
    split.write_text(f"{listed}\n", encoding="utf-8")
    assert read_split(split) == [listed] and split_line_stem(listed) == listed
    assert (listed == name) == (name in ("plain", "dots.in.it"))


def test_the_dialog_s_preview_shows_the_listable_name():
    assert dataset_stem_names("seq", ["a "], ["a "], {}) == {"a ": "seq_a_"}
