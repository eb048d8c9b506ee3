"""`run_pipeline` with several writer threads: the same project files as one writer, errors still raised."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.commands.detect import run_pipeline
from app.core.frames import open_source
from app.core.normalization import default_for
from app.core.project import ProjectWriteError, ReviewProject
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from model.detectors import FrameResult


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    seq = generate_sequence(SyntheticConfig(n_frames=12, height=40, width=48, empty_fraction=0.0), seed=5)
    return write_sequence(seq, tmp_path_factory.mktemp("seq"))


class ThresholdDetector:
    """Bright pixels are targets; the edge map is the image itself: every frame's outputs differ."""

    name = "threshold"
    device = "cpu"

    def detect(self, images, features: bool = False) -> list[FrameResult]:
        results = []
        for image in images:
            values = image.astype(np.float32)
            logits = values - (values.mean() + 2 * values.std())
            results.append(FrameResult(logits=logits, edge=values / 255))
        return results


class OutOfOrderProject(ReviewProject):
    """Every third frame is saved slowly, so with several writers later frames finish first."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finished: list[int] = []
        self._finished_lock = threading.Lock()

    def save_prediction(self, stem, result, save_logits=False, origin=None):
        if self.index(stem) % 3 == 0:
            time.sleep(0.02)
        kept_accepted = super().save_prediction(stem, result, save_logits, origin)
        with self._finished_lock:
            self.finished.append(self.index(stem))
        return kept_accepted


def detect_into(sequence: Path, out: Path, writers: int, project_class=ReviewProject) -> ReviewProject:
    source = open_source(sequence)
    norm = default_for(source)
    project = project_class.create(out, sequence, source.kind, source.stems, source.shape, norm.to_dict())
    try:
        stats = run_pipeline(source, len(source), norm, ThresholdDetector(), project, 2, True, False, writers=writers)
    finally:
        source.close()
    assert stats["frames"] == len(source)
    project.flush_detections()
    return project


def output_files(project: Path) -> dict[str, bytes]:
    """Every file of the project but project.json and its backup (which hold the time of the run)."""
    return {p.relative_to(project).as_posix(): p.read_bytes() for p in sorted(project.rglob("*"))
            if p.is_file() and p.name not in ("project.json", "project.json.bak")}


def test_several_writers_write_byte_identical_files_in_any_finishing_order(sequence, tmp_path):
    one = detect_into(sequence, tmp_path / "one", writers=1, project_class=OutOfOrderProject)
    four = detect_into(sequence, tmp_path / "four", writers=4, project_class=OutOfOrderProject)
    assert one.finished == sorted(one.finished)
    assert four.finished != sorted(four.finished)  # the writers really did finish out of order
    reference = output_files(tmp_path / "one")
    assert len(reference) == 3 * 12 + 1
    assert sum(len(one.detections(stem)) for stem in one.stems) > 0
    assert output_files(tmp_path / "four") == reference


def timeless_output(project: Path) -> dict[str, object]:
    """output_files, with each mask PNG as its pixels and its proposal record less the time it was made
    (two runs a second apart differ there and nowhere else)."""
    files = output_files(project)
    for name in [n for n in files if n.endswith(".png")]:
        with Image.open(project / name) as image:
            origin = json.loads(image.info["irsam-proposal"])
            files[name] = (np.asarray(image).tobytes(), {k: v for k, v in origin.items() if k != "time"})
    return files


def test_cli_writers_flag_gives_the_same_project(sequence, tmp_path):
    for writers in ("1", "3"):
        out = tmp_path / writers
        assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--save-logits",
                     "--batch-size", "2", "--writers", writers, "--quiet"]) == 0
    reference = timeless_output(tmp_path / "1")
    assert len(reference) == 2 * 12 + 1  # tophat has no edge map: masks, logits, detections.csv
    assert timeless_output(tmp_path / "3") == reference
    with pytest.raises(SystemExit):
        main(["detect", str(sequence), "--out", str(tmp_path / "0"), "--method", "tophat", "--writers", "0"])
    assert not (tmp_path / "0").exists()


def test_a_failed_write_among_several_writers_is_raised(sequence, tmp_path):
    source = open_source(sequence)
    norm = default_for(source)
    project = ReviewProject.create(tmp_path / "p", sequence, source.kind, source.stems, source.shape, norm.to_dict())
    (tmp_path / "p" / "masks" / f"{source.stems[7]}.png").mkdir(parents=True)  # the mask cannot replace a folder
    with pytest.raises(ProjectWriteError, match="could not write"):
        run_pipeline(source, len(source), norm, ThresholdDetector(), project, 2, False, False, writers=3)
    source.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("detect-writer")]


def reader_ends(seconds: float = 5.0) -> bool:
    """True once no `detect-reader` thread is left (waiting up to `seconds`)."""
    deadline = time.time() + seconds
    while any(t.name == "detect-reader" for t in threading.enumerate()):
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


class FailingSource:
    """Wraps a source; frame `bad` raises an error that is not an unreadable-frame report."""

    def __init__(self, source, bad: int):
        self.source, self.bad, self.stems = source, bad, source.stems

    def frame(self, i: int):
        if i == self.bad:
            raise MemoryError("out of memory while decoding")
        return self.source.frame(i)


@pytest.mark.timeout(60)
def test_a_reader_failure_is_raised_instead_of_waiting_forever(sequence, tmp_path):
    source = open_source(sequence)
    norm = default_for(source)
    project = ReviewProject.create(tmp_path / "p", sequence, source.kind, source.stems, source.shape, norm.to_dict())
    with pytest.raises(RuntimeError, match="reading the frames failed: MemoryError"):
        run_pipeline(FailingSource(source, 5), len(source), norm, ThresholdDetector(), project, 2, False, False, writers=2)
    source.close()
    assert reader_ends()


@pytest.mark.timeout(60)
def test_the_reader_stops_when_detection_fails(sequence, tmp_path):
    class BrokenDetector(ThresholdDetector):
        def detect(self, images, features=False):
            raise RuntimeError("CUDA error: device lost")

    source = open_source(sequence)
    norm = default_for(source)
    project = ReviewProject.create(tmp_path / "p", sequence, source.kind, source.stems, source.shape, norm.to_dict())
    with pytest.raises(RuntimeError, match="device lost"):
        run_pipeline(source, len(source), norm, BrokenDetector(), project, 1, False, False, writers=1)
    assert reader_ends()  # not blocked on its full queue
    source.close()
