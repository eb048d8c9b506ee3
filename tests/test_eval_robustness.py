"""`irsam eval` on bad input: unusable frames are reported and skipped, everything else is one `error:` line
and exit 2, and the results are printed before output files are written."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.frames import open_source
from model.data import find_dataset, natural_key
from model.evaluate import clip_frames, evaluate_dataset, make_detector
from model.metrics import BoxMetrics, InterpolatedMaskWarning, read_boxes_csv
from tests.test_eval_cli import CLIP, NUAA, run_eval

@pytest.fixture
def broken_clip(tmp_path) -> Path:
    """The first 6 frames of a real clip; frames 2, 3 and 4 (0-based) a truncated PNG, an empty file, text."""
    clip = tmp_path / "clip"
    (clip / "images").mkdir(parents=True)
    frames = sorted((CLIP / "images").iterdir())[:6]
    for frame in frames:
        shutil.copy(frame, clip / "images" / frame.name)
    images = sorted((clip / "images").iterdir())
    images[2].write_bytes(images[2].read_bytes()[:3000])
    images[3].write_bytes(b"")
    images[4].write_text("not an image")
    shutil.copy(CLIP / "boxes.csv", clip / "boxes.csv")
    return clip


def test_unreadable_clip_frames_are_reported_skipped_and_the_rest_scored_at_their_frame_numbers(broken_clip, capsys):
    out = broken_clip / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(broken_clip), "--json", str(out)) == 0
    captured = capsys.readouterr()
    images = sorted((broken_clip / "images").iterdir())
    assert f"skipped {images[2]}: corrupt image" in captured.err
    assert f"skipped {images[3]}: empty file (0 bytes)" in captured.err
    assert f"skipped {images[4]}: not an image" in captured.err
    assert "3 of 6 skipped as unusable" in captured.out
    result = json.loads(out.read_text())
    assert result["n_skipped"] == 3 and [s["path"] for s in result["skipped"]] == [str(p) for p in images[2:5]]

    detector, boxes, expected = make_detector("tophat", None), read_boxes_csv(CLIP / "boxes.csv"), BoxMetrics()
    for index in (0, 1, 5):
        image = cv2.imread(str(images[index]), cv2.IMREAD_GRAYSCALE)
        expected.update(detector.detect([image])[0].logits, boxes.get(index, []))
    reference = expected.result()
    assert {k: result[k] for k in reference} == reference


def test_a_truncated_image_and_a_mask_of_another_size_are_skipped_by_name(tmp_path, capsys):
    stems = (NUAA / "splits/idx_427/test.txt").read_text().split()[:6]
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for sample in find_dataset(NUAA / "images", NUAA / "masks", None):
        if sample.stem in stems:
            shutil.copy(sample.image_path, images / f"{sample.stem}.png")
            shutil.copy(sample.mask_path, masks / f"{sample.stem}.png")
    truncated, resized = images / f"{stems[0]}.png", masks / f"{stems[1]}.png"
    truncated.write_bytes(truncated.read_bytes()[:2000])
    image_h, image_w = cv2.imread(str(images / f"{stems[1]}.png"), cv2.IMREAD_GRAYSCALE).shape
    cv2.imwrite(str(resized), np.zeros((80, 100), np.uint8))
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks), "--json", str(out)) == 0
    err = capsys.readouterr().err
    assert f"skipped {truncated}: corrupt image" in err
    assert f"skipped {resized}: mask size 100x80 differs from its image's {image_w}x{image_h}" in err
    result = json.loads(out.read_text())
    assert (result["n_images"], result["n_skipped"], result["n_interpolated_masks"]) == (4, 2, 0)
    expected, _ = evaluate_dataset(make_detector("tophat", None), [s for s in find_dataset(images, masks, None) if s.stem not in stems[:2]])
    assert (result["iou"], result["fa"]) == (expected["iou"], expected["fa"])


def test_a_malformed_boxes_csv_is_one_error_line_naming_the_file_and_line(broken_clip, capsys):
    boxes = broken_clip / "boxes.csv"
    boxes.write_text("frame,class,x,y,w,h\n1,DRONE,80,116,11,8\n4,DRONE,79.5\n")
    assert run_eval("--method", "tophat", "--clip", str(broken_clip)) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {boxes}: line 3: 3 values where the header has 6: '4,DRONE,79.5'\n"
    assert captured.out == ""


def test_boxes_past_the_clip_s_last_image_are_named(broken_clip, capsys, tmp_path):
    n = len(list((broken_clip / "images").iterdir()))
    boxes = broken_clip / "boxes.csv"
    kept = boxes.read_text().splitlines()[: n + 1]  # the header and the clip's own frames
    boxes.write_text("\n".join(kept) + f"\n{n + 1},DRONE,80,116,11,8\n{n + 5},DRONE,80,116,11,8\n")
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(broken_clip), "--json", str(out)) == 0
    assert (f"warning: {boxes} has boxes for 2 frames past the clip's last image ({n}): frame {n + 1} and more; "
            "their targets are not scored") in capsys.readouterr().err
    assert json.loads(out.read_text())["boxes_past_the_end"] == [n + 1, n + 5]


@pytest.fixture
def unpadded_clip(tmp_path) -> Path:
    """f1.png .. f12.png, frame N holding one bright 3x3 target at columns 5N..5N+2, boxed in boxes.csv, and
    f13.png a broken link."""
    clip = tmp_path / "clip"
    (clip / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["frame,class,x,y,w,h"]
    for n in range(1, 13):
        frame = rng.integers(20, 40, (64, 96)).astype(np.uint8)
        frame[20:23, 5 * n : 5 * n + 3] = 220
        cv2.imwrite(str(clip / "images" / f"f{n}.png"), frame)
        rows.append(f"{n},DRONE,{5 * n + 1},21,3,3")  # 1-based MATLAB pixels
    (clip / "images" / "._f3.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata: not a frame
    (clip / "images" / "f13.png").symlink_to(clip / "annexed" / "f13.png")  # content not fetched: a bad frame
    (clip / "boxes.csv").write_text("\n".join(rows) + "\n")
    return clip


def test_unpadded_frame_names_are_paired_with_their_boxes_in_the_order_detect_and_info_number_them(
        unpadded_clip, tmp_path):
    with open_source(unpadded_clip / "images") as source:
        numbered = [Path(source.frame_path(i)) for i in range(len(source))]
    assert clip_frames(unpadded_clip) == numbered == [unpadded_clip / "images" / f"f{n}.png" for n in range(1, 14)]
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(unpadded_clip), "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert (result["hits"], result["n_targets"], result["false_alarms"], result["n_skipped"]) == (12, 12, 0, 1)
    assert run_eval("--method", "tophat", "--clip", str(unpadded_clip), "--frames", "2-3", "--json", str(out)) == 0
    result = json.loads(out.read_text())  # frames 2 and 3 are f2 and f3, not f10 and f11
    assert (result["frames"], result["hits"], result["n_targets"], result["false_alarms"]) == ([2, 3], 2, 2, 0)


def test_interpolated_masks_are_named_once_listed_in_the_result_and_scored_by_the_255_rule(tmp_path, capsys):
    """Seven of eight masks have values strictly between 0 and 255: six blurred PNGs and a JPEG."""
    stems = (NUAA / "splits/idx_427/test.txt").read_text().split()[:8]
    images, masks, thresholded = tmp_path / "images", tmp_path / "masks", tmp_path / "thresholded"
    for folder in (images, masks, thresholded):
        folder.mkdir()
    interpolated = []  # in the order irsam eval takes a folder's images: natural order of the stems
    samples = [s for s in find_dataset(NUAA / "images", NUAA / "masks", None) if s.stem in stems]
    for k, sample in enumerate(sorted(samples, key=lambda s: natural_key(s.stem))):
        shutil.copy(sample.image_path, images / f"{sample.stem}.png")
        mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
        if k < 6:
            mask = cv2.GaussianBlur(mask, (5, 5), 1.5)
        mask_file = masks / f"{sample.stem}{'.jpg' if k == 6 else '.png'}"
        cv2.imwrite(str(mask_file), mask)
        mask = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE)
        if k < 7:
            assert ((mask > 0) & (mask < 255)).any()
            interpolated.append(str(mask_file))
        cv2.imwrite(str(thresholded / f"{sample.stem}.png"), np.where(mask == 255, 255, 0).astype(np.uint8))
    out = tmp_path / "r.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_eval("--method", "tophat", "--images", str(images), "--masks", str(masks), "--json", str(out)) == 0
    assert not [w for w in caught if issubclass(w.category, InterpolatedMaskWarning)]  # one line instead:
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "strictly between" in line]
    assert line.startswith("warning: 7 of 8 masks have values strictly between 0 and 255")
    assert line.endswith(": " + ", ".join(interpolated[:5]) + ", ... and 2 more")
    result = json.loads(out.read_text())
    assert (result["n_interpolated_masks"], result["interpolated_masks"]) == (7, interpolated)
    with warnings.catch_warnings(record=True) as caught:  # the library says it once, as a warning
        warnings.simplefilter("always")
        evaluate_dataset(make_detector("tophat", None), find_dataset(images, masks, None))
    (warning,) = [w for w in caught if issubclass(w.category, InterpolatedMaskWarning)]
    assert str(warning.message).startswith("7 of 8 masks")
    expected, _ = evaluate_dataset(make_detector("tophat", None), find_dataset(images, thresholded, None))
    assert expected["n_interpolated_masks"] == 0
    assert {k: result[k] for k in ("iou", "niou", "pd", "fa", "n_targets")} == \
           {k: expected[k] for k in ("iou", "niou", "pd", "fa", "n_targets")}


def test_a_clip_with_no_readable_frame_is_an_error(broken_clip, capsys):
    for frame in (broken_clip / "images").iterdir():
        frame.write_bytes(b"")
    assert run_eval("--method", "tophat", "--clip", str(broken_clip)) == 2
    assert capsys.readouterr().err.endswith("error: none of the 6 images could be scored\n")


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_limit_must_be_positive(limit, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_eval("--method", "tophat", "--clip", str(CLIP), f"--limit={limit}")
    assert exit_.value.code == 2
    assert f"--limit: must be at least 1, got {limit}" in capsys.readouterr().err


def test_an_empty_split_is_an_error(tmp_path, capsys):
    split = tmp_path / "empty.txt"
    split.write_text("\n")
    assert run_eval("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
                    "--split", str(split)) == 2
    assert capsys.readouterr().err == f"error: no images to evaluate in {split}\n"


@pytest.fixture
def bad_weights(tmp_path) -> dict[str, Path]:
    import torch

    files = {name: tmp_path / f"{name}.pt" for name in ("list", "wrongkeys", "garbage")}
    torch.save([1, 2], files["list"])
    torch.save({"foo": torch.zeros(2)}, files["wrongkeys"])
    files["garbage"].write_bytes(b"\x80\x05" + b"not a pickle" * 10)
    return files


@pytest.mark.parametrize("name, reason", [
    ("list", "expected a state_dict (a dict of tensors), found list"),
    ("wrongkeys", "checkpoint does not fit the model"),
    ("garbage", "not a readable PyTorch checkpoint"),
])
def test_unusable_weights_are_one_line_naming_the_file_once(bad_weights, name, reason, capsys):
    path = bad_weights[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_eval("--weights", str(path), "--clip", str(CLIP), "--limit", "1", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {reason}") and err.count("\n") == 1 and err.count(str(path)) == 1
    assert not [w for w in caught if "pickle protocol" in str(w.message)]


def test_unwritable_outputs_are_refused_before_evaluating(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for option in ("--json", "--plots"):
        assert run_eval("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
                        option, str(blocker / "x")) == 2
        captured = capsys.readouterr()
        assert captured.err == f"error: {option}: cannot write into {blocker if option == '--json' else blocker / 'x'} " \
                               f"({blocker} is not a writable folder)\n"
        assert captured.out == ""  # refused before the evaluation


def test_a_failed_plot_write_keeps_the_table_and_the_json(tmp_path, monkeypatch, capsys):
    import app.commands.eval as eval_command

    def fail(result, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(eval_command, "write_curve_plots", fail)
    out = tmp_path / "r.json"
    split = tmp_path / "split.txt"
    split.write_text("\n".join((NUAA / "splits/idx_427/test.txt").read_text().split()[:2]))
    assert run_eval("--method", "tophat", "--images", str(NUAA / "images"), "--masks", str(NUAA / "masks"),
                    "--split", str(split), "--json", str(out), "--plots", str(tmp_path / "plots")) == 2
    captured = capsys.readouterr()
    assert "IoU" in captured.out and "tophat" in captured.out
    assert captured.err == f"error: writing the plots into {tmp_path / 'plots'}: [Errno 28] No space left on device\n"
    assert json.loads(out.read_text())["n_images"] == 2 and "plots" not in json.loads(out.read_text())


def test_irsam_only_options_with_a_classical_method_warn(capsys):
    assert run_eval("--method", "tophat", "--clip", str(CLIP), "--limit", "1", "--tta", "flips",
                    "--refine", "off") == 0
    assert "warning: --tta, --refine only apply to IRSAM; ignored for --method tophat" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the parser refuses both detectors at once
        run_eval("--method", "tophat", "--weights", "w.pt", "--clip", str(CLIP))


def test_an_explicit_cuda_request_without_cuda_stops(tmp_path, capsys, monkeypatch):
    import torch

    from model.build import build_irsam
    from model.checkpoint import save_checkpoint
    from model.config import tiny

    weights = tmp_path / "tiny.pt"
    save_checkpoint(weights, build_irsam(tiny()), tiny(), {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_eval("--weights", str(weights), "--clip", str(CLIP), "--limit", "1", "--device", "cuda") == 2
    assert "use --device cpu or auto" in capsys.readouterr().err
    assert run_eval("--weights", str(weights), "--clip", str(CLIP), "--limit", "1") == 0  # auto: the CPU
