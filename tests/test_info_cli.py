import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from app.cli import main
from app.core.project import ReviewProject
from app.core.synthetic import SyntheticConfig, iter_frames, write_sequence
from tests.datasets import banded_16bit_frames

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIP_156 = SHARED / "data" / "sequences" / "IR_DRONE_156"


def fields(out: str) -> dict:
    pairs = (line.partition(":") for line in out.splitlines() if not line.startswith(" "))
    return {key.strip(): value.strip() for key, _, value in pairs}


def test_info_real_clip(capsys):
    assert main(["info", str(CLIP_156)]) == 0
    out = capsys.readouterr().out
    f = fields(out)
    assert f["kind"] == "folder"
    assert f["frames"] == "307 readable, 0 unreadable"
    assert f["size"].startswith("320x256") and f["dtype"] == "uint8"
    assert f["normalisation"] == "window 0..255"
    assert "boxes.csv" in f["ground truth"]


def test_info_16bit_multipage_tiff(tmp_path, capsys):
    write_sequence(iter_frames(SyntheticConfig(n_frames=12, height=64, width=80), seed=2), tmp_path, layout="tiff")
    assert main(["info", str(tmp_path / "stack.tif"), "--no-scan"]) == 0
    f = fields(capsys.readouterr().out)
    assert f["kind"] == "tiff (memory-mapped)" and f["frames"].startswith("12 readable")
    assert f["size"].startswith("80x64") and f["dtype"] == "uint16"
    assert f["normalisation"].startswith("percentile 0.5..99.99% of 12 frames -> window ")
    assert "masks" in f["ground truth"]


@pytest.mark.parametrize("stored, shown", [("int16", "float32 (stored as int16)"),
                                           ("float64", "float32 (stored as float64)"), ("float32", "float32")])
def test_info_names_the_sample_type_a_tiff_stores_beside_the_one_it_is_read_as(tmp_path, capsys, stored, shown):
    """Signed 16-bit and 64-bit float frames are read as float32, and info said "dtype: float32" only."""
    values = (np.arange(5 * 16 * 20).reshape(5, 16, 20) - 400).astype(stored)
    tifffile.imwrite(tmp_path / "stack.tif", values)
    tifffile.imwrite(tmp_path / "one.tif", values[0])
    (tmp_path / "frames").mkdir()
    for k, frame in enumerate(values):
        tifffile.imwrite(tmp_path / "frames" / f"{k:06d}.tif", frame)
    for source in ("stack.tif", "one.tif", "frames"):
        assert main(["info", str(tmp_path / source)]) == 0
        assert fields(capsys.readouterr().out)["dtype"] == shown, source


def test_info_names_the_thumbnail_page_a_tiff_stack_skips(tmp_path, capsys):
    stack = np.stack([np.full((16, 20), 100 * k, np.uint16) for k in range(5)])
    with tifffile.TiffWriter(tmp_path / "stack.tif") as writer:
        writer.write(np.zeros((4, 5, 3), np.uint8), photometric="rgb")  # a colour preview
        writer.write(stack)
    assert main(["info", str(tmp_path / "stack.tif")]) == 0
    f = fields(capsys.readouterr().out)
    assert f["frames"] == "5 readable, 0 unreadable" and f["size"] == "20x16 (width x height)"
    assert f["dtype"] == "uint16" and f["value range"] == "0..400 over all readable frames"
    assert f["skipped pages"] == "page 1: 5x4 thumbnail or preview, not a frame"


def test_info_counts_a_hyperstack_s_time_points_and_names_the_channels_not_read(tmp_path, capsys):
    """10 time points x 2 channels, the second a constant 100: info said 20 frames, its value range from 100, and the
    window spanned both channels (radiometric audit)."""
    times = np.stack([np.full((16, 20), 7000 + 10 * k, np.uint16) for k in range(10)])
    hyperstack = np.stack([times, np.full_like(times, 100)], axis=1)
    tifffile.imwrite(tmp_path / "hyper.tif", hyperstack, imagej=True, metadata={"axes": "TCYX"})
    assert main(["info", str(tmp_path / "hyper.tif")]) == 0
    f = fields(capsys.readouterr().out)
    assert f["frames"] == "10 readable, 0 unreadable" and f["value range"] == "7000..7090 over all readable frames"
    assert f["skipped pages"] == "channel 2 of 2 (axis C) not read: the frames are those of channel 1"


def test_info_shows_the_normalisation_the_options_give(tmp_path, capsys):
    frames = banded_16bit_frames()
    tifffile.imwrite(tmp_path / "banded.tif", np.stack(frames))
    stack = str(tmp_path / "banded.tif")
    assert main(["info", stack, "--window", "1000", "4000"]) == 0
    assert fields(capsys.readouterr().out)["normalisation"] == "window 1000..4000, 1 bad pixels repaired"
    assert main(["info", stack, "--percentiles", "1", "99"]) == 0
    low, high = np.percentile(np.concatenate([f.ravel() for f in frames]), [1, 99], method="inverted_cdf")
    assert fields(capsys.readouterr().out)["normalisation"] == \
        f"percentile 1..99% of 10 frames -> window {low:g}..{high:g}, 1 bad pixels repaired"
    assert main(["info", stack, "--window", "4000", "1000"]) == 2
    assert capsys.readouterr().err == "error: a fixed window needs LO < HI, got 4000 1000\n"

def test_info_lists_bad_files(tmp_path, capsys):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((16, 20), 10 * i, np.uint8))
    (tmp_path / "005.png").write_bytes(b"")
    data = (tmp_path / "000.png").read_bytes()
    (tmp_path / "006.png").write_bytes(data[:30])
    cv2.imwrite(str(tmp_path / "007.png"), np.zeros((16, 20), np.uint16))
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert fields(out)["frames"] == "5 readable, 3 unreadable"
    assert fields(out)["value range"] == "0..40 over all readable frames"
    assert f"{tmp_path / '005.png'}: empty file (0 bytes)" in out
    assert f"{tmp_path / '006.png'}: truncated PNG" in out
    assert f"{tmp_path / '007.png'}: sample type uint16 differs from the sequence's uint8" in out


def test_info_on_frames_of_no_data_at_all_says_so_and_why_they_cannot_be_reviewed(tmp_path, capsys):
    """Odd-input audit 25: float frames that are NaN everywhere ended info in a traceback."""
    for i in range(2):
        tifffile.imwrite(tmp_path / f"f{i}.tif", np.full((16, 16), np.nan, np.float32))
    assert main(["info", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert fields(captured.out)["value range"] == "no value (NaN or inf only) over all readable frames"
    why = "every frame sampled is no data (NaN or inf only): no input window can be computed from it"
    assert fields(captured.out)["normalisation"] == f"none: {why}"
    assert captured.err == f"error: {tmp_path} cannot be detected or reviewed: {why}\n"


def test_info_leaves_infinite_values_out_of_the_value_range(tmp_path, capsys):
    frames = np.full((2, 16, 16), 21.5, np.float32)
    frames[:, 3, 4], frames[:, 5, 6], frames[1, 0, 0] = np.inf, -np.inf, 30.25
    tifffile.imwrite(tmp_path / "temps.tif", frames)
    assert main(["info", str(tmp_path / "temps.tif")]) == 0
    assert fields(capsys.readouterr().out)["value range"] == "21.5..30.25 over all readable frames"


def test_info_missing_and_unreadable(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'nope'}: no such file or folder"
    (tmp_path / "a.png").write_text("not an image")
    assert main(["info", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "none of the 1 image files is readable" in err


def test_make_demo_then_info(tmp_path, capsys):
    assert main(["make-demo", str(tmp_path / "d"), "--frames", "4", "--width", "48", "--height", "40"]) == 0
    assert len(list((tmp_path / "d" / "images").glob("*.png"))) == 4
    assert len(list((tmp_path / "d" / "masks").glob("*.png"))) == 4


def test_make_demo_with_its_defaults_writes_the_apps_demo(tmp_path):
    from app.core.frames import read_gray
    from app.core.synthetic import DEMO_CONFIG, DEMO_SEED, iter_frames

    assert main(["make-demo", str(tmp_path / "d")]) == 0
    frames = iter_frames(DEMO_CONFIG, DEMO_SEED)
    for stem in ("000001", "000002"):
        np.testing.assert_array_equal(read_gray(tmp_path / "d" / "images" / f"{stem}.png"), next(frames).frame)


def test_info_subprocess_missing_path(tmp_path):
    run = subprocess.run([sys.executable, "-m", "app.cli", "info", str(tmp_path / "missing")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stdout == "" and len(run.stderr.strip().splitlines()) == 1
    assert "no such file or folder" in run.stderr and "Traceback" not in run.stderr


def test_cli_version_unknown_option_and_a_closed_pipe(tmp_path, capsys, monkeypatch):
    from app import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("irsam ")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["info", str(tmp_path), "--methd"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage: irsam info" in err and "unrecognized arguments: --methd" in err
    import app.commands.info as info_command

    def reader_gone(args):
        raise BrokenPipeError

    monkeypatch.setattr(info_command, "run", reader_gone)
    saved_stdout = os.dup(1)  # main points fd 1 at /dev/null once the pipe is gone
    try:
        assert cli.main(["info", str(tmp_path)]) == 0
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)


def test_info_on_a_review_project_says_its_progress_and_which_runs_proposed(tmp_path, capsys):
    sequence = write_sequence(iter_frames(SyntheticConfig(n_frames=5, height=32, width=40), 3), tmp_path / "seq")
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--limit", "2", "--quiet"]) == 0
    project = ReviewProject.open(out)
    project.set_status(project.stems[0], "rejected")
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    info = fields(printed)
    assert info["frames"] == "5, 40x32 (width x height)"
    assert info["review"].startswith("4 unreviewed, 0 accepted, 0 corrected, 1 rejected")
    assert info["proposals"] == "5 frames:" and info["committed"].startswith("0 frames")
    assert "  3 by mpcm" in printed.splitlines() and "  2 by tophat" in printed.splitlines()


def test_a_malformed_boxes_csv_is_named_and_the_masks_beside_it_still_count(tmp_path, capsys):
    clip = tmp_path / "clip"
    write_sequence(iter_frames(SyntheticConfig(n_frames=3, height=32, width=40), seed=1), clip)
    (clip / "boxes.csv").write_text("frame,class,x,y,w,h\n1,DRONE,4,5,3,3\n2,DRONE,79.5\n")
    assert main(["info", str(clip), "--no-scan"]) == 0
    captured = capsys.readouterr()
    assert fields(captured.out)["ground truth"] == f"masks in {clip / 'masks'}"
    assert f"warning: {clip / 'boxes.csv'}: line 3: " in captured.err
    assert captured.err.rstrip().endswith("its boxes are not used")


def test_info_on_a_project_says_when_its_source_is_gone_or_lacks_frames(tmp_path, capsys):
    sequence = write_sequence(iter_frames(SyntheticConfig(n_frames=5, height=32, width=40), 3), tmp_path / "seq")
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert fields(capsys.readouterr().out)["source"] == f"{sequence} (folder)"

    for stem in ("000002", "000004"):
        (sequence / "images" / f"{stem}.png").rename(tmp_path / f"{stem}.png")
    assert main(["info", str(out)]) == 0
    assert fields(capsys.readouterr().out)["source"] == \
        f"{sequence} (folder), 2 of the project's 5 frames missing: 000002, 000004"

    sequence.rename(tmp_path / "moved")
    assert main(["info", str(out)]) == 0
    assert fields(capsys.readouterr().out)["source"] == \
        f"{sequence} (folder), cannot be read: {sequence}: no such file or folder; export and import-labels need it"


def test_a_damaged_proposal_counts_as_damaged_only(tmp_path, capsys):
    sequence = write_sequence(iter_frames(SyntheticConfig(n_frames=3, height=32, width=40), 3), tmp_path / "seq")
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    damaged = out / "masks" / "000002.png"
    damaged.write_bytes(damaged.read_bytes()[:60])
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert fields(printed)["proposals"] == "2 frames:" and "  2 by mpcm" in printed.splitlines()
    assert f"  {damaged}: truncated PNG (no IEND chunk)" in printed.splitlines()


def test_a_damaged_label_is_not_counted_as_committed(tmp_path, capsys):
    sequence = write_sequence(iter_frames(SyntheticConfig(n_frames=3, height=32, width=40), 3), tmp_path / "seq")
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    project = ReviewProject.open(out)
    for stem in project.stems:
        project.commit_mask(stem, np.zeros((32, 40), bool))
    damaged = out / "labels" / "000002.png"
    damaged.write_bytes(damaged.read_bytes()[:60])
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert fields(printed)["committed"] == "2 frames with an analyst's mask"  # the damaged one: listed below only
    assert f"  {damaged}: truncated PNG (no IEND chunk)" in printed.splitlines()


def test_info_reads_a_projects_frames_only_when_few_hold_a_fingerprint_or_when_asked(tmp_path, capsys, monkeypatch):
    """Audit s18 item 9: `irsam info PROJECT` decoded every fingerprinted frame by default (about 5 ms each, 46 s
    for 10,000 frames) and printed nothing meanwhile. Past CHECK_FRAMES_AUTO frames it says how to check them."""
    import app.commands.info as info_command
    from app.core.frames import FolderSource

    sequence = write_sequence(iter_frames(SyntheticConfig(n_frames=5, height=32, width=40), 3), tmp_path / "seq")
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    read = []
    real_frame = FolderSource.frame
    monkeypatch.setattr(FolderSource, "frame", lambda self, i: read.append(i) or real_frame(self, i))
    capsys.readouterr()
    assert main(["info", str(out)]) == 0  # 5 frames hold a fingerprint: read
    assert fields(capsys.readouterr().out)["changed"] == "none of the 5 frames holding a fingerprint"
    assert len(read) == 5

    monkeypatch.setattr(info_command, "CHECK_FRAMES_AUTO", 4)
    read.clear()
    assert main(["info", str(out)]) == 0
    assert fields(capsys.readouterr().out)["changed"] == (
        f"not checked: 5 frames hold a fingerprint, more than the 4 read by default (a few ms each): irsam info {out} "
        "--check-frames reads them to find those replaced on disk")
    assert read == []
    for no in ("--no-check-frames", "--no-scan"):
        assert main(["info", str(out), no]) == 0
        assert fields(capsys.readouterr().out)["changed"] == (
            f"not checked (5 frames hold a fingerprint): irsam info {out} --check-frames reads them to find those "
            "replaced on disk")
    assert read == []
    files = sorted((sequence / "images").glob("*.png"))
    cv2.imwrite(str(files[3]), cv2.imread(str(files[3]), cv2.IMREAD_UNCHANGED)[::-1].copy())
    assert main(["info", str(out), "--check-frames"]) == 0
    assert fields(capsys.readouterr().out)["changed"].startswith(
        f"1 of the 5 frames holding a fingerprint differ from the pixels their work was made on, 0 of them reviewed "
        f"(to review again; export skips them): {files[3].stem}")
    assert len(read) == 5


def test_info_on_a_clip_with_a_copy_among_its_numbered_frames(tmp_path, capsys):
    """A copy 000012a.png has no frame number: it has no boxes (info crashed checking them against its frame)."""
    images = tmp_path / "clip" / "images"
    images.mkdir(parents=True)
    for n in range(1, 21):
        cv2.imwrite(str(images / f"{n:06d}.png"), np.full((32, 40), 10 * n % 200, np.uint8))
    (images / "000012a.png").write_bytes((images / "000012.png").read_bytes())
    rows = [f"{n},DRONE,4,5,3,3" for n in range(1, 20)] + ["20,DRONE,60,5,3,3"]  # frame 20's: outside its 40 px
    (tmp_path / "clip" / "boxes.csv").write_text("frame,class,x,y,w,h\n" + "\n".join(rows) + "\n")
    assert main(["info", str(images), "--no-scan"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert ("               boxes.csv paired by name: 000012a.png does not end in a frame number: it has no ground "
            "truth; the others are paired by their numbers\n") in captured.out
    assert "line 21 (frame 20: x 60" in captured.err  # frame 20's box, outside the frame, is named
