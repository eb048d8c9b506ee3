"""A resumed run whose last.pt records no best yet keeps a better best.pt; a folder's TIFF file of one colour image
stored plane by plane (SYX) is one gray frame, as an interleaved one is; a clip's two files of one name but for the
extension are paired with boxes.csv as the app reads them: the first in name order is the frame."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

import model.train as train_module
from app.core.frames import open_source, read_gray, to_gray
from model.checkpoint import read_torch_file
from model.data import natural_key
from model.evaluate import clip_frames
from model.metrics import number_clip_frames, read_boxes_csv
from model.train import train
from model.train_config import TrainConfig
from tests.datasets import write_sirst_dataset
from tests.test_clip_numbering_odd_names import moving_target_clip
from tests.test_eval_cli import run_eval
from tests.test_eval_consistency import boxed, frames_named

# --- 1. a resume whose last.pt records no best yet ------------------------------------------------------------


class Killed(Exception):
    """Raised where the run's process would be killed: after best.pt is written, before last.pt is."""


def test_a_resume_whose_last_pt_records_no_best_keeps_a_better_best_pt(tmp_path, monkeypatch):
    """Validating every 2 epochs, epoch 1's last.pt records no best; epoch 2 wrote best.pt and was killed before
    last.pt. The resume ran epoch 2 again and, its best -1, wrote best.pt over whatever it scored. best.pt's recorded
    IoU is raised here to stand for a best.pt that scored higher than the epoch run again (a GPU run is not
    bit-reproducible, and a resume may change --device or --precision)."""
    dataset = write_sirst_dataset(tmp_path / "d", n_frames=6, size=(32, 48))
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(dataset), split_train=str(dataset / "train.txt"), split_val=str(dataset / "val.txt"),
                      out=str(out), config="tiny", device="cpu", precision="fp32", epochs=2, val_every=2,
                      batch_size=2, crop=32, workers=0)
    save_resume_state = train_module._save_resume_state

    def killed_at_epoch_2(path, model, model_config, average, optimizer, scheduler, scaler, epoch, *rest):
        if epoch == 1:
            raise Killed
        save_resume_state(path, model, model_config, average, optimizer, scheduler, scaler, epoch, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_save_resume_state", killed_at_epoch_2)
        with pytest.raises(Killed):
            train(cfg, log=lambda message: None)
    last = torch.load(out / "last.pt", weights_only=True)
    assert (last["epoch"], last["best_iou"]) == (0, -1.0)
    best = read_torch_file(out / "best.pt")
    scored = best["metadata"]["metrics"]["val"]
    assert best["metadata"]["training"]["epoch"] == 2 and scored["iou"] < 1
    better = {**scored, "iou": (scored["iou"] + 1) / 2}
    best["metadata"]["metrics"]["val"] = better
    torch.save(best, out / "best.pt")

    lines: list[str] = []
    summary = train(cfg, log=lines.append)
    assert (f"{out / 'best.pt'} holds val IoU {better['iou']:.4f}, last.pt recorded no validated epoch yet (the run "
            "was killed between the two writes): resuming against best.pt's") in lines
    assert not any(line.startswith("warning") for line in lines), lines
    assert f"resuming from {out / 'last.pt'} at epoch 2/2 (no validated epoch yet)" in lines  # not "IoU -1.0000"
    assert not any("-1.0000" in line for line in lines), lines
    assert summary["best_val_iou"] == better["iou"] and summary["best_val_metrics"] == better
    kept = read_torch_file(out / "best.pt")
    assert kept["metadata"]["metrics"]["val"] == better  # not replaced by the epoch run again
    assert all(torch.equal(kept["model"][name], best["model"][name]) for name in best["model"])
    assert torch.load(out / "last.pt", weights_only=True)["best_iou"] == better["iou"]


# --- 2. one image of channels or colour planes first ------------------------------------------------------------

def image_of(channels: int, dtype=np.uint16, seed: int = 0) -> np.ndarray:
    """`channels` planes of 24x32, each unlike the others."""
    high = 255 if dtype == np.uint8 else 60000
    return np.random.default_rng(seed).integers(0, high, (channels, 24, 32)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("written", ["RGB planes", "RGBA planes", "tifffile's default for 3 planes",
                                     "tifffile's default for 4 planes", "OME RGB planes"])
def test_a_folder_frame_of_a_colour_image_stored_plane_by_plane_is_gray_as_an_interleaved_one(tmp_path, written,
                                                                                              dtype):
    """An RGB(A) image saved planar (axes SYX), one file of a folder, was refused ("unsupported TIFF page shape");
    interleaved (YXS), it reads as one gray frame. Opened as a stack, its planes stay frames: tifffile stores 3 or 4
    frames it is given no photometric for so, and an IR stack is no colour image."""
    planes = image_of(4 if "4" in written or "RGBA" in written else 3, dtype)
    options = {"RGB planes": {"photometric": "rgb", "planarconfig": "separate"},
               "RGBA planes": {"photometric": "rgb", "planarconfig": "separate", "extrasamples": ["unassalpha"]},
               "OME RGB planes": {"photometric": "rgb", "planarconfig": "separate", "ome": True}}.get(written, {})
    folder = tmp_path / "frames"
    folder.mkdir()
    path = folder / "planar.tif"
    with warnings.catch_warnings():  # tifffile's default warns that it will store such data as pages of frames
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, planes, **options)
    assert tifffile.TiffFile(path).series[0].axes == "SYX"
    tifffile.imwrite(tmp_path / "interleaved.tif", np.moveaxis(planes, 0, -1), photometric="rgb")
    expected = read_gray(tmp_path / "interleaved.tif")
    rgb = np.moveaxis(planes[:3], 0, -1)
    np.testing.assert_array_equal(expected, to_gray(rgb[:, :, ::-1]))
    np.testing.assert_array_equal(read_gray(path), expected)
    with open_source(folder) as src:
        assert (len(src), src.stems) == (1, ["planar"]) and src.scan() == []
        np.testing.assert_array_equal(src.frame(0), expected)
    with open_source(path) as src:
        assert (len(src), src.shape) == (len(planes), (24, 32))
        np.testing.assert_array_equal(src.frame(1), planes[1])


@pytest.mark.parametrize("frames", [3, 4, 6])
@pytest.mark.parametrize("axes", ["TYX", "ZYX", "IYX", "QYX", "no axes, pages", "ImageJ, no axes", "ImageJ CYX"])
def test_a_stack_of_frames_still_reads_every_frame_also_stored_as_colour_planes(tmp_path, axes, frames):
    """tifffile stores 3 or 4 frames it is given no photometric for as the planes of one RGB page: named TYX (and
    so on) they are frames still. A stack of pages tifffile is given no axes for, and an ImageJ file of channels
    alone (as tifffile writes any stack it is given no axes for), too."""
    data = image_of(frames)
    options = {"no axes, pages": {"photometric": "minisblack"}, "ImageJ, no axes": {"imagej": True},
               "ImageJ CYX": {"imagej": True, "metadata": {"axes": "CYX"}}}.get(axes, {"metadata": {"axes": axes}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(tmp_path / "stack.tif", data, **options)
    with open_source(tmp_path / "stack.tif") as src:
        assert (src.kind, len(src), src.shape) == ("tiff", frames, (24, 32)) and src.skipped_pages == []
        for k in range(frames):
            np.testing.assert_array_equal(src.frame(k), data[k])


@pytest.mark.parametrize("axes", ["TCYX", "CTYX"])
def test_a_stack_of_time_points_of_3_channels_still_reads_channel_1_of_each(tmp_path, axes):
    data = image_of(15).reshape((5, 3, 24, 32) if axes == "TCYX" else (3, 5, 24, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(tmp_path / "tc.tif", data, metadata={"axes": axes})
    expected = data[:, 0] if axes == "TCYX" else data[0]
    with open_source(tmp_path / "tc.tif") as src:
        assert len(src) == 5
        for k in range(5):
            np.testing.assert_array_equal(src.frame(k), expected[k])
        assert src.skipped_pages == ["channels 2-3 of 3 (axis C) not read: the frames are those of channel 1"]


# --- 3. two files of one name but for the extension in a clip --------------------------------------------------

def test_of_two_files_of_one_name_the_first_in_name_order_is_numbered_and_the_other_named():
    files = sorted(frames_named(range(1, 21)) + [Path("images") / "000006.jpg"], key=lambda f: natural_key(f.name))
    numbering = number_clip_frames(files, boxed(range(1, 21)))
    assert numbering.by == "name"
    assert dict(zip((f.name for f in files), numbering.numbers))["000006.jpg"] == 6
    assert numbering.unnumbered == [Path("images") / "000006.png"]
    assert [n for n in numbering.numbers if n is not None] == list(range(1, 21))
    assert numbering.why == ("000006.png has the same name as 000006.jpg but for the extension: as in the app, "
                             "000006.jpg is the frame (the first in name order) and 000006.png has no ground truth")


def test_the_other_files_of_a_name_do_not_count_among_the_odd_names():
    """The app's frames are one file of each name: they are numbered as the app numbers them, the files left
    out named beside the odd names."""
    files = sorted(frames_named(range(1, 10)) + [Path("images") / name for name in
                                                 ("000002.bmp", "000004.jpg", "000005.tif", "000007a.png")],
                   key=lambda f: natural_key(f.name))
    numbering = number_clip_frames(files, boxed(range(1, 10)))
    assert numbering.by == "name"  # 4 of 13 names are no frame of their own; 1 of the app's 10 is odd
    numbered = {f.name: n for f, n in zip(files, numbering.numbers) if n is not None}
    assert numbered == {"000001.png": 1, "000002.bmp": 2, "000003.png": 3, "000004.jpg": 4, "000005.png": 5,
                        "000006.png": 6, "000007.png": 7, "000008.png": 8, "000009.png": 9}
    assert numbering.why == ("000002.png, 000004.png and 000005.tif have the same names as 000002.bmp, 000004.jpg "
                             "and 000005.png but for the extension: as in the app, the first file of a name in name "
                             "order is the frame and the others have no ground truth; 000007a.png does not end in a "
                             "frame number: it has no ground truth; the others are paired by their numbers")


def test_eval_scores_the_file_the_app_shows_for_a_name_against_its_frame_s_boxes(tmp_path, capsys):
    """000006.jpg beside 000006.png: the app shows 000006.jpg as frame 6 with boxes.csv's frame 6 boxes, but
    irsam eval --clip gave neither a frame number and left frame 6 unscored."""
    clip = moving_target_clip(tmp_path / "clip", 12, 96)
    cv2.imwrite(str(clip / "images" / "000006.jpg"), cv2.imread(str(clip / "images" / "000006.png")),
                [cv2.IMWRITE_JPEG_QUALITY, 100])
    with open_source(clip / "images") as source:
        shown = Path(source.frame_path(source.stems.index("000006")))
        assert shown.name == "000006.jpg"
    numbering = number_clip_frames(clip_frames(clip), read_boxes_csv(clip / "boxes.csv"))
    assert numbering.numbers[numbering.files.index(shown)] == 6

    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(clip), "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert (result["hits"], result["n_targets"], result["false_alarms"], result["n_frames"]) == (12, 12, 0, 12)
    assert result["frames_without_number"] == ["000006.png"] and result["boxes_without_image"] == []
    assert ("warning: 1 image of images/ not scored; frames are paired with "
            f"{clip / 'boxes.csv'}'s frame numbers by their file names, the number a name ends in: 000006.png has "
            "the same name as 000006.jpg but for the extension: as in the app, 000006.jpg is the frame (the first in "
            "name order) and 000006.png has no ground truth") in capsys.readouterr().err
