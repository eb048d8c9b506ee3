"""`irsam eval` end to end on a few real NUAA-SIRST images and clip frames, read in place."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from app import cli
from model.evaluate import evaluate_clip, make_detector
from model.metrics import read_boxes_csv
from tests.datasets import BANDED_HOT_PIXEL, banded_16bit_frames, expected_window_input

SHARED = Path(__file__).resolve().parents[2] / "shared"
NUAA = SHARED / "data/nuaa-sirst"
CLIP = SHARED / "data/sequences/IR_DRONE_156"


def run_eval(*argv: str) -> int:
    return cli.main(["eval", *argv])


@pytest.fixture
def split8(tmp_path) -> Path:
    stems = (NUAA / "splits/idx_427/test.txt").read_text().split()[:8]
    path = tmp_path / "test8.txt"
    path.write_text("\n".join(stems))
    return path


def test_dataset_eval_writes_table_json_and_plots(tmp_path, split8, capsys):
    out, plots = tmp_path / "result.json", tmp_path / "plots"
    rc = run_eval(
        "--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
        "--split", str(split8), "--json", str(out), "--plots", str(plots),
    )
    assert rc == 0
    table = capsys.readouterr().out
    assert "IoU" in table and "nIoU" in table and "Fa x1e-6" in table and "tophat" in table
    result = json.loads(out.read_text())
    assert result["n_images"] == 8 and result["method"] == "tophat" and result["fa_mode"] == "corrected"
    assert 0 <= result["iou"] <= 1 and 0 <= result["pd"] <= 1 and result["frames_per_second"] > 0
    assert 0.5 < result["roc"]["auc"] <= 1
    curve = result["pd_fa_curve"]
    assert len(curve["pd"]) == len(curve["thresholds"])
    at_decision = curve["thresholds"].index(0.0)  # the table's operating point is on the curve
    assert (curve["pd"][at_decision], curve["fa"][at_decision]) == (result["pd"], result["fa"])
    fpr = np.array(result["roc"]["fpr"])
    assert len(fpr) <= 512 and ((fpr > 0) & (fpr < 1e-4)).sum() >= 20  # where a detector works, not only fpr 0.002+
    for name in ("roc_tophat.png", "pd_fa_tophat.png"):
        assert cv2.imread(str(plots / name)).shape == (480, 640, 3)


def test_errors_name_each_missed_target_and_false_alarm(tmp_path, split8, capsys):
    out = tmp_path / "result.json"
    common = ["--method", "pstnn", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
              "--split", str(split8)]
    assert run_eval(*common, "--errors", "--json", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    result = json.loads(out.read_text())
    errors = result["errors"]
    by_area = errors["pd_by_target_area"]
    assert sum(b["targets"] for b in by_area.values()) == result["n_targets"]
    assert sum(b["hits"] for b in by_area.values()) == result["hits"]
    missed = sum(len(f["missed"]) for f in errors["frames"])
    assert missed == result["n_targets"] - result["hits"] > 0  # PSTNN misses large targets here
    assert sum(a["area"] for f in errors["frames"] for a in f["false_alarms"]) == result["false_alarm_pixels"]
    assert errors["frames"] and {f["image"] for f in errors["frames"]} <= set(split8.read_text().split())
    assert printed[2].startswith("Pd by target area: 1-9 px ")
    assert len(printed) == 3 + len(errors["frames"])
    first = errors["frames"][0]
    assert printed[3].startswith(f"  {first['image']}: ")
    assert run_eval(*common, "--json", str(out)) == 0
    assert "errors" not in json.loads(out.read_text()) and "Pd by target area" not in capsys.readouterr().out
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--errors") == 2
    assert "--errors needs pixel ground truth" in capsys.readouterr().err


def test_irsam_eval_refines_by_default_and_records_it(tmp_path, split8):
    from app.paths import DEFAULT_WEIGHTS

    results = {}
    for refine in ("contrast", "off"):
        out = tmp_path / f"{refine}.json"
        extra = [] if refine == "contrast" else ["--refine", "off"]
        assert run_eval("--weights", str(DEFAULT_WEIGHTS), "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
                        "--split", str(split8), "--device", "cpu", "--json", str(out), *extra) == 0
        results[refine] = json.loads(out.read_text())
        options = results[refine]["detector_options"]
        assert (options["tta"], options["refine"]) == ("none", refine)
        assert (options["refinement"] is None) == (refine == "off")
    refined, raw = results["contrast"], results["off"]
    # the refinement reshapes found targets: the same targets, a different IoU
    assert refined["pd"] == raw["pd"] and refined["iou"] != raw["iou"]


def test_legacy_fa_at_512(tmp_path, split8):
    out = tmp_path / "result.json"
    rc = run_eval(
        "--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
        "--split", str(split8), "--fa", "legacy", "--resize-512", "--limit", "3", "--json", str(out),
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["fa_mode"] == "legacy" and result["resize_to"] == 512
    assert result["total_pixels"] == 3 * 512 * 512


def test_clip_eval_with_box_ground_truth(tmp_path, capsys):
    out = tmp_path / "clip.json"
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--limit", "20", "--json", str(out)) == 0
    assert "FA/frame" in capsys.readouterr().out
    result = json.loads(out.read_text())
    boxes = read_boxes_csv(CLIP / "boxes.csv")
    assert result["n_frames"] == 20
    assert result["n_targets"] == sum(len(boxes.get(i, [])) for i in range(20))
    assert 0 <= result["pd"] <= 1 and result["false_alarms_per_frame"] >= 0


def test_clip_eval_of_a_range_of_frames_keeps_their_boxes(tmp_path, capsys):
    out = tmp_path / "later.json"
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--frames", "301-", "--json", str(out)) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    boxes = read_boxes_csv(CLIP / "boxes.csv")
    assert result["frames"] == [301, 307] and result["n_frames"] == 7 and "301-307" in table
    assert result["n_targets"] == sum(len(boxes.get(i, [])) for i in range(300, 307))
    direct = evaluate_clip(make_detector("tophat", None), CLIP, start=300)
    assert {k: direct[k] for k in ("hits", "false_alarms", "n_targets")} == {
        k: result[k] for k in ("hits", "false_alarms", "n_targets")}
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--frames", "3-4", "--json", str(out)) == 0
    assert json.loads(out.read_text())["frames"] == [3, 4]

    capsys.readouterr()
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--frames", "400-") == 2
    assert "--frames 400-: the clip has 307 frames" in capsys.readouterr().err
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--frames", "3-4", "--limit", "2") == 2
    assert "not both" in capsys.readouterr().err
    assert run_eval("--method", "tophat", "--images", "x", "--masks", "y", "--frames", "3-4") == 2
    assert "--frames selects frames of a --clip" in capsys.readouterr().err
    for bad in ("8-5", "0-3", "5", "a-b"):
        with pytest.raises(SystemExit):
            run_eval("--method", "tophat", "--clip", str(CLIP), "--frames", bad)
        assert "--frames: expected A-B" in capsys.readouterr().err


def test_missing_weights_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    rc = run_eval("--weights", str(missing), "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"))
    assert rc == 2
    assert f"weights file not found: {missing}" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        make_detector(None, str(missing))


def test_config_loads_a_bare_state_dict_and_is_refused_for_a_file_naming_another_network(tmp_path, capsys):
    import torch

    from model.build import build_irsam
    from model.checkpoint import save_checkpoint
    from model.config import tiny

    model = build_irsam(tiny())
    bare, ours = tmp_path / "tiny_bare.pt", tmp_path / "tiny.pt"
    torch.save(model.state_dict(), bare)
    save_checkpoint(ours, model, tiny(), {})
    clip = ["--clip", str(CLIP), "--limit", "1"]
    assert run_eval("--weights", str(bare), "--config", "paper", *clip) == 2
    assert "load them with --config tiny, or without --config" in capsys.readouterr().err
    assert run_eval("--weights", str(bare), "--config", "tiny", *clip) == 0
    assert run_eval("--weights", str(bare), *clip) == 0  # told from its tensors
    capsys.readouterr()
    assert run_eval("--weights", str(ours), "--config", "paper", *clip) == 2
    assert "holds a tiny network, not the paper one asked for with --config" in capsys.readouterr().err


def test_make_detector_needs_exactly_one_source():
    assert make_detector("pstnn", None).name == "pstnn"
    with pytest.raises(ValueError):
        make_detector(None, None)
    with pytest.raises(ValueError):
        make_detector("tophat", "weights.pt")


def test_bad_argument_combinations(capsys):
    assert run_eval("--method", "tophat", "--images", str(NUAA / "images")) == 2
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--plots", "x") == 2
    assert "error" in capsys.readouterr().err
    # a clip's boxes have no 512x512 or legacy-Fa variant: refused, not ignored
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--resize-512") == 2
    assert capsys.readouterr().err == ("error: --resize-512 needs pixel ground truth (--images/--masks): a clip's "
                                       "boxes are scored at native size\n")
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--fa", "legacy") == 2
    assert capsys.readouterr().err == ("error: --fa legacy needs pixel ground truth (--images/--masks): a clip's "
                                       "boxes give false alarms per frame, not a count of false-alarm pixels\n")


def test_a_missing_images_or_masks_folder_is_named_with_its_option(tmp_path, capsys):
    """ML audit 25: the message was "[Errno 2] No such file or directory: ..." whichever option was wrong."""
    missing = tmp_path / "nope"
    assert run_eval("--method", "tophat", "--images", str(missing), "--masks", str(NUAA / "masks")) == 2
    assert capsys.readouterr().err == f"error: --images {missing}: no such folder or TIFF stack\n"
    assert run_eval("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(missing)) == 2
    assert capsys.readouterr().err == f"error: --masks {missing}: no such folder\n"
    stack = tmp_path / "stack.tif"  # with a TIFF stack as --images too (review audit 25)
    tifffile.imwrite(stack, np.zeros((2, 8, 8), np.uint8))
    assert run_eval("--method", "tophat", "--images", str(stack), "--masks", str(missing)) == 2
    assert capsys.readouterr().err == f"error: --masks {missing}: no such folder\n"
    assert run_eval("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(stack)) == 2
    assert capsys.readouterr().err == f"error: --masks {stack}: a file; give the folder of the masks\n"
    # the images folder given as --masks scored every image as a target-less blur (IoU 0, exit 0)
    assert run_eval("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "images")) == 2
    assert capsys.readouterr().err == (f"error: --masks {NUAA / 'images'} is the --images folder: give the folder of "
                                       "the masks\n")


def test_a_copy_of_the_images_given_as_masks_is_refused_and_real_masks_beside_it_still_score(tmp_path, split8,
                                                                                               capsys):
    """A copy of the images folder given as --masks scored IoU 0 with only a warning about blurred masks; a blurred
    mask (values between 0 and 255) is still scored, with the warning."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    stems = split8.read_text().split()
    for stem in stems:
        shutil.copy(NUAA / "images" / f"{stem}.png", images)
        shutil.copy(NUAA / "images" / f"{stem}.png", masks)
    shutil.copy(NUAA / "masks" / f"{stems[0]}.png", masks)  # one real mask
    blurred = cv2.GaussianBlur(cv2.imread(str(NUAA / "masks" / f"{stems[1]}.png"), cv2.IMREAD_GRAYSCALE), (3, 3), 0)
    cv2.imwrite(str(masks / f"{stems[1]}.png"), blurred)
    assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks),
                    "--json", str(tmp_path / "r.json")) == 0
    err = capsys.readouterr().err
    copies = [line for line in err.splitlines() if "the mask is a copy of its image, not a mask" in line]
    assert sorted(line.split()[1].rstrip(":") for line in copies) == sorted(str(masks / f"{s}.png") for s in stems[2:])
    assert "1 of 2 masks have values strictly between 0 and 255" in err
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["n_images"], result["n_skipped"]) == (2, len(stems) - 2)
    for stem in stems[1:]:  # only copies: nothing to score
        shutil.copy(images / f"{stem}.png", masks / f"{stem}.png")
    shutil.copy(images / f"{stems[0]}.png", masks / f"{stems[0]}.png")
    assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks)) == 2
    assert f"error: none of the {len(stems)} images could be scored" in capsys.readouterr().err


def test_blurred_8bit_masks_of_16bit_frames_are_scored_with_the_warning(tmp_path, capsys):
    """Diff review 26: the copy check read each blurred mask as the frames are read, and a mask of another sample
    type than the frames (8-bit beside 16-bit) then had its sample skipped: none could be scored."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        frame = rng.normal(1000, 20, (64, 64)).astype(np.uint16)
        frame[30:34, 30:34] = 3000
        cv2.imwrite(str(images / f"{k:03d}.png"), frame)
        mask = np.zeros((64, 64), np.uint8)
        mask[30:34, 30:34] = 255
        cv2.imwrite(str(masks / f"{k:03d}.png"), cv2.GaussianBlur(mask, (3, 3), 0))
    assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks)) == 0
    out, err = capsys.readouterr()
    assert "3 of 3 masks have values strictly between 0 and 255" in err and "skipped" not in err
    assert out.splitlines()[1].split()[:2] == ["tophat", "25.00"]


def test_a_tiff_stack_scores_as_the_folder_of_its_pages_does(tmp_path, capsys):
    """`make-demo --tiff` writes stack.tif and masks/stack_000001.png, ...: the pages are paired with the masks by the
    names detect and the app give them, and score exactly as the same frames in a folder (16-bit: through the same
    window; 8-bit: as they are)."""
    import tifffile

    from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence

    sequence = generate_sequence(SyntheticConfig(n_frames=6, height=48, width=64, n_targets=(1, 2)), seed=4)
    stack = write_sequence(sequence, tmp_path / "stack16", layout="tiff", name="stack")
    folder = write_sequence(sequence, tmp_path / "folder16", name="stack")
    scores = []
    for images, masks in ((stack / "stack.tif", stack / "masks"), (folder / "images", folder / "masks")):
        out = tmp_path / f"{len(scores)}.json"
        assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks), "--json", str(out)) == 0
        result = json.loads(out.read_text())
        scores.append((result["n_images"], result["iou"], result["niou"], result["pd"], result["fa"],
                       result["normalization"]))
    assert scores[0] == scores[1] and scores[0][0] == 6

    pages = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((folder / "images").glob("*.png"))]
    eight_bit = [np.clip(page // 64, 0, 255).astype(np.uint8) for page in pages]
    tifffile.imwrite(tmp_path / "stack8.tif", np.stack(eight_bit))
    (tmp_path / "pages8").mkdir()
    for k, page in enumerate(eight_bit):
        cv2.imwrite(str(tmp_path / "pages8" / f"stack8_{k + 1:06d}.png"), page)
    masks8 = tmp_path / "masks8"
    shutil.copytree(folder / "masks", masks8)
    for mask in masks8.iterdir():
        mask.rename(mask.with_name(f"stack8_{mask.name}"))
    (tmp_path / "split.txt").write_text("stack8_000002\nstack8_000005\n")
    capsys.readouterr()
    for images in (tmp_path / "stack8.tif", tmp_path / "pages8"):
        assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks8), "--split",
                        str(tmp_path / "split.txt")) == 0
    stack_table, folder_table = capsys.readouterr().out.split("method")[1:3]
    assert stack_table.split()[6] == "tophat" and stack_table.split()[7:11] == folder_table.split()[7:11]  # IoU..Fa

    assert run_eval("--method", "tophat", "--images", str(tmp_path / "split.txt"), "--masks", str(masks8)) == 2
    assert "is neither a folder of images nor a readable TIFF stack" in capsys.readouterr().err


def test_one_pass_scores_every_variant_and_convention_as_separate_evaluations_would():
    from model.data import find_dataset
    from model.evaluate import evaluate_dataset, evaluate_variants
    from model.refine import LocalContrastRefinement

    samples = find_dataset(NUAA / "images", NUAA / "masks", NUAA / "splits/idx_427/test.txt")[:8]
    detector = make_detector("tophat", None)
    refine = LocalContrastRefinement()
    conventions = {"native": dict(fa_mode="corrected"), "legacy": dict(fa_mode="legacy", resize_to=512)}
    scored = evaluate_variants(detector, samples, {"plain": None, "refined": refine}, conventions)

    class Refined:  # the same detector with the refinement inside, scored the ordinary way
        name, device = "refined", detector.device

        def detect(self, images):
            results = detector.detect(images)
            for image, result in zip(images, results):
                result.logits = refine(image, result.logits)
            return results

    keys = ("iou", "niou", "pd", "fa")
    for variant, reference in (("plain", detector), ("refined", Refined())):
        for convention, options in conventions.items():
            expected, _ = evaluate_dataset(reference, samples, **options)
            result, _ = scored[variant][convention]
            assert result["method"] == variant
            assert {k: result[k] for k in keys} == {k: expected[k] for k in keys}
    native = {v: scored[v]["native"][0] for v in scored}
    assert native["plain"]["iou"] != native["refined"]["iou"]  # the refinement changed something to compare


def test_16bit_data_is_scored_through_the_window_the_app_would_use(tmp_path):
    """A 16-bit set with masks (here the demo's settings) is normalised once for the whole set, its bad
    pixels repaired, as `irsam detect` and the app do for a sequence, and the window is recorded."""
    import dataclasses

    import numpy as np

    from app.core.normalization import Normalization
    from app.core.synthetic import DEMO_CONFIG, iter_frames, write_sequence
    from model.metrics import SegmentationMetrics

    config = dataclasses.replace(DEMO_CONFIG, n_frames=10, height=96, width=128)
    frames = list(iter_frames(config, seed=3))
    write_sequence(frames, tmp_path / "seq", layout="folder")
    out = tmp_path / "r.json"
    assert run_eval("--method", "mpcm", "--images", str(tmp_path / "seq/images"), "--masks", str(tmp_path / "seq/masks"),
                    "--json", str(out)) == 0
    result = json.loads(out.read_text())
    window = Normalization.for_raw_frames([f.frame for f in frames])
    assert result["normalization"] == window.to_dict() and window.bad_pixels  # the demo's hot and dead pixels
    expected = SegmentationMetrics()
    detector = make_detector("mpcm", None)
    for f in frames:
        expected.update(detector.detect([window.apply(f.frame)])[0].logits, f.mask)
    reference = expected.result()
    assert (result["iou"], result["hits"], result["n_targets"]) == (reference["iou"], reference["hits"], reference["n_targets"])
    assert result["n_targets"] > 0 and np.isfinite(result["fa"])


def test_size_gate_removes_the_cloud_top_of_the_real_clip_and_keeps_the_drone(tmp_path):
    # the shipped weights' two false alarms a frame on IR_DRONE_156: a 245 px cloud top and a 53 px blob
    from app.paths import DEFAULT_WEIGHTS

    results = {}
    for name, gate in (("open", []), ("gated", ["--max-area", "200"])):
        out = tmp_path / f"{name}.json"
        assert run_eval("--weights", str(DEFAULT_WEIGHTS), "--clip", str(CLIP), "--limit", "4", "--json", str(out),
                        *gate) == 0
        results[name] = json.loads(out.read_text())
    assert results["open"]["pd"] == results["gated"]["pd"] == 1.0
    assert results["open"]["false_alarms_per_frame"] == 2.0 and results["gated"]["false_alarms_per_frame"] == 1.0
    assert results["gated"]["detector_options"]["size_gate"] == {"min_area": 1, "max_area": 200}
    assert "size_gate" not in results["open"]["detector_options"]


BOX_SCORES = ("pd", "false_alarms_per_frame", "fa", "n_frames", "n_targets", "hits", "false_alarms")


@pytest.fixture
def banded_clip(tmp_path) -> Path:
    """16-bit PNG frames in images/ and a 3x3 box on each frame's target in boxes.csv."""
    clip = tmp_path / "clip"
    (clip / "images").mkdir(parents=True)
    rows = ["frame,class,x,y,w,h"]
    for t, frame in enumerate(banded_16bit_frames()):
        cv2.imwrite(str(clip / "images" / f"{t:03d}.png"), frame)
        rows.append(f"{t + 1},T,{12 + 2 * t},8,3,3")  # 1-based pixels: the target's columns 11+2t.., rows 7..9
    (clip / "boxes.csv").write_text("\n".join(rows) + "\n")
    return clip


def test_16bit_clip_is_scored_through_the_window_asked_for_and_records_it(tmp_path, banded_clip):
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(banded_clip), "--window", "1000", "4000", "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["normalization"] == {"mode": "window", "low": 1000.0, "high": 4000.0,
                                       "bad_pixels": [list(BANDED_HOT_PIXEL)]}
    expected = evaluate_clip(make_detector("tophat", None), banded_clip, read_image=lambda path: expected_window_input(
        cv2.imread(str(path), cv2.IMREAD_UNCHANGED), 1000, 4000))
    assert {k: result[k] for k in BOX_SCORES} == {k: expected[k] for k in BOX_SCORES}
    assert result["n_frames"] == 10 and result["n_targets"] == 10

    assert run_eval("--method", "tophat", "--clip", str(banded_clip), "--json", str(out)) == 0
    default = json.loads(out.read_text())
    assert default["normalization"]["mode"] == "percentile"  # 16-bit clips were refused before
    assert default["normalization"]["bad_pixels"] == [list(BANDED_HOT_PIXEL)]
    assert {k: default[k] for k in BOX_SCORES} != {k: result[k] for k in BOX_SCORES}


def test_16bit_data_set_records_the_percentiles_asked_for(tmp_path):
    frames = banded_16bit_frames()
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for t, frame in enumerate(frames):
        mask = np.zeros(frame.shape, np.uint8)
        mask[7:10, 11 + 2 * t : 14 + 2 * t] = 255
        cv2.imwrite(str(tmp_path / "images" / f"{t:03d}.png"), frame)
        cv2.imwrite(str(tmp_path / "masks" / f"{t:03d}.png"), mask)
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                    "--percentiles", "1", "99", "--json", str(out)) == 0
    low, high = np.percentile(np.concatenate([f.ravel() for f in frames]), [1, 99], method="inverted_cdf")
    assert json.loads(out.read_text())["normalization"] == {
        "mode": "percentile", "low": float(low), "high": float(high), "p_low": 1.0, "p_high": 99.0, "sample": 10,
        "bad_pixels": [list(BANDED_HOT_PIXEL)],
    }


def test_8bit_data_set_goes_through_a_window_only_when_asked(tmp_path, split8):
    out = tmp_path / "r.json"
    data = ("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"), "--split", str(split8))
    assert run_eval(*data, "--json", str(out)) == 0
    plain = json.loads(out.read_text())
    assert "normalization" not in plain
    assert run_eval(*data, "--window", "0", "100", "--json", str(out)) == 0
    windowed = json.loads(out.read_text())
    assert windowed["normalization"] == {"mode": "window", "low": 0.0, "high": 100.0}  # 8-bit: no bad-pixel search
    assert (windowed["iou"], windowed["fa"]) != (plain["iou"], plain["fa"])


@pytest.mark.parametrize("options, message", [
    (["--window", "5", "5"], "a fixed window needs LO < HI, got 5 5"),
    (["--percentiles", "0", "100.5"], "percentiles need 0 <= LO < HI <= 100, got 0 100.5"),
])
def test_an_impossible_normalisation_is_one_line_and_exit_2(banded_clip, capsys, options, message):
    assert run_eval("--method", "tophat", "--clip", str(banded_clip), *options) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_limit_takes_a_folders_first_images_in_natural_order_as_detect_does(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for stem, targets in (("f1", 1), ("f2", 1), ("f10", 3)):
        image, mask = np.zeros((32, 48), np.uint8), np.zeros((32, 48), np.uint8)
        for k in range(targets):
            image[8:11, 4 + 14 * k : 7 + 14 * k] = mask[8:11, 4 + 14 * k : 7 + 14 * k] = 255
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(tmp_path / "masks" / f"{stem}.png"), mask)
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                    "--limit", "2", "--json", str(out)) == 0
    assert json.loads(out.read_text())["n_targets"] == 2  # f1 and f2, not f1 and f10


def test_a_clip_folder_lacking_frames_or_boxes_is_named_with_what_clip_takes(tmp_path, capsys):
    (tmp_path / "no_boxes" / "images").mkdir(parents=True)
    takes = "--clip takes a clip folder holding its frames in images/ and their boxes in boxes.csv"
    for clip, message in (
        (CLIP / "images", f"--clip {CLIP / 'images'}: no images/ folder and no boxes.csv in it; {takes} "
                          f"(this is the frames folder of {CLIP}: give that)"),
        (tmp_path / "no_boxes", f"--clip {tmp_path / 'no_boxes'}: no boxes.csv in it; {takes}"),
        (tmp_path / "none", f"--clip {tmp_path / 'none'}: no such folder; --clip takes a clip folder holding "
                            "images/ and boxes.csv"),
        (CLIP / "boxes.csv", f"--clip {CLIP / 'boxes.csv'}: a file, not a folder; --clip takes a clip folder "
                             f"holding images/ and boxes.csv (give {CLIP})"),
    ):
        assert run_eval("--method", "tophat", "--clip", str(clip)) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


def test_a_background_only_data_set_writes_valid_json_with_nulls(tmp_path, capsys):
    """Frames with no target (a false-alarm test set): Pd, the AUC and the curve's Pd are undefined, which JSON
    writes as null (NaN is not JSON: JavaScript's JSON.parse refuses it)."""
    for folder in ("images", "masks"):
        (tmp_path / "bg" / folder).mkdir(parents=True)
    for stem in ("Misc_1", "Misc_2"):
        image = cv2.imread(str(NUAA / "images" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(tmp_path / "bg" / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(tmp_path / "bg" / "masks" / f"{stem}.png"), np.zeros_like(image))
    out = tmp_path / "bg.json"
    assert run_eval("--method", "tophat", "--images", str(tmp_path / "bg" / "images"), "--masks",
                    str(tmp_path / "bg" / "masks"), "--json", str(out), "--plots", str(tmp_path / "plots")) == 0

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    result = json.loads(out.read_text(), parse_constant=refuse)
    assert result["pd"] is None and result["fa"] > 0 and result["roc"]["auc"] is None
    assert "n/a" in capsys.readouterr().out  # the table says so too


def test_the_pd_fa_plot_draws_the_operating_points_without_false_alarms(tmp_path):
    """A log Fa axis has no place for Fa = 0, the thresholds that find targets with no false alarm: they are drawn at
    a "0" tick a decade left of the smallest Fa, not dropped."""
    from model.evaluate import _LEFT, plot_curve

    path = tmp_path / "pd_fa.png"
    plot_curve(np.array([0.0, 0.0, 2.0, 10.0]), np.array([0.1, 0.2, 0.5, 0.9]), path, "t", "Fa", "Pd", x_log=True)
    image = cv2.imread(str(path))
    curve_columns = np.nonzero(np.all(image == (200, 80, 0), axis=2).any(axis=0))[0]
    assert curve_columns.min() <= _LEFT + 3


def test_json_to_a_pipe_or_device_needs_no_writable_folder_around_it(tmp_path, monkeypatch):
    """`--json /dev/stdout` (a terminal) for a user who cannot write into /dev (the tests run as root, to whom every folder is
    writable: the folders' permission is taken away here)."""
    import os

    from app.commands import eval as eval_command

    access = os.access
    monkeypatch.setattr(eval_command.os, "access", lambda path, mode: not os.path.isdir(path) and access(path, mode))
    eval_command._check_writable("/dev/null", None)  # (/dev/stdout is the capture file under pytest)
    os.mkfifo(tmp_path / "pipe.json")
    eval_command._check_writable(str(tmp_path / "pipe.json"), None)
    with pytest.raises(ValueError, match="is not a writable folder"):
        eval_command._check_writable(str(tmp_path / "new.json"), None)


def test_json_to_dev_stdout_goes_down_the_pipe(tmp_path):
    """`irsam eval ... --json /dev/stdout | jq .`: /dev/stdout leads to a pipe, which has no path to write beside."""
    import subprocess
    import sys

    from tests.datasets import write_sirst_dataset

    data = write_sirst_dataset(tmp_path / "set", n_frames=3)
    done = subprocess.run([sys.executable, "-m", "app.cli", "eval", "--method", "tophat", "--images",
                           str(data / "images"), "--masks", str(data / "masks"), "--json", "/dev/stdout"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table, _, document = done.stdout.partition("{")
    assert "tophat" in table and json.loads("{" + document)["n_images"] == 3
