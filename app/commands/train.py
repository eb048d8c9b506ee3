"""`irsam train`: the paper's recipe on a SIRST-layout dataset; resumable; `torchrun` for several GPUs."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from model.train_config import add_train_arguments, train_config


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune IRSAM",
        description="Train IRSAM (AdamW, cosine, flip + large-scale jitter, Dice + 10 BCE(edge)). "
        "Running the same command again resumes from OUT/last.pt; a resumed run may raise --epochs and change "
        "--device, --precision, --workers, --max-minutes and --val-every, nothing else (it may leave out --init: "
        "last.pt holds the weights). Several GPUs: "
        "torchrun --nproc_per_node N -m app.cli train ...",
    )
    add_train_arguments(p)
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        cfg = train_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from app.commands import Terminated, interruption, sigterm_as_interrupt
    from model.checkpoint import CheckpointError
    from model.train import TrainingDiverged, interruption_note, train

    try:
        with sigterm_as_interrupt():  # a kill (the app's Stop, a scheduler, timeout) ends the run as Ctrl-C does
            summary = train(cfg)
    except KeyboardInterrupt as stop:  # say what last.pt holds, as irsam detect says what is saved
        said, status = interruption(isinstance(stop, Terminated))
        if os.environ.get("RANK", "0") == "0":
            print(f"{said}: {interruption_note(Path(cfg.out), cfg.epochs)}", file=sys.stderr)
        return status
    except TrainingDiverged as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {exc}", file=sys.stderr)
        return 1
    # OSError: missing data, or a failed write (disk full: model.train.SaveFailed names the file, what was lost and
    # what is kept)
    except (OSError, ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun the other ranks hold no validation results
        from model.atomic import json_values  # NaN (Pd without a validation target) as null: JSON has no NaN

        print(json.dumps(json_values(summary), indent=2))
    return 0
