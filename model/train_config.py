"""Training options as data, and the `irsam train` options that set them (torch-free, so the CLI parser stays
fast to import; the app's fine-tune job reads its own command lines back with `train_config_of_command`)."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields

from model.config import PRESETS

# held (flock) by the run training into --out for its whole run (model.train.TrainLock); removed at its end, left
# (unlocked) by a killed run. Here, torch-free, for the app's fine-tune job to look for a training running there.
TRAIN_LOCK = "train.lock"
# how `irsam train`'s warning of a validation split without a target begins (the app's fine-tune says it in its own
# words before the run, and leaves this line out)
NO_VALIDATION_TARGET = "warning: no image --split-val lists"


@dataclass
class TrainConfig:
    data: str  # dataset root with images/ and masks/ (SIRST layout)
    split_train: str
    split_val: str
    out: str
    config: str = "paper"
    init: str | None = None  # mobile_sam.pt or an official IRSAM state_dict
    epochs: int = 500
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    crop: int = 512
    target_crop_prob: float = 0.7
    scale_range: list[float] = field(default_factory=lambda: [0.8, 1.5])  # large-scale jitter: uniform factors
    orientations: str = "hflip"  # "hflip" (paper) or "dihedral": also vertical flips and 90-degree turns
    paste_targets: int = 0  # copy-paste: up to N training targets (<= 100 px) added to each frame
    loss: str = "paper"
    precision: str = "auto"  # auto: fp16 AMP on CUDA, bf16 on CPUs with native bf16, else fp32; fp16 off CUDA: bf16
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    val_every: int = 1  # validate every N epochs (and after the last)
    ema_decay: float | None = None  # keep, validate and save an exponential moving average of the weights
    max_minutes: float | None = None  # stop cleanly at the epoch boundary before this wall time would be passed
    extra_data: list[str] = field(default_factory=list)  # more image/mask folders (e.g. synthetic)
    config_overrides: dict = field(default_factory=dict)


# Presets an ML engineer would start from: the paper's GPU recipe, the one that made the shipped
# weights (from scratch, whole 512 frames, about 5 minutes on one H200) and one sized
# for a 2-core CPU.
TRAIN_PRESETS = {
    "paper-gpu": dict(epochs=500, batch_size=4, crop=512),
    "sirst-gpu": dict(epochs=37, batch_size=8, crop=512, lr=5e-4, precision="bf16"),
    "cpu": dict(epochs=60, batch_size=8, crop=256, target_crop_prob=0.7),
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset root with images/ and masks/ (SIRST layout)")
    parser.add_argument("--split-train", required=True, help="file listing training stems")
    parser.add_argument("--split-val", required=True,
                        help="file listing validation stems (held out of training; never test)")
    parser.add_argument("--out", required=True, help="output folder: last.pt, best.pt, metrics.jsonl; a new or empty "
                                                     "folder, or one with a last.pt to resume")
    parser.add_argument("--config", default="paper", choices=sorted(PRESETS),
                        help="the network to train (default paper; tiny is for tests)")
    parser.add_argument("--init", help="initial weights: mobile_sam.pt, an official IRSAM state_dict or our "
                                       "checkpoint; tensors matching by name and shape are copied, the rest stay "
                                       "fresh; weights of another shape, or a file with nothing for the model, are "
                                       "refused. Read by a new run only: a resume takes its weights from last.pt, "
                                       "with or without --init")
    parser.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="recipe preset; explicit options override it")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop", type=int, help="training crop size, 32..2048 (paper: 512)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--target-crop-prob", type=float,
                        help="share of crops centred near a target (default 0.7); the rest are anywhere, mostly "
                             "background, which is what teaches the network not to raise false alarms")
    parser.add_argument("--scale-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="large-scale jitter: each frame is scaled by a factor drawn uniformly from LOW..HIGH "
                             "before the crop (default 0.8 1.5, the paper's); a wider HIGH shows the network more "
                             "extended targets")
    parser.add_argument("--orientations", choices=["hflip", "dihedral"],
                        help="hflip (default, the paper's): random horizontal flips; dihedral: also vertical flips "
                             "and 90-degree turns, all 8 orientations of the crop (on NUAA-SIRST from scratch it did "
                             "not lift the average run; model card)")
    parser.add_argument("--paste-targets", type=int, metavar="N",
                        help="copy-paste augmentation: add up to N targets of the training frames (those of at most "
                             "100 px, with their contrast over the local background) to each frame, away from its own "
                             "targets (default 0: off; on NUAA-SIRST it doubled validation false alarms, model card)")
    parser.add_argument("--loss", choices=["paper", "official", "paper-bce"],
                        help="paper (default): Dice + 10 BCE(edge); official: what the authors' code optimised, 5 "
                             "BCE(edge) + soft IoU; paper-bce: the paper's plus a BCE on the mask, which still "
                             "pushes on confident false alarms and deeply missed targets, where Dice's gradient "
                             "vanishes")
    parser.add_argument("--device", default="auto",
                        help="auto (the GPU when CUDA works, else the CPU), cpu, cuda or cuda:N; cuda without working "
                             "CUDA is an error. Under torchrun each process takes the GPU of its LOCAL_RANK")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                        help="autocast: auto (default) is fp16 on CUDA, bf16 on CPUs with native bf16, else fp32; fp16 "
                             "off CUDA runs as bf16, as inference does")
    parser.add_argument("--workers", type=int, help="data loader worker processes")
    parser.add_argument("--max-minutes", type=float,
                        help="stop cleanly at an epoch boundary, before an epoch that would not end within this many "
                             "minutes of the start (judged by this run's epochs so far, validation included; at least "
                             "one epoch runs); the same command resumes")
    parser.add_argument("--extra-data", action="append", default=[],
                        help="more training data (repeatable): a folder with images/ and masks/ (every image), "
                        "or a split file inside one (the images it lists, e.g. a data set's trainval.txt); an image "
                        "already in the training set is trained on once")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override a model config field, e.g. --set wpmd_levels=[0,1] --set fusion='\"deep\"'")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--val-every", type=int, help="validate every N epochs (default 1; the last epoch always)")
    parser.add_argument("--ema-decay", type=float,
                        help="validate and keep an exponential moving average of the weights, updated every step "
                             "(e.g. 0.995: about the last 200 steps); best.pt then holds the average. From scratch on "
                             "NUAA-SIRST it did not help (model card)")


def train_config(args) -> TrainConfig:
    """The TrainConfig of parsed `irsam train` arguments: the preset, then the options given; ValueError for a
    --set that is not FIELD=JSON."""
    options = dict(TRAIN_PRESETS.get(args.preset, {})) if args.preset else {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("extra_data",):
            options[f.name] = value
    options["extra_data"] = args.extra_data
    options["config_overrides"] = {}
    for setting in args.set:
        name, _, value = setting.partition("=")
        try:
            options["config_overrides"][name.strip()] = json.loads(value)
        except ValueError as exc:  # also a setting without "="
            raise ValueError(f"bad --set {setting} ({exc}); use FIELD=JSON, e.g. --set input_priors=true") from None
    return TrainConfig(**options)


class _ParserRefusing(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(message)


def train_config_of_command(arguments: list[str]) -> TrainConfig:
    """The TrainConfig an `irsam train` command line (the arguments after "train") runs with; ValueError when
    it would not run."""
    parser = _ParserRefusing(prog="irsam train")
    add_train_arguments(parser)
    try:
        return train_config(parser.parse_args(arguments))
    except ValueError as error:
        raise ValueError(f"not a command irsam train runs: {error}") from None
