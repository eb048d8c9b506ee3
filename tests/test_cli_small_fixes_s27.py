"""CLI audit fixes: bounds of --target-size and --threshold-k, stats' repeated configs, info on a project (options
that describe a source, frames changed in the source), make-demo's damaged marker, a project path that does not
exist, and the --no-bad-pixel-repair help."""
import json

import pytest

from app.cli import main
from app.core.bad_pixels import MIN_FRAMES
from app.core.synthetic import SyntheticConfig, iter_frames, write_sequence
from model.classical import make_classical_detector

MAX_TARGET_SIZE, MAX_THRESHOLD_K = 128, 100.0  # the Detection dock's bounds, which the CLI shares


def fields(out: str) -> dict:
    pairs = (line.partition(":") for line in out.splitlines() if not line.startswith(" "))
    return {key.strip(): value.strip() for key, _, value in pairs}


@pytest.fixture
def sequence(tmp_path):
    return write_sequence(iter_frames(SyntheticConfig(n_frames=3, height=32, width=40), 3), tmp_path / "seq")


@pytest.mark.parametrize("command", ["detect", "eval"])
def test_a_huge_target_size_is_refused_when_parsed(command, sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    where = [str(sequence), "--out", str(out)] if command == "detect" else ["--clip", str(sequence)]
    with pytest.raises(SystemExit) as exit_:
        main([command, *where, "--method", "tophat", "--target-size", "100000"])
    assert exit_.value.code == 2
    assert f"argument --target-size: must be at most {MAX_TARGET_SIZE} px, got 100000" \
        in capsys.readouterr().err
    assert not out.exists()


def test_a_huge_threshold_factor_is_refused_when_parsed(sequence, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["detect", str(sequence), "--out", str(tmp_path / "proj"), "--method", "tophat", "--threshold-k", "1e30"])
    assert f"argument --threshold-k: must be at most {MAX_THRESHOLD_K:g}, got 1e30" \
        in capsys.readouterr().err
    assert not (tmp_path / "proj").exists()


def test_the_classical_detectors_refuse_sizes_and_factors_beyond_the_bounds():
    with pytest.raises(ValueError, match=f"target size must be at most {MAX_TARGET_SIZE} px, got {MAX_TARGET_SIZE + 1}"):
        make_classical_detector("mpcm", MAX_TARGET_SIZE + 1)
    with pytest.raises(ValueError, match=f"threshold factor k must be at most {MAX_THRESHOLD_K:g}, got 1e"):
        make_classical_detector("tophat", threshold_k=1e30)
    detector = make_classical_detector("tophat", MAX_TARGET_SIZE, MAX_THRESHOLD_K)
    assert (detector.target_size, detector.k) == (MAX_TARGET_SIZE, MAX_THRESHOLD_K)


def test_stats_counts_a_config_given_twice_once(capsys):
    assert main(["stats", "--config", "tiny", "--config", "paper", "--config", "tiny", "--size", "64", "--json"]) == 0
    assert [report["config"] for report in json.loads(capsys.readouterr().out)] == ["tiny", "paper"]


def test_info_on_a_project_warns_that_no_bad_pixel_repair_describes_a_source(sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--no-bad-pixel-repair"]) == 0
    assert capsys.readouterr().err == ("warning: --no-bad-pixel-repair describes a source; a project keeps its own "
                                       "normalisation (shown below)\n")


def test_info_on_a_project_says_what_detect_makes_of_frames_added_to_its_source(sequence, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    frames = sequence / "images"
    (frames / "000004.png").write_bytes((frames / "000003.png").read_bytes())
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert fields(capsys.readouterr().out)["source"] == \
        f"{sequence} (folder), 1 frame added since (000004): irsam detect takes it up"

    (frames / "000002a.png").write_bytes((frames / "000002.png").read_bytes())
    assert main(["info", str(out)]) == 0
    source = fields(capsys.readouterr().out)["source"]
    assert source.startswith(f"{sequence} (folder); irsam detect refuses it now: 1 frame inserted among the "
                             "project's frames (000002a), 1 added (000004). A project takes up only frames added "
                             "after its last frame (000003)")
    assert main(["detect", str(sequence), "--out", str(out), "--method", "tophat", "--quiet"]) != 0
    assert "1 frame inserted among the project's frames (000002a)" in capsys.readouterr().err


def test_make_demo_says_the_folder_holds_a_damaged_marker(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["make-demo", str(demo), "--frames", "2", "--width", "48", "--height", "40"]) == 0
    (demo / "demo.json").write_text("{not json")
    capsys.readouterr()
    assert main(["make-demo", str(demo), "--frames", "2", "--width", "48", "--height", "40"]) == 2
    assert capsys.readouterr().err == (f"error: {demo}: not empty, and holds a damaged demo.json (not the settings of "
                                       "an earlier make-demo sequence); choose a new or empty folder\n")


def test_a_project_path_that_does_not_exist_is_named_so(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["export", str(missing), "--out", str(tmp_path / "out.csv")]) != 0
    assert capsys.readouterr().err == f"error: {missing} does not exist\n"


def test_no_bad_pixel_repair_help_says_short_sequences_get_no_repair(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"are repaired, in a sequence of at least {MIN_FRAMES} frames (fewer cannot tell a stuck pixel from a " \
           "target: none is searched)" in help_text
