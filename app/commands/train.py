"""`irsam train`: the paper's recipe on a SIRST-layout dataset; resumable; `torchrun` for several GPUs."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from model.train_config import TRAIN_PRESETS, TrainConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune IRSAM",
        description="Train IRSAM (AdamW, cosine, flip + large-scale jitter, Dice + 10 BCE(edge)). "
        "Running the same command again resumes from OUT/last.pt; a resumed run may raise --epochs and change "
        "--device, --precision, --workers, --max-minutes and --val-every, nothing else. Several GPUs: "
        "torchrun --nproc_per_node N -m app.cli train ...",
    )
    p.add_argument("--data", required=True, help="dataset root with images/ and masks/ (SIRST layout)")
    p.add_argument("--split-train", required=True, help="file listing training stems")
    p.add_argument("--split-val", required=True, help="file listing validation stems (held out of training; never test)")
    p.add_argument("--out", required=True, help="output folder: last.pt, best.pt, metrics.jsonl; a new or empty "
                                                "folder, or one with a last.pt to resume")
    p.add_argument("--config", default="paper", help="model config preset: paper, official, tiny")
    p.add_argument("--init", help="initial weights: mobile_sam.pt, an official IRSAM state_dict or our checkpoint; "
                                  "tensors matching by name and shape are copied, the rest stay fresh; weights "
                                  "of another shape, or a file with nothing for the model, are refused")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="recipe preset; explicit options override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--crop", type=int, help="training crop size, 32..2048 (paper: 512)")
    p.add_argument("--lr", type=float)
    p.add_argument("--target-crop-prob", type=float,
                   help="share of crops centred near a target (default 0.7); the rest are anywhere, mostly "
                        "background, which is what teaches the network not to raise false alarms")
    p.add_argument("--orientations", choices=["hflip", "dihedral"],
                   help="hflip (default, the paper's): random horizontal flips; dihedral: also vertical flips and "
                        "90-degree turns, all 8 orientations of the crop (on NUAA-SIRST from scratch it did not lift "
                        "the average run; model card)")
    p.add_argument("--paste-targets", type=int, metavar="N",
                   help="copy-paste augmentation: add up to N targets of the training frames (those of at most "
                        "100 px, with their contrast over the local background) to each frame, away from its own "
                        "targets (default 0: off; on NUAA-SIRST it doubled validation false alarms, model card)")
    p.add_argument("--loss", choices=["paper", "official"])
    p.add_argument("--device", default="auto",
                   help="auto (the GPU when CUDA works, else the CPU), cpu, cuda or cuda:N; cuda without working "
                        "CUDA is an error. Under torchrun each process takes the GPU of its LOCAL_RANK")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast: auto (default) is fp16 on CUDA, bf16 on CPUs with native bf16, else fp32; fp16 "
                        "off CUDA runs as bf16, as inference does")
    p.add_argument("--workers", type=int, help="data loader worker processes")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this many minutes (resume later)")
    p.add_argument("--extra-data", action="append", default=[],
                   help="more training data (repeatable): a folder with images/ and masks/ (every image), "
                   "or a split file inside one (the images it lists, e.g. a data set's trainval.txt); an image "
                   "already in the training set is trained on once")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a model config field, e.g. --set wpmd_levels=[0,1] --set fusion='\"deep\"'")
    p.add_argument("--seed", type=int)
    p.add_argument("--val-every", type=int, help="validate every N epochs (default 1; the last epoch always)")
    p.add_argument("--ema-decay", type=float,
                   help="validate and keep an exponential moving average of the weights, updated every step "
                        "(e.g. 0.995: about the last 200 steps); best.pt then holds the average. From scratch on "
                        "NUAA-SIRST it did not help (model card)")
    p.set_defaults(run=run)


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


class _TrainParserOnly:
    """What `add_parser` takes, for a parser of the train command alone that raises instead of exiting."""

    def add_parser(self, name, help=None, **kwargs):  # noqa: A002 (the name subparsers give it)
        self.parser = _ParserRefusing(prog=f"irsam {name}", **kwargs)
        return self.parser


def train_config_of_command(arguments: list[str]) -> TrainConfig:
    """The TrainConfig an `irsam train` command line (the arguments after "train") runs with; ValueError when
    it would not run."""
    only = _TrainParserOnly()
    add_parser(only)
    try:
        return train_config(only.parser.parse_args(arguments))
    except ValueError as error:
        raise ValueError(f"not a command irsam train runs: {error}") from None


def run(args) -> int:
    try:
        cfg = train_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from model.checkpoint import CheckpointError
    from model.train import TrainingDiverged, train

    try:
        summary = train(cfg)
    except TrainingDiverged as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, CheckpointError) as exc:  # OSError: missing data, or a failed write (disk full)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun the other ranks hold no validation results
        print(json.dumps(summary, indent=2))
    return 0
