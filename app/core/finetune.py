"""Fine-tuning from the analyst's corrections, in a separate process so the app never freezes.

A `FineTuneJob` trains on an exported data set (app.core.export) with `python -m app.cli train`:

- Only the export's train split is used; its test split stays untouched for testing.
- A validation part is held out of it for checkpoint selection, by sequence when the export holds
  several (whole sequences, taken from the end of the sorted sequence names until `val_fraction` of
  the frames is reached, at least one sequence left for training), else as the last contiguous block
  of frames of the one sequence (neighbouring frames are near-duplicates: a random pick would leak).
  The split files are written into the out folder: split_train.txt, split_val.txt.
- `base_data` folders (images/ + masks/) are added to training only (`--extra-data`), e.g. the original
  training set, so the model does not forget it (benchmarks/clip_adaptation.py: fine-tuned on 24
  reviewed frames of a real clip alone, the shipped weights lost 18.7 IoU and 16.5 Pd points on
  NUAA-SIRST test; with its trainval frames kept, 0.9 IoU, and Pd rose 0.9). Every image of such a
  folder is trained on; a split file inside one (its trainval.txt) limits training to the frames it lists.
  Its images must be 8-bit (as `irsam train` reads them): `prepare` reads their headers and refuses others.
- `init_weights` may be our checkpoint (model.checkpoint format), an official IRSAM state_dict or
  mobile_sam.pt: `irsam train --init` unwraps our {"model": state_dict}. The model config must match
  those weights; for our checkpoints it is read from the file (preset name plus `--set` overrides).
- Running a job again in the same out folder resumes from its last.pt (the train command's behaviour).

`prepare_run` is what the app's dialog does before training, in a worker (it reads the project, the base
data's headers and the init checkpoint): in a fine-tune folder FOLDER, it exports the reviewed frames into
FOLDER/data (an append: this sequence's earlier export there is replaced) and picks the run folder. The
latest of FOLDER/run, FOLDER/run-2, ... is reused when it holds no run yet, and resumed when `irsam train`
would resume it (model.train.check_same_run on the options its last.pt recorded: the same network, weights,
base data and options, on the same held-out and training frames, whose masks may have been corrected
since; the device, workers and precision may differ, and the epochs may grow) and it is not finished (its
last.pt holds fewer epochs than asked). Otherwise a new run folder is begun beside it, and the note says
why: `irsam train` refuses to resume a run with other settings (it would mix two runs), and a finished
run has nothing left to train. It refuses a run whose reviewed training frames hold no target pixel (nor
the base data: the network would learn to find nothing), and warns when the held-out frames hold none
(validation then cannot choose the epoch). The job's settings are recorded in its run folder's
finetune.json (`recorded_run`), for the dialog to offer them again.

A training still running in the out folder (it holds OUT/train.lock: model.train.TrainLock; e.g. one started
by a window that was killed since, as the process outlives it, or by `irsam train` in a shell) refuses the job
(`TrainingStillRunning`) before anything is exported or written, naming the folder and the pid of that process:
`prepare_run` checks every run folder of the fine-tune folder (the running one reads FOLDER/data), `prepare` and
`start` the job's out folder. `irsam train` itself refuses a second run into its --out as well.

`prepare_run` can be cancelled (its `cancelled` event, set from another thread): it stops at its next step or
exported frame with `RunPreparationCancelled`, whose message says what the fine-tune folder holds. Cancelled
during the export, nothing of that export is kept: the export renames its files into place only after the last
frame, and discards them when stopped before (app.core.export), so FOLDER/data is as it was before; the folders
the export began for a FOLDER/data that was not there are removed again. Cancelled after the export, FOLDER/data
holds the whole export, which the next Start replaces as it replaces any earlier export.

The process runs in its own process group (so `cancel` also stops any workers it started) with its
output in OUT/train.log; `poll` returns the per-epoch records of OUT/metrics.jsonl as they arrive,
`poll_warnings` the warning lines of train.log (e.g. training on the CPU after a GPU failed).
POSIX only (process groups).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from app.core.export import ExportError, ExportReport, dataset_paths, export_project
from app.core.project import ReviewProject, utc_now
from model.atomic import atomic_write_json, atomic_write_text
from model.data import (
    NOT_EIGHT_BIT_MODES,
    counted,
    extra_data_samples,
    find_dataset,
    name_some,
    read_image_gray,
    read_mask,
    read_mask_noting_interpolation,
    read_split,
)
from model.folder_lock import lock_holder
from model.train_config import NO_VALIDATION_TARGET, TRAIN_LOCK

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_FORMAT = "irsam-finetune-job/1"
WARNING_PREFIX = "warning:"  # model/train.py's lines for the analyst, e.g. "warning: training on the CPU: ..."
DATA_FOLDER, RUN_FOLDER = "data", "run"  # of a fine-tune folder (`prepare_run`)
FILES_NAMED = 3  # in a message about many files


@dataclass(frozen=True)
class HoldOut:
    train: list[str]
    val: list[str]
    by: str  # "sequence" or "block"


def hold_out(stems: Sequence[str], frames_meta: dict, val_fraction: float = 0.2) -> HoldOut:
    """Split exported stems into training and validation (see the module docstring).

    `frames_meta` is the export's meta.json "frames" table (stem -> {"sequence", "frame_index", ...});
    stems missing from it count as one unnamed sequence in listed order.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if len(stems) < 2:
        raise ValueError(f"need at least 2 exported frames to hold some out for validation, got {len(stems)}")
    sequences: dict[str, list[tuple[int, str]]] = {}
    for order, stem in enumerate(stems):
        record = frames_meta.get(stem, {})
        sequences.setdefault(str(record.get("sequence", "")), []).append((int(record.get("frame_index", order)), stem))
    ordered = {name: [stem for _, stem in sorted(frames)] for name, frames in sorted(sequences.items())}
    wanted = max(1, math.ceil(val_fraction * len(stems)))
    if len(ordered) > 1:
        val: list[str] = []
        names = list(ordered)
        while len(val) < wanted and len(names) > 1:
            val = ordered[names.pop()] + val
        return HoldOut([s for name in names for s in ordered[name]], val, "sequence")
    (frames,) = ordered.values()
    cut = len(frames) - min(wanted, len(frames) - 1)
    return HoldOut(frames[:cut], frames[cut:], "block")


def format_duration(seconds: float) -> str:
    """"under a minute", "12 min", "2 h 05 min"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class FineTuneSetupError(Exception):
    """`prepare_run` cannot get a run ready; the message names the step (base data, export, preparing)."""


class RunPreparationCancelled(Exception):
    """`prepare_run` stopped as its `cancelled` event was set; the message says what the fine-tune folder holds."""

    @classmethod
    def after_export(cls, export_dir: Path) -> RunPreparationCancelled:
        return cls(f"Cancelled after the export: {export_dir} holds the reviewed frames; no training was started.")


class TrainingStillRunning(FineTuneSetupError):
    """A training process holds the lock of the out folder (model.train.TrainLock): a second one there would write
    the same files, and an export would change its data under it."""


def check_not_training(out_dir: str | Path, instead: str = "choose another fine-tune folder") -> None:
    """TrainingStillRunning when a training process holds `out_dir`'s lock now (nothing is written to find out)."""
    holder = lock_holder(Path(out_dir) / TRAIN_LOCK)
    if holder is not None:
        raise TrainingStillRunning(
            f"A training is still running in {out_dir}{holder or ' (pid not known)'}: wait for it to finish (or "
            f"stop that process), or {instead}. Nothing was exported or started.")


def base_samples(entry: str | Path) -> list:
    """The samples of a base data entry (a folder with images/ + masks/, or a split file inside one:
    model.data.extra_data_samples); ValueError says what is wrong with it, naming the first few images that
    are not 8-bit or cannot be opened (only their headers are read)."""
    try:
        samples = extra_data_samples(entry)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    unusable = []
    for sample in samples:
        try:
            with Image.open(sample.image_path) as image:
                if image.mode in NOT_EIGHT_BIT_MODES:
                    unusable.append(f"{sample.image_path.name} ({image.mode})")
        except OSError:
            unusable.append(f"{sample.image_path.name} (unreadable)")
    if unusable:
        raise ValueError(f"{entry}: {len(unusable)} of its {len(samples)} images cannot be trained on: "
                         f"{name_some(unusable, FILES_NAMED)}. "
                         "Training reads 8-bit images only: normalise them to 8 bits first")
    return samples


def checkpoint_config_args(path: str | Path) -> list[str] | None:
    """`--config NAME [--set FIELD=JSON ...]` reproducing the config stored in our checkpoint at `path` (or in a
    training run's last.pt); None when the file stores none (official / MobileSAM weights carry no config).
    CheckpointError when the file cannot be read."""
    from model.checkpoint import read_torch_file, stored_config
    from model.config import PRESETS, preset

    stored = stored_config(read_torch_file(path), str(path))
    if stored is None:
        return None
    base = preset(stored.name if stored.name in PRESETS else "paper")
    args = ["--config", base.name]
    base_fields, stored_fields = json.loads(json.dumps(base.to_dict())), json.loads(json.dumps(stored.to_dict()))
    for name, value in stored_fields.items():
        if name != "name" and base_fields.get(name) != value:
            args += ["--set", f"{name}={json.dumps(value)}"]
    return args


@dataclass
class FineTuneJob:
    export_dir: str | Path  # an export made by app.core.export
    out_dir: str | Path  # last.pt, best.pt, metrics.jsonl, train.log, split files, finetune.json
    init_weights: str | Path | None = None
    base_data: list[str | Path] | None = None
    epochs: int = 20
    config: str | None = None  # model preset; None: the init checkpoint's own config, else "paper"
    device: str = "auto"
    val_fraction: float = 0.2
    layout: str = "sirst"
    dataset_name: str = "IRSAM-Review"  # basicirstd layout only
    extra_args: list[str] = field(default_factory=list)  # more `irsam train` options, e.g. ["--crop", "256"]
    python: str = sys.executable

    def __post_init__(self):
        self.export_dir, self.out_dir = Path(self.export_dir), Path(self.out_dir)
        self.process: subprocess.Popen | None = None
        self.records: list[dict] = []  # every metrics record polled so far
        # the preparation's warnings (`check_targets`), then every warning line of this run's log polled so far
        self.warnings: list[str] = []
        self._metrics_offset = 0
        self._log_offset = 0
        self._log = None
        self.holdout: HoldOut | None = None
        self.base_frames = 0  # frames of base_data, counted by `prepare`
        self._config_args: list[str] | None = None

    # --- paths ----------------------------------------------------------------------------------

    @property
    def data_root(self) -> Path:
        return dataset_paths(self.export_dir, self.layout, self.dataset_name).root

    @property
    def split_train(self) -> Path:
        return self.out_dir / "split_train.txt"

    @property
    def split_val(self) -> Path:
        return self.out_dir / "split_val.txt"

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "train.log"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    # --- preparing ------------------------------------------------------------------------------

    def prepare(self) -> HoldOut:
        """Check the base data, choose the validation hold-out, write the split files and read the init
        checkpoint's config (done by `start` when not done before; the app does it in a worker, through
        `prepare_run`: reading a checkpoint imports torch). ValueError names a base folder that is not
        images/ + masks/ with a mask for every image, or whose images are not 8-bit; CheckpointError an
        unreadable init checkpoint or one that does not fit `config` (`check_init_weights`); TrainingStillRunning a
        training running in the out folder."""
        self.check_not_training()
        self.check_base_data()
        self.check_init_weights()
        self.choose_holdout()
        self.write_split_files()
        self.read_config_args()
        return self.holdout

    def check_not_training(self) -> None:
        """TrainingStillRunning when a training process (another job's, one outliving a killed window, an
        `irsam train` in a shell) trains in the out folder now."""
        check_not_training(self.out_dir, "choose another out folder")

    def check_base_data(self) -> None:
        """`base_samples` of every base data entry (ValueError), counted in `base_frames`."""
        self.base_frames = sum(len(base_samples(folder)) for folder in self.base_data or [])

    def check_init_weights(self) -> None:
        """CheckpointError when `init_weights` cannot start the `config` network (`irsam train --init` would refuse
        them after the export, listing tensor shapes): e.g. paper weights for the tiny config. Only a chosen preset
        is checked: with `config` None the network is the checkpoint's own, and `--set` overrides are `irsam
        train`'s to judge. Reads the checkpoint and compares shapes on the meta device, taking no memory."""
        if not self.init_weights or self.config is None or any(
                str(a) == "--set" or str(a).startswith("--set=") for a in self.extra_args):
            return
        import torch

        from model.build import build_irsam
        from model.checkpoint import CheckpointError, fitting_preset, init_from_pretrained, read_weights
        from model.config import preset

        state_dict, holds = read_weights(self.init_weights)
        with torch.device("meta"):
            network = build_irsam(preset(self.config))
        try:
            init_from_pretrained(network, state_dict)
        except CheckpointError as error:
            held = holds.name if holds is not None else fitting_preset(state_dict, self.config)
            if held and held != self.config:
                raise CheckpointError(f"The base weights {self.init_weights} hold a {held} network; the model config "
                                      f"is {self.config}: choose the {held} config, or other base weights") from None
            raise CheckpointError(f"The base weights {self.init_weights} do not fit the {self.config} network "
                                  f"({error}): choose another model config, or other base weights"
                                  ) from None

    def choose_holdout(self) -> HoldOut:
        paths = dataset_paths(self.export_dir, self.layout, self.dataset_name)
        train_split = paths.split_files["train"]
        if not train_split.exists():
            raise FileNotFoundError(f"{train_split}: the export has no training split")
        meta_path = paths.root / "meta.json"
        frames_meta = json.loads(meta_path.read_text(encoding="utf-8")).get("frames", {}) if meta_path.exists() else {}
        self.holdout = hold_out(read_split(train_split), frames_meta, self.val_fraction)
        return self.holdout

    def write_split_files(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.split_train, "".join(f"{s}\n" for s in self.holdout.train))
        atomic_write_text(self.split_val, "".join(f"{s}\n" for s in self.holdout.val))

    def read_config_args(self) -> list[str]:
        """`--config ...` of the command: `config`, else the init checkpoint's own, else the paper preset.
        Read once: the checkpoint's config needs torch and the file."""
        if self._config_args is None:
            if self.config is not None:
                self._config_args = ["--config", self.config]
            else:
                stored = checkpoint_config_args(self.init_weights) if self.init_weights else None
                self._config_args = stored or ["--config", "paper"]
        return self._config_args

    def command(self) -> list[str]:
        """The `irsam train` command line (the split files must exist: see `prepare`)."""
        return [self.python, "-m", "app.cli", "train", *self.train_arguments()]

    def train_arguments(self) -> list[str]:
        """The options of `command`, after "train"."""
        arguments = [
            "--data", str(self.data_root),
            "--split-train", str(self.split_train),
            "--split-val", str(self.split_val),
            "--out", str(self.out_dir),
            "--epochs", str(int(self.epochs)),
            "--device", self.device,
            *self.read_config_args(),
        ]
        if self.init_weights:
            arguments += ["--init", str(self.init_weights)]
        for folder in self.base_data or []:
            arguments += ["--extra-data", str(folder)]
        return arguments + [str(a) for a in self.extra_args]

    def settings(self) -> dict:
        """The options the job was made with, as FineTuneJob takes them (JSON): what `recorded_run` reads
        back, so that the dialog offers them again for this run's folder."""
        return {"init_weights": str(self.init_weights) if self.init_weights else None,
                "base_data": [str(entry) for entry in self.base_data or []], "epochs": int(self.epochs),
                "config": self.config, "device": self.device, "extra_args": [str(a) for a in self.extra_args]}

    def check_targets(self) -> None:
        """Refuse a run with nothing to learn (FineTuneSetupError): no target pixel in the reviewed frames
        trained on (the hold-out chosen) nor in the base data; the network would learn to find nothing. When
        the held-out frames hold no target, every epoch scores validation IoU 0, so best.pt keeps the first
        epoch validated: that goes into `warnings`."""
        exported = {s.stem: s for s in find_dataset(self.data_root / "images", self.data_root / "masks", None)}

        def any_target(samples) -> bool:
            return any(read_mask_noting_interpolation(sample.mask_path)[0].any() for sample in samples)

        if not any_target(exported[stem] for stem in self.holdout.train if stem in exported):
            if not any(any_target(extra_data_samples(entry)) for entry in self.base_data or []):
                also = f", and neither has {self.base_data[0]} (Also train on)" if self.base_data else ""
                trained_on = counted(len(self.holdout.train), "frame", "frames")
                raise FineTuneSetupError(
                    f"Nothing to train on: no reviewed frame trained on ({trained_on}) has "
                    f"a target, as they are marked negative or their masks are empty{also}. The network would "
                    "learn to find nothing: accept or correct frames that show a target first.")
        if not any_target(exported[stem] for stem in self.holdout.val if stem in exported):
            which = "the last reviewed ones" if self.holdout.by == "block" else "the last sequences by name"
            held_out = counted(len(self.holdout.val), "frame", "frames")
            self.warnings.append(
                f"warning: no frame held out for validation ({held_out}, {which}) has a "
                "target, so validation cannot tell the epochs apart: best.pt keeps the first epoch validated, "
                "and the comparison of old and new weights can only count false alarms (Fa).")

    # --- running --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("this job has already been started")
        if self.holdout is None:  # not prepared yet (`prepare_run` prepares in a worker)
            self.prepare()
        else:  # one may have started since it was prepared: its train.log and finetune.json stay as they are
            self.check_not_training()
        command = self.command()
        atomic_write_json(self.out_dir / "finetune.json", {
            "format": JOB_FORMAT,
            "started": utc_now(),
            "command": command,
            "export_dir": str(self.export_dir.resolve()),
            "base_data": [str(Path(d).resolve()) for d in self.base_data or []],
            "init_weights": str(self.init_weights) if self.init_weights else None,
            "held_out_by": self.holdout.by,
            "n_train": len(self.holdout.train),
            "n_val": len(self.holdout.val),
            "n_base": self.base_frames,
            "settings": self.settings(),
        })
        self._log = open(self.log_path, "ab")
        self._log_offset = self.log_path.stat().st_size  # a resumed run appends: only its own lines are read
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or not started); the exit status after (negative: killed by that signal)."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            self._close_log()
        return code

    @property
    def running(self) -> bool:
        return self.process is not None and self.returncode is None

    def poll(self) -> list[dict]:
        """Metrics records (one per finished epoch) written since the last poll; a line still being
        written is left for the next poll."""
        lines, self._metrics_offset = _complete_lines(self.metrics_path, self._metrics_offset)
        new = [json.loads(line) for line in lines if line.strip()]
        self.records += new
        return new

    def poll_warnings(self) -> list[str]:
        """Lines of this run's train.log starting with "warning:" written since the last call (a line still
        being written is left for the next call)."""
        lines, self._log_offset = _complete_lines(self.log_path, self._log_offset)
        # a validation part without a target: `check_targets` said it already
        new = [line for line in lines if line.startswith(WARNING_PREFIX) and not line.startswith(NO_VALIDATION_TARGET)]
        self.warnings += new
        return new

    def progress(self) -> float:
        """Finished epochs / epochs, 0..1, from the records polled so far."""
        if not self.records:
            return 0.0
        return min(1.0, int(self.records[-1].get("epoch", 0)) / max(1, int(self.epochs)))

    def remaining_seconds(self) -> float | None:
        """Estimated time to the last epoch: the mean length of the epochs polled so far (training and
        validation) times the epochs left; None before the first record."""
        timed = [r for r in self.records if "seconds" in r]
        if not timed:
            return None
        per_epoch = sum(float(r["seconds"]) + float(r.get("val_seconds", 0.0)) for r in timed) / len(timed)
        return per_epoch * max(0, int(self.epochs) - int(self.records[-1].get("epoch", 0)))

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process exits (raises subprocess.TimeoutExpired after `timeout` seconds)."""
        if self.process is None:
            raise RuntimeError("this job has not been started")
        code = self.process.wait(timeout)
        self._close_log()
        return code

    def cancel(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the whole process group, SIGKILL after `timeout` seconds; returns the exit status.

        Training can be resumed later by starting a job with the same out folder (last.pt is written
        atomically after every epoch).
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # the leader is gone; anything it started in its group goes too, and is waited for: killed
        # members linger until the init process reaps them (a moment, longer on a busy machine)
        _signal_group(self.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._close_log()
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The end of train.log: what to show when the process failed (returncode != 0)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])

    def validation_samples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(8-bit image, bool mask) of the held-out frames in split order, for `compare_weights`."""
        return [(read_image_gray(s.image_path), read_mask(s.mask_path))
                for s in find_dataset(self.data_root / "images", self.data_root / "masks", self.split_val)]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass(frozen=True)
class PreparedRun:
    """`prepare_run`'s result."""

    report: ExportReport
    job: FineTuneJob | None  # prepared, in its run folder; None when no frame was exported
    note: str = ""  # how the run folder was chosen, when the latest one held a run


def prepare_run(folder: str | Path, project: ReviewProject, *, sequence_name: str | None = None, source=None,
                normalization=None, progress: Callable[[int, int], None] | None = None,
                cancelled: threading.Event | None = None, **options) -> PreparedRun:
    """Get a fine-tune run in `folder` ready to start (module docstring), the soonest failure first: the
    base data checked, the base weights checked against the model config (`FineTuneJob.check_init_weights`), the
    reviewed frames exported into FOLDER/data (replacing this sequence's earlier
    export there; `sequence_name`, `source`, `normalization` and `progress` as export_project takes them:
    by default the name FOLDER/data already gives this sequence), the hold-out
    chosen, the run folder picked and the job prepared in it. `options` are FineTuneJob's (init_weights,
    epochs, ...).
    FineTuneSetupError names the step that failed; TrainingStillRunning (one) a training still running in a run
    folder of `folder`, before anything is exported. RunPreparationCancelled once `cancelled` is set (module
    docstring): checked between the steps and after each exported frame."""
    folder = Path(folder)

    def stop_if_cancelled(cancellation: RunPreparationCancelled) -> None:
        if cancelled is not None and cancelled.is_set():
            raise cancellation

    nothing_written = RunPreparationCancelled("Cancelled before the export: nothing was written.")
    stop_if_cancelled(nothing_written)
    for run_folder in run_folders(folder).values():  # it reads FOLDER/data, which the export would change
        check_not_training(run_folder)
    job = FineTuneJob(folder / DATA_FOLDER, folder / RUN_FOLDER, **options)
    try:
        job.check_base_data()
    except ValueError as e:
        raise FineTuneSetupError(f"Also train on: {e}") from None
    from model.checkpoint import CheckpointError

    try:
        job.check_init_weights()
    except CheckpointError as e:  # its message names the base weights and the config
        raise FineTuneSetupError(str(e)) from None
    stop_if_cancelled(nothing_written)
    new_folders = [path for path in (folder, job.export_dir) if not path.exists()]  # the export makes them
    cut_short = RunPreparationCancelled(
        f"Cancelled during the export: none of its files were kept; {job.export_dir} is as it was before."
        if not new_folders else "Cancelled during the export: none of its files or folders were kept.")

    def progress_until_cancelled(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        stop_if_cancelled(cut_short)  # the export discards the files it wrote, none of them renamed into place yet

    try:
        report = export_project(project, job.export_dir, job.layout, split="train", append=True,
                                dataset_name=job.dataset_name, sequence_name=sequence_name, source=source,
                                normalization=normalization, progress=progress_until_cancelled)
    except RunPreparationCancelled:
        for new_folder in reversed(new_folders):
            _remove_empty_folders(new_folder)
        raise
    except (ExportError, OSError) as e:
        raise FineTuneSetupError(f"Export failed: {e}") from None
    if not report.exported:
        return PreparedRun(report, None)
    after_export = RunPreparationCancelled.after_export(job.export_dir)
    stop_if_cancelled(after_export)
    try:
        job.choose_holdout()
        job.check_targets()
        note = choose_run_folder(job, folder)
        job.write_split_files()
        job.read_config_args()
    except (ValueError, OSError, CheckpointError) as e:
        raise FineTuneSetupError(f"Could not prepare training: {e}") from None
    stop_if_cancelled(after_export)
    return PreparedRun(report, job, note)


def _remove_empty_folders(top: Path) -> None:
    """Remove `top` and the folders in it, as far as they hold no file (a file left keeps its folders)."""
    for folder, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:  # not empty
            pass


def run_folders(folder: Path) -> dict[int, Path]:
    """The run folders of a fine-tune folder by number, oldest first: run (1), run-2, run-3, ..."""
    numbered = {}
    for path in folder.glob(f"{RUN_FOLDER}*"):
        suffix = path.name[len(RUN_FOLDER):]
        if path.is_dir() and (suffix == "" or suffix[:1] == "-" and suffix[1:].isdecimal()):
            numbered[int(suffix[1:] or 1)] = path
    return dict(sorted(numbered.items()))


@dataclass(frozen=True)
class RecordedRun:
    """`recorded_run`'s result."""

    out_dir: Path
    settings: dict  # FineTuneJob.settings() of its last start
    epochs_done: int  # by its metrics.jsonl

    @property
    def finished(self) -> bool:
        return self.epochs_done >= int(self.settings["epochs"])


def recorded_run(folder: str | Path) -> RecordedRun | None:
    """The latest run of fine-tune folder `folder` (the one Start resumes or begins a new one beside:
    `choose_run_folder`) with the settings its finetune.json recorded; None without one (no run yet, or
    one started by a version that did not record them)."""
    runs = run_folders(Path(folder))
    if not runs:
        return None
    out_dir = runs[max(runs)]
    try:
        settings = json.loads((out_dir / "finetune.json").read_text(encoding="utf-8"))["settings"]
        lines, _ = _complete_lines(out_dir / "metrics.jsonl", 0)
        done = max((int(json.loads(line)["epoch"]) for line in lines if line.strip()), default=0)
        int(settings["epochs"])  # a dict, with the epochs every reader needs
        return RecordedRun(out_dir, settings, done)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose_run_folder(job: FineTuneJob, folder: Path) -> str:
    """Point `job` (its hold-out chosen) at the run folder it trains in (module docstring): the latest
    of `folder`'s, or a new one beside it. Returns the note for the analyst ("" when the latest held no run)."""
    runs = run_folders(folder)
    latest = max(runs, default=1)
    job.out_dir = runs.get(latest, folder / RUN_FOLDER)
    if not any((job.out_dir / name).exists() for name in ("last.pt", "best.pt", "metrics.jsonl")):
        return ""
    why_not, done = _why_not_resumed(job)
    if why_not is None:
        return f"Resuming the run in {job.out_dir} after epoch {done} of {job.epochs}."
    previous = job.out_dir
    job.out_dir = folder / f"{RUN_FOLDER}-{latest + 1}"
    return f"The run in {previous} {why_not}: this one starts afresh in {job.out_dir}."


def describe_cancelled(job: FineTuneJob) -> str:
    """What Start does after `job` was cancelled (by `choose_run_folder`'s rule), for the analyst."""
    done = int(job.records[-1]["epoch"]) if job.records else 0
    if not job.last_path.exists():
        return "Cancelled before the first epoch ended: Start begins the run again."
    if done >= job.epochs:
        return (f"Cancelled after the last of its {job.epochs} epochs (best.pt holds the best one): Start begins a "
                "new run beside it.")
    after = f" after epoch {done} of {job.epochs}" if done else ""  # its record may not be written yet
    return (f"Cancelled{after}. Start resumes it from {job.last_path} while the folder, the settings and the "
            "reviewed frames stay the same; otherwise it begins a new run beside it.")


def _why_not_resumed(job: FineTuneJob) -> tuple[str | None, int]:
    """(None, epochs done) when `job` resumes the run in its out folder, else (why not, 0): the rule of
    `irsam train`'s own resume (model.train.check_same_run), which would refuse a changed run, with its
    reviewed frames named as such; a run that has done all its epochs is not resumed, nor one whose last.pt
    predates the record of its settings (irsam train resumes that unchecked; here a new run is safer)."""
    if not job.last_path.exists():
        return "left no last.pt to resume from", 0
    from model.checkpoint import CheckpointError, read_torch_file
    from model.train import config_change, data_contents, model_config_of, run_changes, run_record
    from model.train_config import train_config_of_command

    try:
        state = read_torch_file(job.last_path)
        done = int(state["epoch"]) + 1
        cfg = train_config_of_command(job.train_arguments())
        change = config_change(state, model_config_of(cfg))
        run = json.loads(state["run"]) if "run" in state else None
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        return f"cannot be resumed ({e})", 0
    if change is not None:
        return f"trained another network ({change})", 0
    if run is None:
        return "was started by an older version that did not record its settings", 0
    try:
        extra = [extra_data_samples(entry) for entry in cfg.extra_data]
        exported = {s.stem: s for s in find_dataset(job.data_root / "images", job.data_root / "masks", None)}
        train, val = ([exported[stem] for stem in stems if stem in exported] for stems in (job.holdout.train,
                                                                                             job.holdout.val))
        contents = data_contents(train, val, extra)
    except (OSError, ValueError) as e:  # the training would refuse it too
        return f"cannot be resumed ({e})", 0
    now = run_record(cfg, 1, job.holdout.train, job.holdout.val, [[s.stem for s in samples] for samples in extra],
                     contents)
    changes = run_changes(run, now)
    if changes.keys() & {"train_stems", "val_stems"}:
        return "trained on other reviewed frames", 0
    if changes.keys() & {"train_content", "val_content"}:
        return "trained on reviewed frames whose masks have changed since (corrected and exported again)", 0
    if changes:
        return f"was started with other settings ({'; '.join(changes.values())})", 0
    if done >= cfg.epochs:
        return f"had done all its {cfg.epochs} epochs", 0
    return None, done


def _complete_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """The complete lines of `path` after byte `offset`, and the offset after them; ([], offset) while
    the file does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]
    return complete.decode("utf-8", errors="replace").splitlines(), offset + len(complete)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def compare_weights(old: str | Path, new: str | Path, samples: Iterable[tuple[np.ndarray, np.ndarray]],
                    device: str = "cpu", refine: str = "contrast",
                    cancelled: threading.Event | None = None) -> dict[str, dict] | None:
    """{"old": metrics, "new": metrics}: both checkpoints scored on the same (image, mask) samples with
    the project's metric code (model.metrics.SegmentationMetrics; IoU, nIoU, Pd, Fa). Checkpoints are
    read by `Predictor.from_file` (ours, or an official IRSAM state_dict); `refine` as the app detects
    (model.predictor.Predictor). None once `cancelled` is set (checked before each checkpoint and image)."""
    from model.metrics import SegmentationMetrics
    from model.predictor import Predictor

    samples = list(samples)
    if not samples:
        raise ValueError("no samples to compare the weights on")
    images = [np.ascontiguousarray(image, dtype=np.uint8) for image, _ in samples]
    results = {}
    for name, path in (("old", old), ("new", new)):
        if cancelled is not None and cancelled.is_set():
            return None
        predictor = Predictor.from_file(path, device=device, refine=refine)
        metrics = SegmentationMetrics()
        for image, (_, mask) in zip(images, samples):
            if cancelled is not None and cancelled.is_set():
                return None
            metrics.update(predictor.detect([image])[0].logits, mask)
        results[name] = metrics.result()
    return results
