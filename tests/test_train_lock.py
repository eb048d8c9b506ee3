"""One training run at a time per --out: `irsam train` holds OUT/train.lock (model.train.TrainLock) for its whole
run, so a second run into the same --out (a shell, or the fine-tune dialog of a window reopened after the one that
started the first was killed: the trainer outlives it) is refused at once with exit code 2, naming the folder and
the pid of the run there, and touches nothing; the fine-tune job refuses likewise before it exports or starts
anything. A killed run never leaves the folder locked."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.cli import main
from app.core.finetune import FineTuneJob, TrainingStillRunning, prepare_run
from model.folder_lock import lock_holder
from model.train_config import TRAIN_LOCK
from tests.datasets import write_sirst_dataset
from tests.test_finetune import reviewed_sequence

REPO = Path(__file__).resolve().parents[1]

# `irsam train` in a process of its own that says when its first epoch is saved (last.pt, best.pt, metrics.jsonl
# written, the lock held) and then waits for GO before it trains on
WAITING_TRAIN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import model.train as train
    started, go = Path(sys.argv[1]), Path(sys.argv[2])
    real_append_record = train._append_record
    def waiting(*args, **kwargs):
        real_append_record(*args, **kwargs)
        started.write_text("started")
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    train._append_record = waiting
    import app.cli
    sys.exit(app.cli.main(sys.argv[3:]))
""")

# A process holding FOLDER/train.lock as `irsam train` does (model.train.TrainLock's FolderLock), torch-free so it
# starts fast; says "held" and waits to be killed
HOLDING = textwrap.dedent("""
    import sys, time
    from model.folder_lock import FolderLock
    from model.train_config import TRAIN_LOCK
    lock = FolderLock(sys.argv[1], TRAIN_LOCK, "irsam train").acquire()
    print("held" if lock.held else "not held", flush=True)
    time.sleep(300)
""")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))  # 8 training frames, 4 for validation


def train_arguments(dataset: Path, out: Path, epochs: int = 2) -> list[str]:
    return ["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"), "--split-val",
            str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu", "--precision", "fp32",
            "--epochs", str(epochs), "--batch-size", "4", "--crop", "48", "--workers", "0"]


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under `folder`: its bytes and modification time (a rewrite with the same bytes shows)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def start_waiting_train(dataset: Path, out: Path, tmp_path: Path, processes: list) -> subprocess.Popen:
    """A real `irsam train` into `out`, waiting after its first epoch (`WAITING_TRAIN`), the lock held."""
    started = tmp_path / "started"
    process = subprocess.Popen([sys.executable, "-c", WAITING_TRAIN, str(started), str(tmp_path / "go"),
                                *train_arguments(dataset, out)], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    processes.append(process)
    deadline = time.monotonic() + 180
    while not started.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the first run did not finish its first epoch"
        time.sleep(0.05)
    return process


def hold_lock(folder: Path, processes: list) -> subprocess.Popen:
    """A process holding FOLDER/train.lock as a training run does (`HOLDING`)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDING, str(folder)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    processes.append(process)
    assert process.stdout.readline().strip() == "held", process.stderr.read()
    return process


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_a_second_train_into_the_out_of_a_running_one_is_refused_and_touches_nothing(dataset, tmp_path, processes,
                                                                                      capsys):
    out = tmp_path / "out"
    first = start_waiting_train(dataset, out, tmp_path, processes)
    assert lock_holder(out / TRAIN_LOCK) == f" (irsam train, pid {first.pid})"
    before = files_of(out)
    assert {"last.pt", "best.pt", "metrics.jsonl", TRAIN_LOCK} <= before.keys()

    assert main(train_arguments(dataset, out)) == 2
    err = capsys.readouterr().err
    assert err == (f"error: another training run (irsam train, pid {first.pid}) is training into --out {out} now: "
                   "nothing was written; wait for it to finish, or train into another --out\n")
    assert files_of(out) == before
    assert first.poll() is None  # the first run goes on, its lock held
    assert lock_holder(out / TRAIN_LOCK) == f" (irsam train, pid {first.pid})"

    # the command line as a shell runs it: the same
    result = subprocess.run([sys.executable, "-m", "app.cli", *train_arguments(dataset, out)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == err.splitlines()
    assert files_of(out) == before

    # killed, the run leaves its lock file but no lock: the same command resumes it, and removes the file at its end
    kill(first)
    assert (out / TRAIN_LOCK).exists() and lock_holder(out / TRAIN_LOCK) is None
    assert main(train_arguments(dataset, out)) == 0
    assert "resuming from" in capsys.readouterr().out
    assert not (out / TRAIN_LOCK).exists()


def test_a_lock_file_a_killed_run_left_in_a_new_out_is_not_in_the_way(dataset, tmp_path, processes, capsys):
    out = tmp_path / "out"
    holder = hold_lock(out, processes)
    assert main(train_arguments(dataset, out, epochs=1)) == 2
    assert f"(irsam train, pid {holder.pid}) is training into --out {out} now" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [TRAIN_LOCK]

    kill(holder)
    assert lock_holder(out / TRAIN_LOCK) is None
    assert main(train_arguments(dataset, out, epochs=1)) == 0
    assert (out / "best.pt").exists() and not (out / TRAIN_LOCK).exists()


def test_a_run_refused_for_other_reasons_leaves_no_lock_and_no_folder(dataset, tmp_path, capsys):
    out = tmp_path / "new" / "out"
    arguments = train_arguments(dataset, out, epochs=1)
    arguments[arguments.index("--split-val") + 1] = str(dataset / "train.txt")  # shares every image with training
    assert main(arguments) == 2
    assert "train and validation splits share" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_torchrun_processes_are_refused_together_by_rank_0s_lock(dataset, tmp_path, processes):
    out = tmp_path / "out"
    holder = hold_lock(out, processes)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "app.cli", *train_arguments(dataset, out, epochs=1)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    line = (f"error: another training run (irsam train, pid {holder.pid}) is training into --out {out} now: "
            "nothing was written; wait for it to finish, or train into another --out")
    assert result.stderr.count(line) == 2, result.stderr[-3000:]  # each rank says why it stopped; neither hangs
    assert sorted(p.name for p in out.iterdir()) == [TRAIN_LOCK]
    assert holder.poll() is None


def test_a_fine_tune_start_is_refused_while_a_training_runs_in_its_folder(tmp_path, processes):
    project, source = reviewed_sequence(tmp_path)
    folder = tmp_path / "finetune"
    options = dict(config="tiny", epochs=1, device="cpu")
    prepared = prepare_run(folder, project, sequence_name="seqA", source=source, **options)
    job = prepared.job
    assert job.out_dir == folder / "run"
    holder = hold_lock(job.out_dir, processes)  # e.g. the trainer of a window killed since
    before = files_of(folder)

    with pytest.raises(TrainingStillRunning) as refused:  # before exporting into FOLDER/data again
        prepare_run(folder, project, sequence_name="seqA", source=source, **options)
    assert str(refused.value) == (
        f"A training is still running in {folder / 'run'} (irsam train, pid {holder.pid}): wait for it to finish (or "
        "stop that process), or choose another fine-tune folder. Nothing was exported or started.")
    with pytest.raises(TrainingStillRunning, match=f"pid {holder.pid}"):  # prepared before the training started
        job.start()
    assert job.process is None
    with pytest.raises(TrainingStillRunning, match=f"pid {holder.pid}.*choose another out folder"):
        FineTuneJob(job.export_dir, job.out_dir, config="tiny").prepare()
    assert files_of(folder) == before  # no train.log, finetune.json or split files written, nothing exported

    kill(holder)
    again = prepare_run(folder, project, sequence_name="seqA", source=source, **options)
    assert again.job.out_dir == folder / "run"
    source.close()


@pytest.mark.gui
def test_the_dialog_says_a_training_still_runs_in_its_folder_and_exports_nothing(review, qtbot, tmp_path, processes,
                                                                                tiny_checkpoint):
    from app.core.project import ReviewStatus

    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    folder = tmp_path / "finetune"
    holder = hold_lock(folder / "run", processes)  # a run folder whose trainer outlived a killed window
    dialog = review.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(folder))
    dialog.weights.setText(str(tiny_checkpoint))
    assert dialog.start()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    assert dialog.job is None and dialog.status.text() == "Training not started:"
    assert dialog.failure.toPlainText() == (
        f"A training is still running in {folder / 'run'} (irsam train, pid {holder.pid}): wait for it to finish (or "
        "stop that process), or choose another fine-tune folder. Nothing was exported or started.")
    assert sorted(p.name for p in folder.iterdir()) == ["run"]  # no FOLDER/data
    dialog.close()
