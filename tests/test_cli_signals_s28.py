"""SIGTERM (kill, timeout, a service manager's stop, the app's fine-tune Stop) ends `irsam train`, `irsam export`
and `irsam import-labels` as Ctrl-C does: what is saved is saved and said, exit status 143 (as `irsam detect`).

Before, each died of the signal with no word: train left train.lock, export its temporary files (until the next
export), import-labels could stop in the middle of a frame's commit. Each command here is a real one in a process
of its own, signalled from outside at a known point (a file it writes there says when), or by itself where the
point must be exact (an export's renames)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.commands import Terminated, sigterm_as_interrupt
from app.core.export import export_project
from app.core.project import ReviewProject
from model.train_config import TRAIN_LOCK
from tests.datasets import write_sirst_dataset
from tests.test_export import reviewed_project, snapshot
from tests.test_export_interrupt import assert_whole, count_renames

REPO = Path(__file__).resolve().parents[1]

# `irsam train` that writes STARTED once a step of epoch 2 is done, and computes there (for the signal) at most 2 min:
# in C, where Python handles no signal, as in a training step, so that a loader worker killed with it is dead before
TRAIN_STOPPING_IN_EPOCH_2 = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import model.train as train
    started = Path(sys.argv[1])
    real_progress = train._progress
    def progress(loader, description, enabled):
        for step, batch in enumerate(real_progress(loader, description, enabled)):
            if description.startswith("epoch 2/") and step == 1:
                started.write_text("epoch 2 under way")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    sum(range(20_000_000))
            yield batch
    train._progress = progress
    import app.cli
    sys.exit(app.cli.main(sys.argv[2:]))
""")

# `irsam export` that writes STARTED as it is about to write its third temporary file (of the frames'), and waits
EXPORT_STOPPING_WHILE_WRITING = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import app.core.export as export
    started, writes = Path(sys.argv[1]), []
    real_write = export.write_temporary_beside
    def write(path, data):
        writes.append(path)
        if len(writes) == 3:
            started.write_text("writing")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.05)
        return real_write(path, data)
    export.write_temporary_beside = write
    import app.cli
    sys.exit(app.cli.main(sys.argv[2:]))
""")

# `irsam export` that sends itself SIGTERM as it renames trainval.txt into place
EXPORT_TERMINATED_WHILE_RENAMING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    real_replace = os.replace
    def replace(source, target):
        if Path(target).name == "trainval.txt":
            os.kill(os.getpid(), signal.SIGTERM)
        real_replace(source, target)
    os.replace = replace
    import app.cli
    sys.exit(app.cli.main(sys.argv[1:]))
""")

# `irsam import-labels` that writes STARTED in its second frame's commit, and finishes that commit once GO is there
IMPORT_STOPPING_IN_A_COMMIT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from app.core.project import ReviewProject
    started, go, commits = Path(sys.argv[1]), Path(sys.argv[2]), []
    real_commit = ReviewProject.commit_edit
    def commit_edit(self, *args, **kwargs):
        commits.append(1)
        if len(commits) == 2:
            started.write_text("committing")
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return real_commit(self, *args, **kwargs)
    ReviewProject.commit_edit = commit_edit
    import app.cli
    sys.exit(app.cli.main(sys.argv[3:]))
""")


def start(processes: list, script: str, *argv, new_session: bool = False) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, argv)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=new_session)
    processes.append(process)
    return process


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"ended ({process.returncode}) before {path.name}: {process.stderr.read()}")
        assert time.monotonic() < deadline, f"no {path.name} within 4 minutes"
        time.sleep(0.05)


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def hidden_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def sirst(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))  # 8 training frames (2 steps of 4), 4 validation


def train_arguments(dataset: Path, out: Path, workers: int) -> list[str]:
    return ["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"), "--split-val",
            str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu", "--precision", "fp32",
            "--epochs", "2", "--batch-size", "4", "--crop", "48", "--workers", str(workers)]


@pytest.mark.parametrize("workers, to_the_group", [(0, False), (1, True)],
                         ids=["kill-pid", "kill-process-group-with-a-loader-worker"])
def test_a_killed_training_says_what_last_pt_holds_leaves_no_lock_and_resumes(sirst, tmp_path, processes, capsys,
                                                                              workers, to_the_group):
    """Killed in epoch 2 of 2. Sent to the process group (timeout, the app's Stop) the signal also ends the data
    loader's worker, whose death PyTorch would raise as a failure in the middle of the report."""
    out = tmp_path / "run"
    started = tmp_path / "started"
    process = start(processes, TRAIN_STOPPING_IN_EPOCH_2, started, *train_arguments(sirst, out, workers),
                    new_session=to_the_group)
    wait_for(started, process)
    if to_the_group:
        os.killpg(process.pid, signal.SIGTERM)  # the group this test made, led by the process
    else:
        process.send_signal(signal.SIGTERM)
    code, _, err = finished(process)
    assert code == 143, err
    assert err.splitlines()[-1].endswith(f"terminated: {out / 'last.pt'} holds epoch 1 of 2 (the epoch under way is "
                                         "lost); the same command resumes at epoch 2"), err
    assert "Traceback" not in err and "Exception ignored" not in err and "DataLoader worker" not in err, err
    assert not (out / TRAIN_LOCK).exists() and hidden_files(out) == []
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1

    assert main(train_arguments(sirst, out, 0)) == 0  # the same command resumes at epoch 2 and ends the run
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert not (out / TRAIN_LOCK).exists()


def test_a_killed_export_leaves_the_data_set_as_it_was_and_no_temporary_file(tmp_path, processes):
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]
    out = tmp_path / "ds"
    export_project(first, out, "sirst", coco=True)
    before = snapshot(out)
    started = tmp_path / "started"
    process = start(processes, EXPORT_STOPPING_WHILE_WRITING, started, "export", second.folder, "--out", out,
                    "--append")
    wait_for(started, process)
    process.send_signal(signal.SIGTERM)
    code, _, err = finished(process)
    assert code == 143, err
    assert err == f"terminated: nothing of this export was written to {out}\n"
    assert snapshot(out) == before  # no temporary file, no lock file, nothing replaced

    reference = tmp_path / "reference"
    shutil.copytree(out, reference)
    export_project(second, reference, "sirst", append=True)
    done = subprocess.run([sys.executable, "-c", EXPORT_TERMINATED_WHILE_RENAMING, "export", str(second.folder),
                           "--out", str(out), "--append"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert done.stderr == (f"terminated: {out} holds the whole export: the interrupt came while its files were being "
                           "renamed into place, and took effect once they were\n")
    assert_whole(out, reference)  # the renames went on to the end: trainval.txt lists seqB's frames


def test_sigterm_during_the_renames_is_held_back_to_their_end_then_raised(tmp_path, monkeypatch):
    """In this process, under `sigterm_as_interrupt`: SIGTERM sent as each rename starts; the handler put back."""
    first = reviewed_project(tmp_path, "seqA", seed=0)[0]
    second = reviewed_project(tmp_path, "seqB", seed=1)[0]
    base, reference = tmp_path / "base", tmp_path / "reference"
    export_project(first, base, "sirst")
    shutil.copytree(base, reference)
    export_project(second, reference, "sirst", append=True)
    renames = count_renames(second, None, base, tmp_path)
    assert len(renames) > 8  # the frames' images and masks, meta.json, the split files
    handler = signal.getsignal(signal.SIGTERM)
    for n in range(len(renames)):
        out = tmp_path / f"ds-{n}"
        shutil.copytree(base, out)
        real_replace, done = os.replace, []

        def replace(source, target, n=n):
            done.append(Path(target).name)
            if len(done) == n + 1:
                os.kill(os.getpid(), signal.SIGTERM)
            real_replace(source, target)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(Terminated, match="holds the whole export"), sigterm_as_interrupt():
            export_project(second, out, "sirst", append=True)
        monkeypatch.undo()
        assert done == renames, f"terminated at rename {n} ({renames[n]}): the renames stopped"
        assert signal.getsignal(signal.SIGTERM) is handler
        assert_whole(out, reference)
        shutil.rmtree(out)


def test_a_killed_import_stops_between_frames_says_what_it_committed_and_goes_on(tmp_path, processes, capsys):
    project = reviewed_project(tmp_path)[0]
    project = ReviewProject.create(tmp_path / "fresh.irsam-review", project.source_path, project.source_kind,
                                   project.stems, project.frame_shape, project.normalization, project.detector)
    masks = tmp_path / "masks"
    masks.mkdir()
    import cv2

    for i, stem in enumerate(project.stems):
        mask = np.zeros(project.frame_shape, np.uint8)
        mask[i : i + 2, 2 * i : 2 * i + 3] = 255
        cv2.imwrite(str(masks / f"{stem}.png"), mask)
    started, go = tmp_path / "started", tmp_path / "go"
    process = start(processes, IMPORT_STOPPING_IN_A_COMMIT, started, go, "import-labels", project.folder, "--masks",
                    masks)
    wait_for(started, process)
    process.send_signal(signal.SIGTERM)
    go.write_text("go")  # the commit under way ends whole; the import stops before the next frame
    code, out, err = finished(process)
    assert code == 143, err
    assert out == ""
    assert err.splitlines()[-1].endswith(
        f"terminated: {project.folder}: stopped between two frames, after 2 of 6: 2 masks committed; the same command "
        "goes on (the masks committed now count as already committed)"), err
    opened = ReviewProject.open(project.folder)
    assert [opened.has_committed_mask(stem) for stem in project.stems] == [True, True] + [False] * 4
    assert hidden_files(project.folder) == []

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    capsys.readouterr()
    assert main(["import-labels", str(project.folder), "--masks", str(masks)]) == 0
    assert capsys.readouterr().out.startswith(f"{project.folder}: 4 masks committed, 2 already committed (masks from")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # put back
