"""`irsam detect` runs hold the project's detection lock (PROJECT/detect.lock) for their whole run: a second run
into the same project is refused at once, naming the project and the run holding it, and writes nothing; a
killed run never leaves the project locked. Also: unreadable frames outside --limit are not reported, and a
project.json restored from its backup is said."""
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
from app.core.locks import DETECT_LOCK, DetectionLock, DetectionRunningError
from app.core.project import ReviewProject
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    seq = generate_sequence(SyntheticConfig(n_frames=6, height=48, width=64, empty_fraction=0.0), seed=2)
    return write_sequence(seq, tmp_path_factory.mktemp("seq"))


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# `irsam detect` in a process of its own that says when its run has started (the project made, the lock held)
# and waits for the word to go on before detecting
WAITING_DETECT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import app.commands.detect as detect
    started, go = Path(sys.argv[1]), Path(sys.argv[2])
    real_run_pipeline = detect.run_pipeline
    def waiting(*args, **kwargs):
        started.write_text("started")
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return real_run_pipeline(*args, **kwargs)
    detect.run_pipeline = waiting
    import app.cli
    sys.exit(app.cli.main(sys.argv[3:]))
""")


def start_waiting_detect(sequence: Path, out: Path, method: str, tmp_path: Path):
    started, go = tmp_path / f"started-{method}", tmp_path / f"go-{method}"
    process = subprocess.Popen(
        [sys.executable, "-c", WAITING_DETECT, str(started), str(go), "detect", str(sequence), "--out", str(out),
         "--method", method, "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the first run did not start: {process.communicate()}")
        time.sleep(0.05)
    return process, go


def irsam_detect(sequence: Path, out: Path, method: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "detect", str(sequence), "--out", str(out), "--method",
                           method, "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_second_irsam_detect_into_a_project_being_detected_is_refused_and_writes_nothing(sequence, tmp_path):
    out = tmp_path / "proj"
    first, go = start_waiting_detect(sequence, out, "tophat", tmp_path)
    try:
        held = files_of(out)
        second = irsam_detect(sequence, out, "mpcm")  # overlapping cron jobs
        assert second.returncode == 2 and "frames" not in second.stdout
        assert DETECT_LOCK in held and "project.json" in held
        assert second.stderr == (f"error: another detection run (irsam detect, pid {first.pid}) is writing to the "
                                 f"project {out} now: nothing was written; run this one again when it has finished\n")
        assert files_of(out) == held
    finally:
        go.write_text("go")
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert "6 frames" in stdout
    project = ReviewProject.open(out)
    assert project.detector["name"] == "tophat"
    assert {project.proposal_origin(stem).method for stem in project.stems} == {"tophat"}  # no mix
    assert not (out / DETECT_LOCK).exists()  # released: the project holds none between runs

    third = irsam_detect(sequence, out, "mpcm")  # once the first has finished
    assert third.returncode == 0, third.stderr
    project = ReviewProject.open(out)
    assert project.detector["name"] == "mpcm"
    assert {project.proposal_origin(stem).method for stem in project.stems} == {"mpcm"}
    assert not (out / DETECT_LOCK).exists()


def test_a_killed_run_does_not_leave_the_project_locked(sequence, tmp_path):
    out = tmp_path / "proj"
    first, _ = start_waiting_detect(sequence, out, "tophat", tmp_path)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert (out / DETECT_LOCK).exists()  # left by the killed run, no longer locked
    again = irsam_detect(sequence, out, "tophat")
    assert again.returncode == 0, again.stderr
    assert not (out / DETECT_LOCK).exists()
    project = ReviewProject.open(out)
    assert all(project.has_prediction(stem) for stem in project.stems)


def test_a_lock_file_left_in_a_new_folder_by_a_killed_run_does_not_make_it_foreign(sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    out.mkdir()
    (out / DETECT_LOCK).write_text("12345 irsam detect\n")  # killed before it made the project
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert not (out / DETECT_LOCK).exists() and ReviewProject.open(out).stems


def test_a_run_refused_by_the_lock_names_the_holder_and_leaves_the_project_as_it_was(sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    capsys.readouterr()
    before = files_of(out)
    with DetectionLock(out, "the IRSAM Review window"):  # another run, here the app's
        assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet", "--skip-done"]) == 2
        assert capsys.readouterr().err == (
            f"error: another detection run (the IRSAM Review window, pid {os.getpid()}) is writing to the project "
            f"{out} now: nothing was written; run this one again when it has finished\n")
        with pytest.raises(DetectionRunningError, match=f"writing to the project {out} now"):
            DetectionLock(out, "the IRSAM Review window").acquire()
        assert {k: v for k, v in files_of(out).items() if k != DETECT_LOCK} == before
    assert files_of(out) == before  # the lock file removed with the lock

    new = tmp_path / "new" / "proj"  # a refused run into a folder being made: nothing of its own is left
    with DetectionLock(new):
        assert main(["detect", str(sequence), "--out", str(new), "--method", "tophat", "--quiet"]) == 2
        assert "another detection run (irsam detect, pid" in capsys.readouterr().err
        assert files_of(tmp_path / "new") == {f"proj/{DETECT_LOCK}": f"{os.getpid()} irsam detect\n".encode()}
    assert not (tmp_path / "new").exists()  # made for the lock, removed with it


def test_unreadable_frames_are_reported_only_within_limit(sequence, tmp_path, capsys):
    folder = tmp_path / "seq"
    folder.mkdir()
    frames = sorted((sequence / "images").glob("*.png"))
    for p in frames:
        (folder / p.name).write_bytes(p.read_bytes())
    third, fifth = folder / frames[2].name, folder / frames[4].name
    third.write_bytes(third.read_bytes()[:200])  # truncated
    fifth.write_bytes(b"")
    run = ["detect", str(folder), "--out", str(tmp_path / "p"), "--method", "tophat", "--quiet"]
    assert main([*run, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "the first 2 of 6 frames" in out and "skipped" not in out and str(third) not in out
    assert main([*run, "--limit", "4"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable frame(s) skipped:" in out and str(third) in out and str(fifth) not in out
    assert main(run) == 0
    out = capsys.readouterr().out
    assert "2 unreadable frame(s) skipped:" in out and str(third) in out and str(fifth) in out


def test_a_damaged_project_json_restored_from_its_backup_is_said(sequence, tmp_path, capsys):
    out = tmp_path / "p"
    run = ["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]
    assert main(run) == 0
    assert main(run) == 0  # (the second write of project.json leaves its backup)
    assert (out / "project.json.bak").exists()
    capsys.readouterr()
    good = (out / "project.json").read_bytes()
    (out / "project.json").write_bytes(good[:100])  # cut short
    assert main(run) == 0
    err = capsys.readouterr().err.splitlines()
    said = [line for line in err if "project.json" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {out / 'project.json'}: ")
    assert said[0].endswith("it was restored from its backup, project.json.bak")
    assert ReviewProject.open(out).damaged == []


def test_the_lock_works_where_the_pid_cannot_be_read(tmp_path):
    """A run that has just locked the file and not yet written its pid: the refusal names no pid."""
    import fcntl

    (tmp_path / "p").mkdir()
    fd = os.open(tmp_path / "p" / DETECT_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DetectionRunningError, match=r"^another detection run is writing to the project"):
            DetectionLock(tmp_path / "p").acquire()
    finally:
        os.close(fd)
    with DetectionLock(tmp_path / "p") as lock:
        assert lock.held
