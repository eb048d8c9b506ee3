"""Ctrl-C (SIGINT) during an export, and a rename that fails, never leave a data set half-updated.

An interrupt that comes while the export renames its files into place waits for the renames to end, then
reaches the caller as KeyboardInterrupt: the data set holds the whole export. One that comes earlier leaves the
data set as it was. A rename that fails leaves meta.json recording every frame the split files list, so that
a later export still knows this source's frames (and refuses to add them a second time under another name).
The interrupts are real SIGINTs sent to this process (in the main thread) at the Nth rename, as a Ctrl-C
landing there would be, and in one case to an `irsam export` process."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import app.core.export as export_module
from app.core.export import ExportError, export_project, read_exported_dataset
from tests.test_export import reviewed_project, snapshot

REPO = Path(__file__).resolve().parents[1]
SPLIT_FILES = {"train": "trainval.txt", "test": "test.txt"}
INDEX_FILES = {"meta.json", "trainval.txt", "test.txt", "instances_train.json", "instances_test.json"}


def listed(out: Path) -> dict[str, list[str]]:
    return {split: (out / name).read_text().split() if (out / name).exists() else []
            for split, name in SPLIT_FILES.items()}


def meta_frames(out: Path) -> dict[str, dict]:
    return json.loads((out / "meta.json").read_text())["frames"]


def without_times(out: Path) -> dict[str, bytes]:
    """The data set's files, meta.json without its export times (which differ from run to run)."""
    files = snapshot(out)
    meta = json.loads(files.pop("meta.json"))
    for record in meta["frames"].values():
        record.pop("exported")
    files["meta.json"] = json.dumps(meta, sort_keys=True).encode()
    return files


def assert_listed_frames_are_recorded(out: Path) -> None:
    """What any state the renames leave must hold: every frame a split file lists is recorded in meta.json and
    has its image and mask, and no frame of a source is listed twice."""
    records = meta_frames(out)
    every = [s for stems in listed(out).values() for s in stems]
    assert len(every) == len(set(every))
    for stem in every:
        assert stem in records, f"{stem} is listed but meta.json lacks it"
        assert (out / "images" / f"{stem}.png").is_file() and (out / "masks" / f"{stem}.png").is_file()
    frames = [(records[s]["source"], records[s]["source_stem"]) for s in every]
    assert len(frames) == len(set(frames)), "a frame is listed twice"


def assert_whole(out: Path, reference: Path) -> None:
    """The data set is the one an uninterrupted export leaves, with no temporary or lock file."""
    assert without_times(out) == without_times(reference)
    records = meta_frames(out)
    assert sorted(records) == sorted(s for stems in listed(out).values() for s in stems)
    assert all(records[s]["split"] == split for split, stems in listed(out).items() for s in stems)
    assert not [p for p in out.rglob(".*")]  # no temporary file, no lock file


@pytest.fixture
def datasets(tmp_path):
    """Two appends into a data set holding seqA (with COCO and YOLO): "new", seqB added on the test side; and
    "removing", seqA exported again with a frame rejected since (its files and record removed) and one more
    accepted. Each: (project, base data set, reference data set as the uninterrupted append leaves it)."""
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]
    base = tmp_path / "base"
    export_project(first, base, "sirst", coco=True, yolo=True)
    first.set_status(first.stems[0], "rejected")
    first.set_status(first.stems[4], "accepted")
    cases = {}
    for name, project, split in (("new", second, "test"), ("removing", first, None)):
        reference = tmp_path / f"reference-{name}"
        shutil.copytree(base, reference)
        export_project(project, reference, "sirst", split=split, append=True)
        cases[name] = (project, split, base, reference)
    return cases


def count_renames(project, split, base: Path, tmp_path: Path) -> list[str]:
    """The targets an uninterrupted append renames into place, in order."""
    out = tmp_path / "count"
    shutil.copytree(base, out)
    real_replace, targets = os.replace, []

    def replace(source, target):
        targets.append(Path(target).name)
        real_replace(source, target)

    os.replace = replace
    try:
        export_project(project, out, "sirst", split=split, append=True)
    finally:
        os.replace = real_replace
    shutil.rmtree(out)
    return targets


def interrupt_at_rename(monkeypatch, n: int) -> list[str]:
    """SIGINT to this process at the `n`th rename (0-based), as it starts: a Ctrl-C landing there."""
    real_replace, targets = os.replace, []

    def replace(source, target):
        targets.append(Path(target).name)
        if len(targets) == n + 1:
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    return targets


@pytest.mark.parametrize("case", ["new", "removing"])
def test_ctrl_c_during_the_renames_takes_effect_once_the_data_set_holds_the_whole_export(datasets, tmp_path,
                                                                                         monkeypatch, case):
    project, split, base, reference = datasets[case]
    renames = count_renames(project, split, base, tmp_path)
    assert INDEX_FILES - {"instances_test.json"} <= set(renames)
    assert len(renames) > 12
    for n in range(len(renames)):  # every rename: the frames' files, meta.json, the split files, the annotations
        out = tmp_path / f"ds-{n}"
        shutil.copytree(base, out)
        targets = interrupt_at_rename(monkeypatch, n)
        with pytest.raises(KeyboardInterrupt):
            export_project(project, out, "sirst", split=split, append=True)
        monkeypatch.undo()
        assert targets == renames, f"interrupted at rename {n} ({renames[n]}): the renames stopped"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back
        assert_whole(out, reference)
        if case == "new":  # the same clip under another name: refused, nothing written (the audit's duplicate)
            before = snapshot(out)
            with pytest.raises(ExportError, match="already holds the frames of .* as sequence 'seqB'.*twice"):
                export_project(project, out, "sirst", split="test", append=True, sequence_name="clipB")
            assert snapshot(out) == before
        shutil.rmtree(out)


def test_ctrl_c_before_the_renames_leaves_the_data_set_as_it_was(datasets, tmp_path, monkeypatch):
    project, split, base, reference = datasets["removing"]
    before = snapshot(base)

    def on_progress(done, total):
        if done in interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)

    for interrupt_at in ({2}, {4}):  # while the frames' files are written, after the last (4 selected)
        with pytest.raises(KeyboardInterrupt):
            export_project(project, base, "sirst", split=split, append=True, progress=on_progress)
        assert snapshot(base) == before  # no temporary file, no lock file, nothing replaced

    # while meta.json, the split files and the annotations are written (after the frames' files)
    real_write = export_module.write_temporary_beside
    for name in ("meta.json", "trainval.txt", "instances_test.json"):
        def write(path, data, name=name):
            if Path(path).name == name:
                os.kill(os.getpid(), signal.SIGINT)
            return real_write(path, data)

        monkeypatch.setattr(export_module, "write_temporary_beside", write)
        with pytest.raises(KeyboardInterrupt):
            export_project(project, base, "sirst", split=split, append=True)
        monkeypatch.undo()
        assert snapshot(base) == before, name
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    export_project(project, base, "sirst", split=split, append=True)  # the same export again completes it
    assert_whole(base, reference)


@pytest.mark.parametrize("case", ["new", "removing"])
def test_a_failed_rename_leaves_meta_json_recording_every_listed_frame(datasets, tmp_path, monkeypatch, case):
    project, split, base, reference = datasets[case]
    renames = count_renames(project, split, base, tmp_path)
    index_renames = [i for i, name in enumerate(renames) if name in INDEX_FILES]
    assert len(index_renames) == (6 if case == "removing" else 5)  # meta.json twice where frames are removed
    for n in index_renames:
        out = tmp_path / f"ds-{n}"
        shutil.copytree(base, out)
        real_replace, tried = os.replace, []

        def replace(source, target, n=n):
            tried.append(target)
            if len(tried) == n + 1:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_replace(source, target)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(ExportError, match=f"cannot write .*{renames[n]}: Input/output error; .* is partly "
                                              "updated: export again, adding to the data set, to complete it"):
            export_project(project, out, "sirst", split=split, append=True)
        monkeypatch.undo()
        assert_listed_frames_are_recorded(out)
        assert not [p for p in out.rglob(".*")]
        if n == index_renames[0]:  # meta.json, the first: the split files and meta.json are as they were
            assert {name: data for name, data in snapshot(out).items() if Path(name).name in INDEX_FILES} == {
                name: data for name, data in snapshot(base).items() if Path(name).name in INDEX_FILES}
        elif case == "new":  # the same clip under another name: refused, as without the failure
            with pytest.raises(ExportError, match="already holds the frames of .* as sequence 'seqB'.*twice"):
                export_project(project, out, "sirst", split="test", append=True, sequence_name="clipB")
        export_project(project, out, "sirst", split=split, append=True)  # as the message says: completes it
        assert_whole(out, reference)
        shutil.rmtree(out)


def test_a_sigint_handler_of_the_caller_s_own_is_called_once_the_renames_are_done(datasets, tmp_path, monkeypatch):
    project, split, base, reference = datasets["new"]
    calls = []

    def handler(signum, frame):  # a program that handles Ctrl-C itself (no KeyboardInterrupt)
        calls.append([s for stems in listed(base).values() for s in stems if s.startswith("seqB_")])

    previous = signal.signal(signal.SIGINT, handler)
    try:
        interrupt_at_rename(monkeypatch, 2)
        export_project(project, base, "sirst", split=split, append=True)
        monkeypatch.undo()
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 1 and len(calls[0]) == 4  # called once, when the split files listed seqB's frames
    assert_whole(base, reference)


def test_an_export_in_another_thread_runs_and_leaves_sigint_alone(tmp_path):
    """Only the main thread can swap signal handlers (the app exports in a worker thread)."""
    project = reviewed_project(tmp_path)[0]
    results = []
    thread = threading.Thread(target=lambda: results.append(export_project(project, tmp_path / "ds", "sirst")))
    thread.start()
    thread.join(60)
    assert results and len(results[0].exported) == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert len(read_exported_dataset(tmp_path / "ds", "sirst")) == 4


# `irsam export` in a process of its own, SIGINT sent to it as it renames trainval.txt into place
INTERRUPTED_CLI = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    real_replace = os.replace
    def replace(source, target):
        if Path(target).name == "trainval.txt":
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(source, target)
    os.replace = replace
    import app.cli
    sys.exit(app.cli.main(sys.argv[1:]))
""")


def test_irsam_export_interrupted_while_renaming_leaves_the_whole_export(tmp_path):
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]
    out, reference = tmp_path / "ds", tmp_path / "reference"
    export_project(first, out, "sirst", coco=True, yolo=True)
    shutil.copytree(out, reference)
    export_project(second, reference, "sirst", append=True)

    def irsam(*argv, script=None):
        command = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "app.cli", *argv]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    done = irsam("export", str(second.folder), "--out", str(out), "--append", script=INTERRUPTED_CLI)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().endswith(f"interrupted: {out} holds the whole export: the interrupt came while its "
                                        "files were being renamed into place, and took effect once they were"), done.stderr
    assert_whole(out, reference)  # trainval.txt lists seqB's frames and meta.json records them
    done = irsam("export", str(second.folder), "--out", str(out), "--append", "--sequence", "clipB")
    assert done.returncode != 0 and "would put them in the data set twice" in done.stderr, done.stderr
    assert_whole(out, reference)
