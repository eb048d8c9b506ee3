"""An export cut short (kill -9, a power cut) leaves its temporary files (.<target>.<random>.tmp) in the data set:
the next export into it removes them, holding the data set's lock so that it never removes those of an export
that is writing now, and touching no other file."""
import errno
import fcntl
import os
import time

import pytest

import app.cli
from app.core.export import EXPORT_LOCK, ExportError, export_project, read_exported_dataset
from tests.test_export import reviewed_project, snapshot

# a killed export's files, one per folder an export writes in (sirst layout: split files and meta.json in the root)
LEFT = ["images/.seqA_0000.png.k3j9x_a1.tmp", "masks/.seqA_0001.png.0abcdefg.tmp", "raw/.seqA_0000.tif.zzzzzzzz.tmp",
        "labels/.seqA_0005.txt.q1w2e3r4.tmp", "annotations/.instances_test.json.abcd1234.tmp",
        ".meta.json.mnbvcxz9.tmp", ".trainval.txt.__abc_12.tmp", ".test.txt.a0b1c2d3.tmp"]
# not an export's: another program's, or not of model.atomic's naming, or not a file an export writes there
OTHERS = [".notes.txt.abcdefgh.tmp", "images/.seqA_0000.png.tmp", "images/keep.tmp", "images/.x.jpg.abcdefgh.tmp",
          "masks/.seqA_0001.png.ABCDEFGH.tmp", "labels/.x.png.abcdefgh.tmp", "annotations/.other.json.abcdefgh.tmp",
          "mine/.meta.json.abcdefgh.tmp", ".seqA_0000.png.abcdefgh.tmp"]


def _leave(out, names, age_s=0.0):
    for name in names:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
        if age_s:
            then = time.time() - age_s
            os.utime(path, (then, then))


def test_an_export_removes_the_temporary_files_a_killed_export_left_and_no_other(tmp_path, capsys, monkeypatch):
    project = reviewed_project(tmp_path)[0]
    out = tmp_path / "ds"
    export_project(project, out, "sirst")
    _leave(out, LEFT + OTHERS)
    (out / "images" / ".linked.png.abcdefgh.tmp").symlink_to(tmp_path / "seqA" / f"{project.stems[0]}.png")
    (out / "masks" / ".dir.png.abcdefgh.tmp").mkdir()
    others = {p: b for p, b in snapshot(out).items() if p not in LEFT}

    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    assert app.cli.main(["export", str(project.folder), "--out", str(out), "--append"]) == 0
    assert f"removed {len(LEFT)} temporary files that an export cut short had left" in capsys.readouterr().out
    after = snapshot(out)
    assert not set(LEFT) & set(after)
    # every other file as it was (meta.json aside: the append records when it exported each frame, to the second)
    assert {p: after[p] for p in others if p != "meta.json"} == {p: b for p, b in others.items() if p != "meta.json"}
    assert (out / "images" / ".linked.png.abcdefgh.tmp").is_symlink() and (out / "masks" / ".dir.png.abcdefgh.tmp").is_dir()
    assert not (out / EXPORT_LOCK).exists()  # held only while the export runs
    assert len(read_exported_dataset(out, "sirst")) == 4

    _leave(out, LEFT[:2])
    report = export_project(project, out, "sirst", append=True)
    assert report.temporary_removed == sorted(LEFT[:2])


def test_an_export_writing_now_holds_the_data_set_and_its_temporary_files_stay(tmp_path):
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]
    out = tmp_path / "ds"
    export_project(first, out, "sirst")
    refusals = []

    def progress(done, total):  # the second export, while the first writes its frames
        if done == 2:
            held = set(snapshot(out))
            with pytest.raises(ExportError,
                               match=rf"another export \(pid {os.getpid()}\) is writing into {out} now.*nothing was written"):
                export_project(second, out, "sirst", split="test", append=True)
            refusals.append(set(snapshot(out)) == held)

    report = export_project(first, out, "sirst", append=True, progress=progress)
    assert refusals == [True] and report.temporary_removed == []  # the first one's own files were not touched
    assert not (out / EXPORT_LOCK).exists()
    assert export_project(second, out, "sirst", split="test", append=True).exported  # once it has finished
    assert len(read_exported_dataset(out, "sirst")) == 8

    # a process holding the lock (another export now): its temporary files are not removed, nothing is written
    _leave(out, LEFT[:1])
    fd = os.open(out / EXPORT_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = snapshot(out)
        with pytest.raises(ExportError, match=r"another export is writing"):  # it wrote no pid into the file
            export_project(first, out, "sirst", append=True)
        assert snapshot(out) == before
    finally:
        os.close(fd)
    # the lock file of a killed export (unlocked) does not hold the data set
    assert export_project(first, out, "sirst", append=True).temporary_removed == LEFT[:1]
    assert not (out / EXPORT_LOCK).exists()


def test_without_locks_only_temporary_files_older_than_an_hour_are_removed(tmp_path, monkeypatch):
    project = reviewed_project(tmp_path)[0]
    out = tmp_path / "ds"
    export_project(project, out, "sirst")
    _leave(out, LEFT[:2], age_s=2 * 3600)
    _leave(out, LEFT[2:4], age_s=60)  # maybe an export writing now, on a file system without locks

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    report = export_project(project, out, "sirst", append=True)
    assert report.exported and report.temporary_removed == sorted(LEFT[:2])
    assert all((out / name).exists() for name in LEFT[2:4])
    assert not (out / EXPORT_LOCK).exists()  # not ours to remove, but none was made either
    monkeypatch.undo()


def test_the_lock_leaves_nothing_behind_when_nothing_is_written(tmp_path):
    project = reviewed_project(tmp_path)[0]
    for i in (0, 1, 2, 5):  # selected, but unreadable
        (tmp_path / "seqA" / f"{project.stems[i]}.png").write_bytes(b"not a png")
    report = export_project(project, tmp_path / "sets" / "ds", "basicirstd")
    assert report.exported == [] and len(report.skipped) == 6
    assert not (tmp_path / "sets").exists()


def test_a_file_in_the_way_of_a_folder_is_named(tmp_path):
    """A file where the data set or one of its folders must go: named, not the file being written (mkdir says "File
    exists" of it), and nothing written."""
    project = reviewed_project(tmp_path)[0]
    out = tmp_path / "blocked"
    out.mkdir()
    (out / "images").write_text("hi")
    with pytest.raises(ExportError) as refused:
        export_project(project, out, "sirst")
    assert str(refused.value).endswith(f"{out / 'images'} is a file, where a folder is needed")
    assert sorted(p.name for p in out.iterdir()) == ["images"]

    (tmp_path / "file").write_text("junk")
    with pytest.raises(ExportError) as refused:
        export_project(project, tmp_path / "file", "sirst")
    file = tmp_path / "file"
    assert str(refused.value) == f"cannot write {file}: {file} is a file, where a folder is needed"
    with pytest.raises(ExportError) as refused:
        export_project(project, tmp_path / "file" / "ds", "sirst")
    assert str(refused.value).endswith(f"{tmp_path / 'file'} is a file, where a folder is needed")
