import csv
import json
import os
import stat
from dataclasses import replace

import numpy as np
import pytest

import app.commands.demo
from app.cli import main
from app.core.frames import read_gray
from app.core.project import project_dir_for
from app.core.synthetic import DEMO_CONFIG, iter_frames

SIZE = ["--width", "48", "--height", "40"]


def make_demo(folder, *options) -> int:
    return main(["make-demo", str(folder), *SIZE, *options])


def tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_earlier_demo_is_replaced_whole(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "12") == 0
    assert make_demo(demo, "--frames", "3", "--seed", "5") == 0
    assert "replacing the earlier demo" in capsys.readouterr().out
    stems = ["000001", "000002", "000003"]
    assert sorted(p.stem for p in (demo / "images").iterdir()) == stems
    assert sorted(p.stem for p in (demo / "masks").iterdir()) == stems
    with open(demo / "targets.csv", newline="") as f:
        assert {row["stem"] for row in csv.DictReader(f)} <= set(stems)
    frames = iter_frames(replace(DEMO_CONFIG, n_frames=3, height=40, width=48), 5)
    for stem, frame in zip(stems, frames):
        np.testing.assert_array_equal(read_gray(demo / "images" / f"{stem}.png"), frame.frame)
    assert json.loads((demo / "demo.json").read_text())["seed"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary or set-aside folder left


def test_tiff_demo_replaced_by_a_folder_demo_leaves_no_stack(tmp_path):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2", "--tiff") == 0
    assert (demo / "stack.tif").is_file()
    assert make_demo(demo, "--frames", "2") == 0
    assert sorted(p.name for p in demo.iterdir()) == ["demo.json", "images", "masks", "targets.csv"]
    assert sorted(p.name for p in (demo / "masks").iterdir()) == ["000001.png", "000002.png"]


@pytest.mark.parametrize("layout", [[], ["--tiff"]])
# what make-demo writes, in name and kind, but not with these settings: only its own frame stems count
@pytest.mark.parametrize("stray", ["notes.txt", "images/notes.txt", "masks/.DS_Store", "my_recording.tif",
                                   "images/zz_mine.png", "masks/000003.png", "masks/stack_000003.png"])
def test_folder_with_files_make_demo_did_not_write_is_refused(tmp_path, capsys, stray, layout):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2", *layout) == 0
    (demo / stray).parent.mkdir(exist_ok=True)
    (demo / stray).write_text("the analyst's")
    before = tree(demo)
    capsys.readouterr()
    assert make_demo(demo, "--frames", "3", *layout) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"but also {stray}, which make-demo did not write" in err
    assert "choose a new or empty folder" in err
    assert tree(demo) == before and [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_a_refusal_names_a_few_of_the_foreign_files(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2", "--tiff") == 0
    for name in ("a.tif", "b.tif", "c.tif", "d.tif"):
        (demo / name).write_bytes((demo / "stack.tif").read_bytes())
    (demo / "images").mkdir()  # an empty images/ folder is harmless
    before = tree(demo)
    capsys.readouterr()
    assert make_demo(demo, "--frames", "2", "--tiff") == 2
    assert "but also a.tif, b.tif, c.tif and 1 more, which make-demo did not write" in capsys.readouterr().err
    assert tree(demo) == before


def test_a_marker_that_names_no_frames_is_no_demo(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2") == 0
    (demo / "demo.json").write_text(json.dumps({"config": {}, "seed": 7}))
    before = tree(demo)
    assert make_demo(demo, "--frames", "2") == 2
    assert "holds a damaged demo.json (not the settings of an earlier make-demo sequence)" in capsys.readouterr().err
    assert tree(demo) == before


def test_folder_that_is_no_demo_is_refused(tmp_path, capsys):
    folder = tmp_path / "flight"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "000001.png").write_bytes(b"a real frame")
    assert make_demo(folder, "--frames", "2") == 2
    err = capsys.readouterr().err
    assert err == f"error: {folder}: not empty, and holds no demo.json of an earlier make-demo sequence; " \
                  "choose a new or empty folder\n"
    assert tree(folder) == {"images/000001.png": b"a real frame"}
    (tmp_path / "file").write_text("x")
    assert make_demo(tmp_path / "file") == 2 and "not a folder" in capsys.readouterr().err


def test_new_folder_follows_the_umask_and_an_empty_one_keeps_its_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        assert make_demo(tmp_path / "new", "--frames", "1") == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o755
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o750)
    assert make_demo(empty, "--frames", "1") == 0
    assert (empty / "images" / "000001.png").is_file() and stat.S_IMODE(empty.stat().st_mode) == 0o750


def test_review_project_over_the_earlier_demo_is_set_aside(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2") == 0
    project = tmp_path / "demo.irsam-review"
    (project / "labels").mkdir(parents=True)
    (project / "labels" / "000001.png").write_bytes(b"an analyst's mask")
    assert make_demo(demo, "--frames", "2", "--seed", "3") == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("demo.irsam-review.old-")]
    assert not project.exists() and len(kept) == 1
    assert (kept[0] / "labels" / "000001.png").read_bytes() == b"an analyst's mask"
    assert f"kept as {kept[0]}" in capsys.readouterr().out


def test_review_projects_inside_the_earlier_demo_are_set_aside_beside_it(tmp_path, capsys):
    """CLI audit 24: the app keeps the project of a demo's stack.tif (or images/) inside the demo folder, and
    make-demo refused to replace the demo ("holds an earlier demo, but also stack.tif.irsam-review, ..."), where its
    help says such a project is renamed aside."""
    for layout in ("--tiff", None):
        demo = tmp_path / f"demo{layout or ''}"
        assert make_demo(demo, "--frames", "2", *([layout] if layout else [])) == 0
        source = demo / ("stack.tif" if layout else "images")
        project = project_dir_for(source)
        assert project.parent == demo
        (project / "labels").mkdir(parents=True)
        (project / "labels" / "stack_000001.png").write_bytes(b"an analyst's mask")
        capsys.readouterr()
        assert make_demo(demo, "--frames", "3", *([layout] if layout else [])) == 0
        kept = [p for p in tmp_path.iterdir() if p.name.startswith(f"{demo.name}.{project.name}.old-")]
        assert len(kept) == 1 and not project.exists()
        assert (kept[0] / "labels" / "stack_000001.png").read_bytes() == b"an analyst's mask"
        assert f"kept as {kept[0]}" in capsys.readouterr().out
        assert json.loads((demo / "demo.json").read_text())["config"]["n_frames"] == 3


def test_a_failed_replace_puts_the_earlier_demos_projects_back(tmp_path, monkeypatch, capsys):
    """Diff review 24: the projects were set aside before the demo was replaced; when that failed, the earlier demo
    stayed but its review work was elsewhere, unnamed."""
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2") == 0
    projects = [project_dir_for(demo), project_dir_for(demo / "images")]
    for project in projects:
        (project / "labels").mkdir(parents=True)
        (project / "labels" / "000001.png").write_bytes(b"an analyst's mask")

    def refuse(new, out):
        raise PermissionError(13, "Permission denied (simulated)")

    monkeypatch.setattr(app.commands.demo, "_replace_folder", refuse)
    assert make_demo(demo, "--frames", "3") == 2
    for project in projects:
        assert (project / "labels" / "000001.png").read_bytes() == b"an analyst's mask"
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]
    assert json.loads((demo / "demo.json").read_text())["config"]["n_frames"] == 2


def test_failed_write_keeps_the_earlier_demo(tmp_path, monkeypatch, capsys):
    demo = tmp_path / "demo"
    assert make_demo(demo, "--frames", "2") == 0
    before = tree(demo)
    real_write = app.commands.demo.write_sequence

    def write_until_full(frames, out, layout):
        real_write(list(frames)[:1], out, layout=layout)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(app.commands.demo, "write_sequence", write_until_full)
    assert make_demo(demo, "--frames", "5") == 2
    assert capsys.readouterr().err == f"error: {demo}: [Errno 28] No space left on device\n"
    assert tree(demo) == before and [p.name for p in tmp_path.iterdir()] == ["demo"]
