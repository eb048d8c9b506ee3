import errno
import os
import stat

import numpy as np
import pytest

from model.atomic import atomic_write_bytes, atomic_write_png, current_umask, write_output_file


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the previous one after it."""
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_mode_open_would_give(tmp_path, umask):
    umask(0o022)
    atomic_write_bytes(tmp_path / "project.json", b"{}")
    atomic_write_png(tmp_path / "masks" / "000001.png", np.zeros((4, 4), bool))
    assert mode(tmp_path / "project.json") == 0o644
    assert mode(tmp_path / "masks" / "000001.png") == 0o644
    umask(0o027)
    atomic_write_bytes(tmp_path / "shared.json", b"{}")
    assert mode(tmp_path / "shared.json") == 0o640


def test_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "trainval.txt"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n" and mode(path) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["trainval.txt"]  # no temporary file left


def test_umask_is_read_without_changing_it(umask):
    umask(0o037)
    assert current_umask() == 0o037
    assert os.umask(0o037) == 0o037  # still what the test set


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTSUP, errno.ENOSYS])
def test_a_file_system_without_unix_modes_still_gets_the_write(tmp_path, monkeypatch, code):
    def refuse(fd, mode):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fchmod", refuse)
    atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert (tmp_path / "f.bin").read_bytes() == b"data"


def test_a_symbolic_link_in_a_project_is_replaced_not_written_through(tmp_path):
    """Review projects sit beside their source, often in shared data folders: a link planted as labels/x.png or
    review.json must not make an edit overwrite the file it points to."""
    truth = tmp_path / "ground_truth.png"
    truth.write_bytes(b"truth")
    link = tmp_path / "labels" / "x.png"
    link.parent.mkdir()
    link.symlink_to(truth)
    atomic_write_bytes(link, b"edit")
    assert not link.is_symlink() and link.read_bytes() == b"edit" and truth.read_bytes() == b"truth"


def test_an_output_the_user_named_is_written_through_its_link(tmp_path):
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "latest.json"
    target.write_text("old")
    link = tmp_path / "eval.json"
    link.symlink_to(target)
    write_output_file(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    dangling = tmp_path / "next.json"
    dangling.symlink_to(tmp_path / "results" / "next.json")  # as open() would, the file it names is made
    write_output_file(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "results" / "next.json").read_bytes() == b"made"
    write_output_file(tmp_path / "plain.json", b"plain")
    assert (tmp_path / "plain.json").read_bytes() == b"plain"


def test_an_output_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waiting on it (`--json pipe.json`, `jq < pipe.json`)
    try:
        write_output_file(fifo, b'{"iou": 0.5}\n')
        try:
            received = os.read(reader, 1000)
        except BlockingIOError:
            received = b""
    finally:
        os.close(reader)
    assert received == b'{"iou": 0.5}\n' and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe.json"]  # no temporary file left
