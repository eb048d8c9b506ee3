"""`irsam detect` end to end: folders, TIFF stacks, single images, bad frames, bad weights, normalisation options."""
from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from app.cli import main
from app.core.frames import open_source
from app.core.normalization import Normalization, default_for
from app.core.project import ReviewProject
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from model.build import build_irsam
from model.checkpoint import save_checkpoint
from model.config import tiny
from model.evaluate import make_detector
from tests.datasets import BANDED_HOT_PIXEL, banded_16bit_frames, expected_window_input

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    seq = generate_sequence(SyntheticConfig(n_frames=6, height=48, width=64, empty_fraction=0.0), seed=2)
    return write_sequence(seq, tmp_path_factory.mktemp("seq"))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {"normalization": {"mode": "window", "low": 0, "high": 255}})
    return path


def read_detections(project: Path) -> list[dict]:
    with open(project / "detections.csv") as f:
        return list(csv.DictReader(f))


def test_detect_with_weights_writes_a_review_project(sequence, tiny_weights, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights), "--save-logits", "--quiet"]) == 0
    stems = [p.stem for p in sorted((sequence / "images").glob("*.png"))]
    for stem in stems:
        mask = cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        logits = np.load(out / "logits" / f"{stem}.npy")
        assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
        assert logits.dtype == np.float32 and logits.shape == (48, 64)
        np.testing.assert_array_equal(mask == 255, logits > 0)
        assert (out / "edges" / f"{stem}.png").exists()
    project = ReviewProject.open(out)
    assert project.detector["name"] == "irsam" and len(project.detector["sha256"]) == 64
    assert project.detector["refine"] == "contrast" and project.detector["tta"] == "none"  # the defaults, recorded
    assert project.normalization["mode"] == "percentile"  # 16-bit source
    rows = read_detections(out)
    for stem in stems:
        mask = cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED) > 0
        n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        assert sum(r["stem"] == stem for r in rows) == n - 1
    assert "frames/s" in capsys.readouterr().out


def test_refine_off_keeps_the_networks_mask(sequence, tiny_weights, tmp_path):
    outs = {mode: tmp_path / mode for mode in ("contrast", "trim", "off")}
    for mode, out in outs.items():
        extra = [] if mode == "contrast" else ["--refine", mode]
        assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights), "--save-logits",
                     "--quiet", "--limit", "2", *extra]) == 0
        record = ReviewProject.open(out).detector
        assert record["refine"] == mode
        grow_steps = None if record["refinement"] is None else record["refinement"]["grow_steps"]
        assert grow_steps == {"contrast": 1, "trim": 0, "off": None}[mode]
    trimmed_pixels = changed_pixels = 0
    for path in sorted((outs["off"] / "logits").glob("*.npy")):
        before, after = np.load(path), np.load(outs["trim"] / "logits" / path.name)
        # the trim only turns positive pixels negative, keeping their magnitude
        np.testing.assert_array_equal(np.abs(after), np.abs(before))
        assert ((after > 0) <= (before > 0)).all()
        trimmed_pixels += int(((before > 0) & (after < 0)).sum())
        changed_pixels += int(((before > 0) != (np.load(outs["contrast"] / "logits" / path.name) > 0)).sum())
    assert trimmed_pixels > 0 and changed_pixels > 0


def test_rerun_keeps_the_stored_normalisation_and_committed_masks(sequence, tmp_path):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(out)
    norm = project.normalization
    label = np.zeros(project.frame_shape, bool)
    label[5, 5] = True
    project.commit_mask(project.stems[0], label)
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    again = ReviewProject.open(out)
    assert again.normalization == norm
    assert again.detector["name"] == "mpcm"
    np.testing.assert_array_equal(again.committed_mask(project.stems[0]), label)


def test_each_proposal_records_its_run_and_a_limited_rerun_names_the_frames_it_left(sequence, tmp_path, capsys,
                                                                                   tiny_weights):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--min-area", "2", "--limit", "2",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "4 frame(s) after --limit keep the proposal of an earlier run: IRSAM (tiny.pt)" in printed
    project = ReviewProject.open(out)
    origins = [project.proposal_origin(stem) for stem in project.stems]
    assert [o.method for o in origins] == ["mpcm"] * 2 + ["irsam"] * 4
    assert origins[0].label == "mpcm (targets >= 2 px)" and origins[0].sha256 is None
    assert origins[2].sha256 == hashlib.sha256(tiny_weights.read_bytes()).hexdigest() and origins[2].refine == "contrast"
    assert origins[2].config == "tiny" and origins[2].precision == "fp32" and origins[0].config is None
    assert origins[2].normalization == str(Normalization.from_dict(project.normalization))
    assert origins[0].time >= origins[5].time
    # frames left with proposals of the same settings (an earlier full run) are not reported
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--min-area", "2", "--quiet"]) == 0
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--min-area", "2", "--limit", "3",
                 "--quiet"]) == 0
    assert "earlier run" not in capsys.readouterr().out


def test_a_folder_that_is_not_a_project_is_never_written_into(sequence, tmp_path, capsys):
    out = tmp_path / "dataset"
    (out / "masks").mkdir(parents=True)
    truth = out / "masks" / "000000.png"
    truth.write_bytes(b"the analyst's ground truth")
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 2
    assert "not a review project and not empty" in capsys.readouterr().err
    assert truth.read_bytes() == b"the analyst's ground truth" and sorted(p.name for p in out.rglob("*")) == [
        "000000.png", "masks"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    assert main(["detect", str(sequence), "--out", str(a_file), "--method", "mpcm", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: {a_file} is a file, not a folder: detect into a new or empty folder "
                                       "(nothing was written)\n")
    assert a_file.read_text() == "kept"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["detect", str(sequence), "--out", str(empty), "--method", "mpcm", "--quiet", "--tta", "flips",
                 "--refine", "off"]) == 0
    assert "warning: --tta, --refine only apply to IRSAM; ignored for --method mpcm" in capsys.readouterr().err
    assert main(["detect", str(sequence), "--out", str(empty), "--method", "mpcm", "--quiet", "--tta", "flips"]) == 0
    assert "warning: --tta only applies to IRSAM; ignored for --method mpcm" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--limit", "0"], ["--limit", "-1"], ["--writers", "0"]])
def test_counts_below_one_are_refused_before_anything_is_written(sequence, tmp_path, capsys, option):
    out = tmp_path / "proj"
    with pytest.raises(SystemExit) as exit_:
        main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet", *option])
    assert exit_.value.code == 2
    assert f"argument {option[0]}: must be at least 1, got {option[1]}" in capsys.readouterr().err
    assert not out.exists()


def test_an_explicit_cuda_request_without_cuda_stops_instead_of_running_on_the_cpu(sequence, tmp_path, capsys,
                                                                                   monkeypatch, tiny_weights):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights), "--device", "cuda",
                 "--quiet"]) == 2
    assert "use --device cpu or auto" in capsys.readouterr().err and not out.exists()
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights), "--quiet"]) == 0  # auto


def test_skip_done_resumes_only_the_frames_not_yet_proposed_with_these_settings(sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    mpcm = ["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]
    assert main([*mpcm, "--limit", "2"]) == 0
    project = ReviewProject.open(out)
    first = {stem: (out / "masks" / f"{stem}.png").read_bytes() for stem in project.stems[:2]}
    capsys.readouterr()
    assert main([*mpcm, "--skip-done"]) == 0
    assert "2 frame(s) already proposed with these settings: skipped" in capsys.readouterr().out
    assert all((out / "masks" / f"{stem}.png").read_bytes() == data for stem, data in first.items())  # not redone
    project = ReviewProject.open(out)
    assert all(project.proposal_origin(stem).method == "mpcm" for stem in project.stems)
    assert len(read_detections(out)) == sum(len(project.detections(s)) for s in project.stems)
    # logits asked for now: frames proposed without them are not done
    assert main([*mpcm, "--skip-done", "--save-logits"]) == 0
    assert "already proposed" not in capsys.readouterr().out
    assert all((out / "logits" / f"{stem}.npy").exists() for stem in project.stems)
    # other settings: nothing counts as done
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet", "--skip-done"]) == 0
    assert "already proposed" not in capsys.readouterr().out
    assert all(ReviewProject.open(out).proposal_origin(stem).method == "tophat" for stem in project.stems)


def stopping_detector(real_make_detector, batches: int, stop):
    """A `make_detector` for `irsam detect` whose detector runs `batches` batches, then stops the run: `stop()`
    raises (a KeyboardInterrupt, a kill)."""
    def make_detector(*args, **kwargs):
        detector, record = real_make_detector(*args, **kwargs)

        class StoppedAfter:
            calls = 0
            device = detector.device

            def detect(self, images, features=False):
                StoppedAfter.calls += 1
                if StoppedAfter.calls > batches:
                    stop()
                return detector.detect(images)

        return StoppedAfter(), record

    return make_detector


def test_an_interrupted_run_keeps_what_it_saved_and_says_how_to_go_on(sequence, tmp_path, capsys, monkeypatch):
    import app.commands.detect as detect_command

    def interrupt():
        raise KeyboardInterrupt

    real_make_detector = detect_command.make_detector
    monkeypatch.setattr(detect_command, "make_detector", stopping_detector(real_make_detector, 2, interrupt))
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--batch-size", "1",
                 "--quiet"]) == 130
    assert "the proposals of 2 frame(s) of this run are saved" in capsys.readouterr().err
    project = ReviewProject.open(out)
    assert [project.has_prediction(s) for s in project.stems] == [True, True] + [False] * 4
    flushed = {row["stem"] for row in read_detections(out)}  # detections.csv written for the saved frames
    assert flushed == {stem for stem in project.stems[:2] if project.detections(stem)} and flushed
    monkeypatch.setattr(detect_command, "make_detector", real_make_detector)
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet", "--skip-done"]) == 0
    assert "2 frame(s) already proposed" in capsys.readouterr().out
    assert all(ReviewProject.open(out).has_prediction(s) for s in project.stems)


def test_a_kill_keeps_what_it_saved_and_says_so_as_ctrl_c_does(sequence, tmp_path, capsys, monkeypatch):
    """SIGTERM (kill, a service manager's stop, timeout) ended the run with no word; now as Ctrl-C, exit 143."""
    import os
    import signal

    import app.commands.detect as detect_command

    def kill():
        os.kill(os.getpid(), signal.SIGTERM)

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(detect_command, "make_detector", stopping_detector(detect_command.make_detector, 2, kill))
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--batch-size", "1",
                 "--quiet"]) == 143
    err = capsys.readouterr().err
    assert err.startswith("terminated: the proposals of 2 frame(s) of this run are saved") and "--skip-done" in err
    assert signal.getsignal(signal.SIGTERM) is handler  # put back after the run
    project = ReviewProject.open(out)
    assert [project.has_prediction(s) for s in project.stems] == [True, True] + [False] * 4


def test_a_failed_write_is_one_error_line_and_keeps_the_frames_saved(sequence, tmp_path, capsys, monkeypatch):
    from app.core.project import ProjectWriteError

    real_save = ReviewProject.save_prediction
    calls = []

    def save_until_the_disk_is_full(project, stem, *args, **kwargs):
        calls.append(stem)
        if len(calls) > 2:
            raise ProjectWriteError(f"could not write to {project.folder}: [Errno 28] No space left on device")
        return real_save(project, stem, *args, **kwargs)

    monkeypatch.setattr(ReviewProject, "save_prediction", save_until_the_disk_is_full)
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--batch-size", "1",
                 "--writers", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error: could not write" in err and "No space left" in err and "Traceback" not in err
    assert "the proposals of 2 frame(s) of this run are saved" in err and "--skip-done" in err
    assert [ReviewProject.open(out).has_prediction(s) for s in open_source(sequence).stems] == [True, True] + [False] * 4
    monkeypatch.setattr(ReviewProject, "save_prediction", real_save)
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet", "--skip-done"]) == 0
    assert all(ReviewProject.open(out).has_prediction(s) for s in open_source(sequence).stems)


def test_a_frame_unreadable_on_a_rerun_keeps_its_proposal_and_is_not_counted(tmp_path, capsys):
    folder = tmp_path / "frames"
    shutil.copytree(Path(write_sequence(generate_sequence(
        SyntheticConfig(n_frames=3, height=48, width=64, empty_fraction=0.0, n_targets=(2, 2)), seed=4),
        tmp_path / "seq")) / "images", folder)
    out = tmp_path / "proj"
    assert main(["detect", str(folder), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(out)
    counts = [len(project.detections(stem)) for stem in project.stems]
    assert counts[1] > 0
    (folder / f"{project.stems[1]}.png").write_bytes(b"")
    capsys.readouterr()
    assert main(["detect", str(folder), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert f"{counts[0] + counts[2]} targets" in text  # the frames this run detected, not the one it could not read
    assert "(0 bytes) (keeps an earlier run's proposal)" in text


def test_rerun_does_not_change_what_was_accepted(sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(out)
    first, second = project.stems[:2]
    accepted = project.prediction_mask(first)
    project.set_status(first, "accepted")
    capsys.readouterr()
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    assert "1 accepted frame(s) keep the mask they were accepted with" in capsys.readouterr().out
    again = ReviewProject.open(out)
    assert not np.array_equal(again.prediction_mask(first), accepted)  # the re-run did replace the proposal
    np.testing.assert_array_equal(again.committed_mask(first), accepted)
    assert again.committed_mask(second) is None


def test_bad_frames_are_listed_and_skipped(sequence, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in sorted((sequence / "images").glob("*.png"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "000004.png").write_bytes((sequence / "images" / "000004.png").read_bytes()[:200])  # truncated
    (folder / "000005.png").write_bytes(b"")
    out = tmp_path / "proj"
    assert main(["detect", str(folder), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "000004.png" in text and "truncated" in text
    assert "000005.png" in text and "0 bytes" in text
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == ["000001", "000002", "000003"]


def test_tiff_stack_and_single_image_sources(tmp_path):
    seq = generate_sequence(SyntheticConfig(n_frames=3, height=40, width=50), seed=1)
    stack = write_sequence(seq, tmp_path / "t", layout="tiff") / "stack.tif"
    assert main(["detect", str(stack), "--out", str(tmp_path / "p1"), "--method", "tophat", "--quiet"]) == 0
    assert len(list((tmp_path / "p1" / "masks").glob("stack_*.png"))) == 3
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), seq.frames[0])
    assert main(["detect", str(image), "--out", str(tmp_path / "p2"), "--method", "tophat", "--quiet"]) == 0
    assert (tmp_path / "p2" / "masks" / "one.png").exists()


def test_help_says_only_irsam_writes_edge_maps(sequence, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "IRSAM also writes its edge maps, OUT/edges/<stem>.png (the classical methods have none)" in text
    assert main(["detect", str(sequence), "--out", str(tmp_path / "p"), "--method", "tophat", "--quiet"]) == 0
    assert (tmp_path / "p" / "masks").is_dir() and not (tmp_path / "p" / "edges").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04garbage"])
def test_bad_weights_give_one_clear_line_not_a_traceback(sequence, tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "detect", str(sequence), "--out", str(tmp_path / "p"), "--weights", str(bad)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "bad.pt" in result.stderr


def test_config_is_refused_when_the_weights_name_another_network(sequence, tiny_weights, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights), "--config", "paper",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a tiny network, not the paper one asked for with --config" in err
    assert not out.exists()


def test_a_bare_state_dict_runs_as_the_network_its_tensors_name_unless_config_says_another(sequence, tmp_path, capsys):
    bare = tmp_path / "tiny_bare.pt"
    torch.save(build_irsam(tiny()).state_dict(), bare)
    args = ["detect", str(sequence), "--out", str(tmp_path / "p"), "--weights", str(bare), "--limit", "1", "--quiet"]
    assert main([*args, "--config", "paper"]) == 2
    assert "these are weights of the tiny config, not of paper: load them with --config tiny, or without --config" \
        in capsys.readouterr().err
    assert main(args) == 0
    assert ReviewProject.open(tmp_path / "p").detector["config"]["name"] == "tiny"


def test_missing_source_and_missing_weights(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nothing"), "--out", str(tmp_path / "p"), "--method", "tophat"]) == 2
    assert main(["detect", str(tmp_path), "--out", str(tmp_path / "p"), "--weights", str(tmp_path / "none.pt")]) == 2
    assert "error:" in capsys.readouterr().err


def test_size_gate_drops_targets_outside_the_range_and_is_recorded(tmp_path, capsys):
    # bright targets over 10 frames (enough for the bad-pixel search), the shipped weights
    config = SyntheticConfig(n_frames=10, height=96, width=128, n_targets=(3, 3), empty_fraction=0.0,
                             scr=(15.0, 30.0), sigma=(0.9, 2.1))
    sequence = write_sequence(generate_sequence(config, seed=3), tmp_path / "seq")
    plain, gated_out = tmp_path / "plain", tmp_path / "gated"
    assert main(["detect", str(sequence), "--out", str(plain), "--quiet"]) == 0
    areas = sorted(int(r["area"]) for r in read_detections(plain))
    assert areas[0] < 9 and areas[-1] > 15  # targets on both sides of the gate
    assert ReviewProject.open(plain).detector["size_gate"] is None
    assert main(["detect", str(sequence), "--out", str(gated_out), "--quiet", "--min-area", "9", "--max-area", "15"]) == 0
    assert "targets of 9-15 px kept" in capsys.readouterr().out
    assert sorted(int(r["area"]) for r in read_detections(gated_out)) == [a for a in areas if 9 <= a <= 15]
    assert ReviewProject.open(gated_out).detector["size_gate"] == {"min_area": 9, "max_area": 15}
    assert main(["detect", str(sequence), "--out", str(tmp_path / "bad"), "--max-area", "3", "--min-area", "5"]) == 2
    assert capsys.readouterr().err == "error: --max-area 3 is below --min-area 5\n"  # in the options' words
    assert main(["detect", str(sequence), "--out", str(tmp_path / "bad"), "--min-area", "-5"]) == 2
    assert capsys.readouterr().err == "error: --min-area must be at least 1 px, got -5\n"


@pytest.fixture
def banded_stack(tmp_path) -> Path:
    path = tmp_path / "banded.tif"
    tifffile.imwrite(path, np.stack(banded_16bit_frames()))
    return path


def test_fixed_window_is_what_the_detector_sees_with_bad_pixels_repaired_and_is_recorded(banded_stack, tmp_path):
    out = tmp_path / "proj"
    assert main(["detect", str(banded_stack), "--out", str(out), "--method", "tophat", "--save-logits", "--quiet",
                 "--window", "1000", "4000"]) == 0
    project = ReviewProject.open(out)
    assert project.normalization == {"mode": "window", "low": 1000.0, "high": 4000.0,
                                     "bad_pixels": [list(BANDED_HOT_PIXEL)]}
    tophat = make_detector("tophat", None)
    with open_source(banded_stack) as source:
        percentile_window = default_for(source)
    differs_from_default = False
    for i, (stem, frame) in enumerate(zip(project.stems, banded_16bit_frames())):
        seen = expected_window_input(frame, 1000, 4000)
        assert (seen[:, :10] == 0).all() and (seen[:, -10:] == 255).all()  # both bands saturate
        np.testing.assert_array_equal(project.prediction_logits(stem), tophat.detect([seen])[0].logits)
        default_logits = tophat.detect([percentile_window.apply(frame)])[0].logits
        differs_from_default |= not np.array_equal(default_logits, project.prediction_logits(stem))
    assert differs_from_default  # the window, not the default percentiles, made these predictions


def test_bad_pixel_repair_can_be_turned_off_and_the_project_records_it(banded_stack, tmp_path, capsys):
    """--no-bad-pixel-repair: the detector sees the hot pixel as recorded, and a re-run that asks for the repair
    again keeps the project's choice, as the app does (the default meets any stored normalisation)."""
    out = tmp_path / "proj"
    assert main(["detect", str(banded_stack), "--out", str(out), "--method", "tophat", "--save-logits", "--quiet",
                 "--window", "1000", "4000", "--no-bad-pixel-repair"]) == 0
    project = ReviewProject.open(out)
    unrepaired = {"mode": "window", "low": 1000.0, "high": 4000.0, "bad_pixel_repair": False}
    assert project.normalization == unrepaired
    x, y = BANDED_HOT_PIXEL
    frame = banded_16bit_frames()[0]
    assert frame[y, x] == 60000 and project.prediction_logits(project.stems[0])[y, x] > 0  # found, not repaired
    assert "window 1000..4000, bad pixels not repaired" in capsys.readouterr().out
    assert main(["detect", str(banded_stack), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert ReviewProject.open(out).normalization == unrepaired


def test_percentiles_are_recorded_with_the_window_they_give(banded_stack, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["detect", str(banded_stack), "--out", str(out), "--method", "tophat", "--quiet",
                 "--percentiles", "1", "99"]) == 0
    values = np.concatenate([f.ravel() for f in banded_16bit_frames()])
    low, high = np.percentile(values, [1, 99], method="inverted_cdf")
    assert ReviewProject.open(out).normalization == {
        "mode": "percentile", "low": float(low), "high": float(high), "p_low": 1.0, "p_high": 99.0, "sample": 10,
        "bad_pixels": [list(BANDED_HOT_PIXEL)],
    }
    assert f"normalisation percentile 1..99% of 10 frames -> window {low:g}..{high:g}, 1 bad pixels repaired" in \
        capsys.readouterr().out


@pytest.mark.parametrize("options, message", [
    (["--window", "4000", "1000"], "a fixed window needs LO < HI, got 4000 1000"),
    (["--window", "7", "7"], "a fixed window needs LO < HI, got 7 7"),
    (["--window", "0", "inf"], "a fixed window needs LO < HI, got 0 inf"),
    (["--percentiles", "-1", "50"], "percentiles need 0 <= LO < HI <= 100, got -1 50"),
    (["--percentiles", "5", "101"], "percentiles need 0 <= LO < HI <= 100, got 5 101"),
    (["--percentiles", "60", "40"], "percentiles need 0 <= LO < HI <= 100, got 60 40"),
])
def test_an_impossible_normalisation_is_one_line_and_exit_2(banded_stack, tmp_path, capsys, options, message):
    out = tmp_path / "proj"
    assert main(["detect", str(banded_stack), "--out", str(out), "--method", "tophat", "--quiet", *options]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()


def test_window_and_percentiles_exclude_each_other(banded_stack, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(banded_stack), "--out", str(tmp_path / "proj"), "--method", "tophat",
              "--window", "1000", "4000", "--percentiles", "1", "99"])
    assert exit_info.value.code == 2
    assert "argument --percentiles: not allowed with argument --window" in capsys.readouterr().err


def test_rerun_keeps_the_stored_window_and_refuses_another_normalisation(banded_stack, tmp_path, capsys):
    out = tmp_path / "proj"
    detect = ["detect", str(banded_stack), "--out", str(out), "--method", "tophat", "--quiet"]
    assert main([*detect, "--window", "1000", "4000"]) == 0
    stored = ReviewProject.open(out).normalization
    assert main([*detect, "--window", "1000", "4000"]) == 0  # the same window again
    assert main(detect) == 0  # no option: the stored one
    assert ReviewProject.open(out).normalization == stored
    masks = {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")}
    capsys.readouterr()
    assert main([*detect, "--percentiles", "0.5", "99.99"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} was made with normalisation window 1000..4000, 1 bad pixels repaired, not the percentiles "
        "0.5..99.99 asked for: detect into a new --out, or leave out --window/--percentiles/--no-bad-pixel-repair to keep "
        "it\n")
    assert main([*detect, "--window", "1000", "4000", "--no-bad-pixel-repair"]) == 2  # it has its bad pixels repaired
    assert "not the window 1000..4000, bad pixels not repaired asked for" in capsys.readouterr().err
    assert main([*detect, "--window", "1000", "5000"]) == 2
    assert ReviewProject.open(out).normalization == stored
    assert {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")} == masks


def test_a_project_made_before_unreadable_files_were_frames_still_opens_and_reruns(tmp_path, capsys):
    """Before session 11 a folder's empty or non-image files were left out of its frame list."""
    from app.session import ReviewSession

    folder = write_sequence(generate_sequence(SyntheticConfig(n_frames=5, height=32, width=40), seed=4),
                            tmp_path / "seq") / "images"
    (folder / "000003.png").write_bytes(b"")
    source = open_source(folder)
    old_stems = [s for s in source.stems if s != "000003"]
    out = folder.parent / "images.irsam-review"  # where the app keeps the project of this folder
    old = ReviewProject.create(out, folder, "folder", old_stems, source.shape, default_for(source).to_dict())
    old.set_status("000004", "rejected")
    session = ReviewSession.open(folder)
    assert session.project is not None and session.warnings == []
    assert session.status(source.stems.index("000004")).value == "rejected"
    assert ReviewProject.open(out).stems == list(source.stems)  # the empty file is a frame of the project now
    assert main(["detect", str(folder), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    assert ReviewProject.open(out).status("000004").value == "rejected"
    # a project over other frames is still refused
    other = tmp_path / "other"
    ReviewProject.create(other, folder, "folder", ["000001", "000009"], source.shape, default_for(source).to_dict())
    assert main(["detect", str(folder), "--out", str(other), "--method", "mpcm", "--quiet"]) == 2
    assert "holds a project over different frames" in capsys.readouterr().err


def test_a_project_of_another_source_is_refused_unless_follow_source_is_given(sequence, tmp_path, capsys):
    """Audit s18 finding 1 (B): another clip with the same frame names silently became the project's source."""
    from app.core.frames import frame_digest

    clip, other = tmp_path / "clip", tmp_path / "other"
    shutil.copytree(sequence, clip)
    shutil.copytree(sequence, other)
    replaced = sorted((other / "images").glob("*.png"))[0]  # one frame of the other clip differs
    cv2.imwrite(str(replaced), cv2.imread(str(replaced), cv2.IMREAD_UNCHANGED) // 2)
    out = tmp_path / "proj"
    assert main(["detect", str(clip), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(out)
    stem = project.stems[0]
    with open_source(clip) as source:
        project.commit_mask(stem, np.zeros(project.frame_shape, bool), frame_sha1=frame_digest(source.frame(0)))
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "project.lock"}
    capsys.readouterr()
    assert main(["detect", str(other), "--out", str(out), "--method", "mpcm", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} is the review project of {clip}, not of {other}: detect into a new --out, or give "
        f"--follow-source to make {other} its source (a moved clip)\n")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "project.lock"} == files
    clip.rename(tmp_path / "gone")
    assert main(["detect", str(other), "--out", str(out), "--method", "mpcm", "--quiet"]) == 2
    assert f"is the review project of {clip} (no longer there), not of {other}" in capsys.readouterr().err

    assert main(["detect", str(other), "--out", str(out), "--method", "mpcm", "--quiet", "--follow-source"]) == 0
    assert f"{out}: source changed from {clip} to {other} (--follow-source)" in capsys.readouterr().out
    again = ReviewProject.open(out)
    assert again.source_path == other and again.detector["name"] == "mpcm"
    with open_source(other) as source:  # the mask drawn on the first clip's frame is flagged on the other's
        assert again.frame_change(stem, source.frame(0)).mask
    assert main(["detect", str(other), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0  # its source now


def test_fp16_asked_on_the_cpu_says_bf16_runs_and_records_it(sequence, tiny_weights, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA runs fp16 as asked")
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights),
                 "--device", "cpu", "--precision", "fp16", "--limit", "1", "--quiet"]) == 0
    assert "warning: --precision fp16 runs on CUDA only; bf16 on the cpu" in capsys.readouterr().err
    project = ReviewProject.open(out)
    assert project.proposal_origin(project.stems[0]).precision == "bf16"
    # resuming with what actually ran finds the frame done
    assert main(["detect", str(sequence), "--out", str(out), "--weights", str(tiny_weights),
                 "--device", "cpu", "--precision", "bf16", "--limit", "1", "--quiet", "--skip-done"]) == 0
    assert "1 frame(s) already proposed" in capsys.readouterr().out


def test_a_clip_folder_and_its_images_folder_are_the_same_source(sequence, tmp_path, capsys):
    """Audit s18 finding 8: open_source reads CLIP/images when CLIP holds no image, so a project made over one is
    the other's too; a clip holding images of its own beside an images/ folder is another source than it."""
    clip = tmp_path / "clip"
    shutil.copytree(sequence, clip)
    assert (clip / "images").is_dir() and not list(clip.glob("*.png"))
    out, other = tmp_path / "proj", tmp_path / "proj2"
    assert main(["detect", str(clip), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert main(["detect", str(clip / "images"), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert "source changed" not in capsys.readouterr().out
    assert main(["detect", str(clip / "images"), "--out", str(other), "--method", "tophat", "--quiet"]) == 0
    assert main(["detect", str(clip), "--out", str(other), "--method", "tophat", "--quiet", "--skip-done"]) == 0
    assert "6 frame(s) already proposed" in capsys.readouterr().out
    # a folder whose own images are the frames is not its images/ folder
    assert ReviewProject.open(out).source_path == clip / "images"
    shutil.copy(next((clip / "images").glob("*.png")), clip / "own.png")
    assert main(["detect", str(clip), "--out", str(out), "--method", "tophat", "--quiet"]) == 2
    assert f"is the review project of {clip / 'images'}, not of {clip}" in capsys.readouterr().err


@pytest.mark.parametrize("out_is_a_file", [False, True])
def test_detect_closes_its_source_whether_it_ran_or_refused(sequence, tmp_path, monkeypatch, out_is_a_file):
    """It never closed it: a TIFF stack's file and memory map stayed open for every in-process call."""
    import app.commands.detect as detect_module

    closed = []

    def recording_open_source(path):
        source = open_source(path)
        close = source.close
        source.close = lambda: (closed.append(path), close())
        return source

    monkeypatch.setattr(detect_module, "open_source", recording_open_source)
    out = tmp_path / "out"
    if out_is_a_file:
        out.write_text("not a folder")
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--limit", "2",
                 "--quiet"]) == (2 if out_is_a_file else 0)
    assert closed == [str(sequence)]
