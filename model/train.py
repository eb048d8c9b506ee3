"""Training: the paper's recipe, single process or `torchrun` (DDP), resumable.

Recipe (paper 4.1): AdamW lr 1e-4, cosine decay monotone over the whole run, flip + large-scale
jitter, Dice + 10 BCE(edge). Checkpoints are selected on a validation part of trainval, never on test.

Out folder:
  last.pt         everything needed to resume (model and its config, optimiser, scheduler, weight average,
                  epoch, best score, the run's options and images: `check_same_run`)
  best.pt         our checkpoint format (model.checkpoint) of the best validation IoU (of the weight
                  average, when `ema_decay` keeps one); its metadata names the data by absolute paths. A resume
                  that finds it missing or unreadable says so and writes a new one: the best of the epochs it
                  runs, or with none left last.pt's weights (the summary's "best_note" says which)
  metrics.jsonl   one line per epoch: losses, validation IoU/nIoU/Pd/Fa, lr (of its first step), seconds; an
                  undefined value (Pd of a validation split without a target) is null, as JSON has no NaN (lines
                  written before, with NaN, are still read)

A new run goes into a new or empty folder; running the same command again resumes from last.pt (or, killed in
its first epoch before last.pt was written, starts again). A resumed run may raise --epochs and change the
options in RESUMABLE_OPTIONS; any other change is refused, except that it may leave out --init (last.pt holds the
weights: --init is read by a new run only, so a resume works once its file is gone). A resumed run is the run it
resumes: the order and augmentation of each epoch's images are seeded by (seed, epoch) and the rest of its state is
in last.pt. --max-minutes stops at an epoch boundary, before an epoch that would not end within the limit (its
steps, validation and saving as long as this process's took on average, the validation of the epoch it would stop
at included), after at least one epoch, which is validated.

One run at a time writes into an --out: a run holds OUT/train.lock (`TrainLock`, an flock naming its pid; rank 0's
under torchrun) from before it looks at the folder to its end; a second run into the same --out is refused at once
(`TrainingRunningError`, naming the folder and the pid of the run in it) and writes nothing. The kernel drops the
lock with its process, so a killed run never leaves the folder locked (the file it leaves locks as usual).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import re
import statistics
import time
import warnings
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from model.augment import AugmentConfig, SegmentationDataset
from model.build import build_irsam
from model.checkpoint import (
    RESUME_STATE_KEYS,
    CheckpointError,
    InitReport,
    compare_keys,
    fitting_preset,
    init_from_pretrained,
    load_checkpoint,
    read_torch_file,
    read_weights,
    save_checkpoint,
)
from model.config import PRESETS, IRSAMConfig, field_value_problem, preset
from model.data import (EIGHT_BIT_AS_STORED, Sample, counted, extra_data_root, extra_data_samples, find_dataset,
                        name_some, pixels_digest, read_samples)
from model.folder_lock import FolderLock
from model.losses import LOSSES
from model.metrics import SegmentationMetrics
from model.predictor import check_device_name, choose_device
from model.train_config import NO_VALIDATION_TARGET, TRAIN_LOCK, TrainConfig

MIN_CROP, MAX_CROP = 32, 2048  # 2048: 4x the paper's crop, the largest input `irsam stats` sizes
# Options a resumed run may change: where and how fast it computes (the device and the precision change the
# rounding only; validation always runs in fp32), when it validates and stops. --epochs may grow: the cosine
# schedule then runs over the new total from the step reached (cosine_schedule).
# Options added since runs were first recorded, with the value the runs recorded without them trained with: a resume
# compares against it (a run started before --scale-range existed jittered 0.8..1.5)
RECORDED_SINCE = {"scale_range": [0.8, 1.5]}
RESUMABLE_OPTIONS = ("epochs", "device", "precision", "workers", "max_minutes", "val_every")
# What a new --out may already hold besides the files the command reads: the log its output is redirected
# to (`> OUT/train.log`) and app.core.finetune's record of the command it starts (finetune.json).
LAUNCHER_FILES = ("finetune.json",)
LOG_SUFFIX = ".log"
# model.atomic's temporary files of the files training writes (tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")):
# a write killed before its rename leaves one, removed when the same command runs again
OUR_TEMPORARY = re.compile(r"\.(last\.pt|best\.pt|metrics\.jsonl)\.[a-z0-9_]+\.tmp")
MAX_SCALE = 4.0  # jitter beyond it scales a 512 frame past 2048 px, out of any crop's reach
NAMED_ENTRIES = 5  # of a folder, in a message


def check_options(cfg: TrainConfig) -> None:
    """Raise ValueError naming every recipe option outside its range, before anything is built or written."""
    checks = [
        (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"--batch-size must be at least 1, got {cfg.batch_size}"),
        (math.isfinite(cfg.lr) and cfg.lr > 0, f"--lr must be a finite positive number, got {cfg.lr}"),
        (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0,
         f"weight_decay must not be negative, got {cfg.weight_decay}"),
        (MIN_CROP <= cfg.crop <= MAX_CROP, f"--crop must lie in {MIN_CROP}..{MAX_CROP}, got {cfg.crop}"),
        (0 <= cfg.target_crop_prob <= 1, f"--target-crop-prob must lie in 0..1, got {cfg.target_crop_prob}"),
        (len(cfg.scale_range) == 2 and all(math.isfinite(v) for v in cfg.scale_range)
         and 0 < cfg.scale_range[0] <= cfg.scale_range[1] <= MAX_SCALE,
         f"--scale-range takes LOW HIGH with 0 < LOW <= HIGH <= {MAX_SCALE}, got {' '.join(map(str, cfg.scale_range))}"),
        (cfg.paste_targets >= 0, f"--paste-targets must not be negative, got {cfg.paste_targets}"),
        (cfg.workers >= 0, f"--workers must not be negative, got {cfg.workers}"),
        (cfg.seed >= 0, f"--seed must not be negative, got {cfg.seed}"),
        (cfg.val_every >= 1, f"--val-every must be at least 1, got {cfg.val_every}"),
        (cfg.max_minutes is None or cfg.max_minutes > 0, f"--max-minutes must be positive, got {cfg.max_minutes}"),
        (cfg.ema_decay is None or 0 < cfg.ema_decay < 1, f"--ema-decay must lie in (0, 1), got {cfg.ema_decay}"),
        (cfg.init != "", "--init is empty: give a weights file, or leave out --init"),
    ]
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise ValueError("; ".join(problems))


def model_config_of(cfg: TrainConfig) -> IRSAMConfig:
    """The --config preset with the --set overrides; ValueError naming a preset or a field that does not exist,
    a value of another type than its field's ("--set embed_dim: must be an integer, got "x""), or a value the config
    refuses."""
    if cfg.config not in PRESETS:
        raise ValueError(f"--config {cfg.config}: no such network; --config takes {', '.join(PRESETS)}")
    settable = sorted(f.name for f in fields(IRSAMConfig) if f.name != "name")
    unknown = sorted(set(cfg.config_overrides) - set(settable))
    if unknown:
        raise ValueError(f"--set {', '.join(unknown)}: unknown model config field; --set takes {', '.join(settable)}")
    mistyped = [f"--set {name}: {problem}" for name, value in cfg.config_overrides.items()
                if (problem := field_value_problem(name, value))]
    if mistyped:
        raise ValueError("; ".join(mistyped))
    try:
        return preset(cfg.config).replace(**cfg.config_overrides)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--set {settings_text(cfg.config_overrides)}: {first_line(error)}") from None


def build_model(model_config: IRSAMConfig, overrides: dict) -> torch.nn.Module:
    """The network of `model_config`; with --set overrides also run once on a small blank frame, so values no
    network can have (a negative or zero size, ...) stop the run here, in a ValueError naming them."""
    if not overrides:
        return build_irsam(model_config)
    try:
        model = build_irsam(model_config)
        with torch.no_grad():
            output = model(torch.zeros(1, 3, MIN_CROP, MIN_CROP))
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as error:
        raise ValueError(f"--set {settings_text(overrides)}: no {model_config.name} network works with these values "
                         f"({first_line(error)})") from None
    if not torch.isfinite(output.mask_logits).all():
        raise ValueError(f"--set {settings_text(overrides)}: the {model_config.name} network gives NaN or infinite "
                         "logits with these values")
    return model


def settings_text(overrides: dict) -> str:
    return " ".join(f"{name}={json.dumps(value)}" for name, value in overrides.items())


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def split_samples(data: Path, split_file: str, option: str = "") -> list[Sample]:
    """The samples a split file lists (raises when it lists none, or an image or mask is missing, naming `option`,
    the split's command-line option, where given)."""
    if not data.is_dir():
        what = "a file, not a folder" if data.exists() else "no such folder"
        raise ValueError(f"--data {data}: {what}; --data takes a data set folder holding images/ and masks/")
    missing = [name for name in ("images", "masks") if not (data / name).is_dir()]
    if missing:
        inside = sorted(p.name for p in data.iterdir() if (p / "images").is_dir() and (p / "masks").is_dir())
        hint = f": the data set is in {data / inside[0]} (a BasicIRSTD export keeps it in a folder of its name)" \
            if len(inside) == 1 else ""
        raise ValueError(f"--data {data} holds no {' or '.join(f'{name}/' for name in missing)} folder{hint}")
    try:
        samples = find_dataset(data / "images", data / "masks", split_file)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{option + ' ' if option else ''}{split_file}: {error}") from None
    if not samples:
        raise ValueError(f"split file {split_file} lists no images")
    return samples


def extra_data_option_samples(entry: str) -> list[Sample]:
    """`extra_data_samples` of an --extra-data entry; its FileNotFoundError names the option."""
    try:
        return extra_data_samples(entry)
    except FileNotFoundError as error:
        said = str(error).removeprefix(f"{Path(entry)}: ")  # the messages that name the entry start with it
        raise FileNotFoundError(f"--extra-data {entry}: {said}") from None


def load_split(data: Path, split_file: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(images, masks, stems) of a split; ValueError naming every unusable file."""
    samples = split_samples(data, split_file)
    images, masks, problems = read_samples(samples)
    if problems:
        raise ValueError(unusable_files_message(problems))
    return images, masks, [s.stem for s in samples]


def unusable_files_message(problems: list[str]) -> str:
    return f"{len(problems)} unusable training or validation file(s): " + "; ".join(problems)


def cosine_schedule(total_steps: int):
    """Multiplier for LambdaLR: 1 -> 0 over total_steps, monotone (the official schedule restarts by accident).
    A run resumed with more epochs goes on from the step it reached on the curve of the new total (the
    learning rate rises to where a run of that length would be, then decays to 0 at its end)."""
    total = max(1, total_steps)
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 / AMX: without them CPU bf16 is emulated and several times slower than fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device` (None: fp32). fp16 off CUDA is bf16, as the predictor
    runs it: CPU fp16 is emulated, an order of magnitude slower than fp32 (a training step of the paper
    config on 128 px crops, 2-core AVX-512 CPU: 12x; bf16 1.7x)."""
    if precision == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_fast_bf16() else None
        return torch.float16
    if precision == "fp16" and device.type != "cuda":
        return torch.bfloat16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_warnings(precision: str, dtype: torch.dtype | None, device: torch.device) -> list[str]:
    """Lines telling that training runs in another precision than asked, or in a slow one."""
    warnings = []
    if precision == "fp16" and dtype != torch.float16:
        warnings.append(f"warning: --precision fp16 runs on CUDA only: training in bf16 on the {device.type}, "
                        "as inference does")
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.append("warning: this CPU has no native bf16 (AVX-512 BF16 or AMX): bf16 is emulated, several "
                        "times slower than --precision fp32")
    return warnings


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def predict_logits(model, images, device, dtype=None) -> list[np.ndarray]:
    """The network's logits of whole frames (uint8 HxW), computed as `irsam eval --refine off` computes them: by
    the Predictor (model.predictor), whose input handling validation must share (native configs padded and
    tiled above 1024 px, upsample2x ones resized to 512), in eval's batches (model.evaluate.BATCH_SIZE frames
    to each detect call), with no decision threshold and no refinement. `dtype` None is fp32."""
    from model.evaluate import BATCH_SIZE
    from model.predictor import Predictor

    was_training = model.training
    try:
        predictor = Predictor(model, model.config, device=str(device), precision=precision_name(dtype))
        return [result.logits for start in range(0, len(images), BATCH_SIZE)
                for result in predictor.detect(images[start : start + BATCH_SIZE])]
    finally:
        model.train(was_training)


def validate(model, images, masks, device, dtype) -> dict:
    """Metrics as the field computes them, on full validation frames (`predict_logits`: as irsam eval sees them)."""
    metrics = SegmentationMetrics()
    for logits, mask in zip(predict_logits(model, images, device, dtype), masks):
        metrics.update(logits, mask)
    return plain_numbers(metrics.result())


def plain_numbers(result: dict) -> dict[str, int | float]:
    """The numeric entries of a metrics result as Python numbers (counts stay integers: "hits": 2, not 2.0):
    checkpoints are read with weights_only=True, which refuses numpy scalars."""
    return {k: int(v) if isinstance(v, (int, np.integer)) else float(v)
            for k, v in result.items() if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


def training_device(requested: str, local_rank: int | None = None) -> tuple[torch.device, str | None]:
    """The device to train on, and why it is the CPU when "auto" found a GPU that fails (else None).

    `requested` is checked like `choose_device`'s (auto, cpu, cuda, cuda:N). "cuda" or "cuda:N" without
    working CUDA raise ValueError: training on the CPU instead would take hours nobody asked for.
    Single process: "cuda:N" is GPU N ("cuda" and "auto": GPU 0). Under torchrun (`local_rank` given)
    each process takes the GPU of its LOCAL_RANK, whatever N, and a process whose GPU fails raises
    ValueError even with "auto" (its peers on their GPUs would wait for it forever).
    """
    requested = check_device_name(requested)
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), None
    if local_rank is not None:
        wanted = f"cuda:{local_rank}"
    else:
        wanted = requested if requested.startswith("cuda:") else "cuda:0"
    choice = choose_device(wanted)
    if choice.fallback_reason is None:
        return choice.device, None
    if local_rank is not None:  # one process on the CPU would wait forever for its NCCL peers
        raise ValueError(f"torchrun process {local_rank}: {choice.fallback_reason}; start at most one process per "
                         "GPU, or train with --device cpu")
    if requested == "auto":
        return choice.device, choice.fallback_reason
    raise ValueError(f"--device {requested}: {choice.fallback_reason}; use --device cpu to train on the CPU")


class DistributedContext:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process. Under torchrun
    even one process goes through DDP (so `--nproc_per_node 1` checks the NCCL path on a one-GPU machine).
    The device comes from `training_device`: an explicit CUDA request without working CUDA raises
    ValueError before any process group starts; `fallback_reason` says why "auto" trains on the CPU
    despite a GPU."""

    def __init__(self, device: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = "WORLD_SIZE" in os.environ and "RANK" in os.environ
        self.device, self.fallback_reason = training_device(device, self.local_rank if self.enabled else None)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.enabled:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank (every rank must call it)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_text(self, text: str) -> str:
        """Rank 0's `text`, on every rank."""
        if not self.enabled:
            return text
        box = [text]
        dist.broadcast_object_list(box, 0)
        return box[0]

    def gather(self, value: float) -> list[float]:
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        """Every rank leaves together: a rank that destroyed its group and exited while another still
        used the group aborted now and then in gloo's teardown ("terminate called without an active
        exception", seen once in CI)."""
        if self.enabled:
            dist.barrier()
            dist.destroy_process_group()


class EpochSampler(DistributedSampler):
    """The shuffled indices of an epoch, each paired with the epoch: (epoch, index) (`EpochItems` reads them).

    The order is `DistributedSampler`'s, a permutation seeded by seed + epoch, for one process as for torchrun,
    so a resumed run takes the order the uninterrupted run takes (a DataLoader's own shuffle generator is
    seeded once per process: a resumed run started again from epoch 1's order). The sampler runs in the main
    process and the epoch goes with each index to the worker processes, which stay alive from epoch to epoch
    (persistent_workers) with their own copy of the dataset: `set_epoch` on the main process's copy never
    reached them, and every epoch had the first one's augmentation."""

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


class EpochItems(Dataset):
    """A dataset with `set_epoch` (SegmentationDataset) read by (epoch, index) keys (`EpochSampler`): each item is
    augmented as the epoch it is drawn for, in whichever process reads it."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler of fp16 autocast on CUDA (disabled otherwise); its state is saved in last.pt."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16 and device.type == "cuda")


class TrainingDiverged(ValueError):
    """The weights became NaN or infinite; nothing of that epoch was saved."""


def _diverged(ctx: DistributedContext, epoch: int, last_path: Path, dtype, what: str) -> TrainingDiverged:
    """Leave the process group (every rank calls this at the same step, the DDP wrapper dropped) and say what
    last.pt still holds."""
    ctx.close()
    # a resumed run keeps its learning rate (check_same_run refuses another --lr): a lower one is a new run
    if epoch:
        advice = (f"{last_path} keeps epoch {epoch}: start again into another --out with a lower --lr"
                  + (", or resume this run with --precision fp32" if dtype is not None else ""))
    else:
        advice = (f"{last_path} keeps nothing: start again with a lower --lr"
                  + (" or --precision fp32" if dtype is not None else ""))
    return TrainingDiverged(f"training diverged in epoch {epoch + 1}: {what}; {advice}")


def parameter_checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum().item() for p in model.parameters()))


class WeightAverage:
    """Exponential moving average of a model's weights, updated after every optimiser step.

    On 256 training images, validation IoU swings by a point or two from one epoch to the next; the
    average of the last few hundred steps smooths that, and it is the one validated and kept. Off by
    default: from scratch on NUAA-SIRST it lost to the plain run at the same seed (model card, session 8).
    Floating-point tensors (parameters, normalisation statistics) are averaged, integer buffers copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._averages = [a for a, _ in pairs if a.is_floating_point()]
        self._current = [m for a, m in pairs if a.is_floating_point()]
        self._copied = [(a, m) for a, m in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._averages, self._current, 1.0 - self.decay)
        for a, m in self._copied:
            a.copy_(m)


class TrainingRunningError(ValueError):
    """Another run trains into the --out now (it holds OUT/train.lock): nothing was written."""


class TrainLock(FolderLock):
    """The lock on OUT/train.lock, held by a training run from before it looks at its --out to its end: two runs
    into one --out would both write last.pt, best.pt and metrics.jsonl (and the app's fine-tune dialog would export
    its data again under the running one). The second is refused at once (`TrainingRunningError`, naming the folder
    and the pid of the run holding it). Where the folder cannot be made the run goes on unlocked and
    `make_out_folder` says why."""

    def __init__(self, folder: str | Path, holder: str = "irsam train"):
        super().__init__(folder, TRAIN_LOCK, holder)

    def refused(self, other: str) -> Exception:
        return TrainingRunningError(f"another training run{other} is training into --out {self.folder} now: nothing "
                                    "was written; wait for it to finish, or train into another --out")


@contextlib.contextmanager
def _out_locked(out: Path, ctx: DistributedContext):
    """Hold `TrainLock` on `out` while the run trains (under torchrun rank 0 holds it for every process); when
    another run holds it, every process leaves the process group and raises TrainingRunningError."""
    lock, refusal = None, ""
    if ctx.is_main:
        try:
            lock = TrainLock(out).acquire()
        except TrainingRunningError as error:
            refusal = str(error)
    refusal = ctx.broadcast_text(refusal)
    if refusal:
        ctx.close()
        raise TrainingRunningError(refusal)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def train(cfg: TrainConfig, log=print) -> dict:
    """Runs (or resumes) training; returns the final summary (best validation metrics, paths).

    Bad options, unusable data files, an --out holding something else than a run to resume and a last.pt
    that cannot be resumed with these options raise (ValueError or CheckpointError) before the out folder is
    created or anything is written; an --out another run trains into now raises TrainingRunningError (a
    ValueError) before anything there is read or written (`TrainLock`, held until this run ends)."""
    t_start = time.time()  # --max-minutes counts from here
    check_options(cfg)
    ctx = DistributedContext(cfg.device)
    with _out_locked(Path(cfg.out), ctx):
        return _train(cfg, ctx, t_start, log)


def _train(cfg: TrainConfig, ctx: DistributedContext, t_start: float, log) -> dict:
    """`train`'s run, its --out locked."""
    if ctx.is_main and ctx.fallback_reason:
        log(f"warning: training on the CPU: {ctx.fallback_reason}")
    torch.manual_seed(cfg.seed)
    model_config = model_config_of(cfg)
    model = build_model(model_config, cfg.config_overrides)
    out = Path(cfg.out)
    last_path = out / "last.pt"
    cfg, resume_state, init_report, leftovers = _resume_state_or_new_run(cfg, model, model_config, out)
    model.to(ctx.device).train()
    data = Path(cfg.data)
    train_samples = split_samples(data, cfg.split_train, "--split-train")
    val_samples = split_samples(data, cfg.split_val, "--split-val")
    train_stems, val_stems = [s.stem for s in train_samples], [s.stem for s in val_samples]
    overlap = set(train_stems) & set(val_stems)
    if overlap:
        raise ValueError(f"train and validation splits share {counted(len(overlap), 'image', 'images')}, "
                         f"e.g. {sorted(overlap)[:3]}")
    extra_samples = [extra_data_option_samples(entry) for entry in cfg.extra_data]
    run = run_record(cfg, ctx.world_size, train_stems, val_stems,
                     [[s.stem for s in samples] for samples in extra_samples],
                     data_contents(train_samples, val_samples, extra_samples))
    new_extra_samples = _new_extra_samples(cfg, train_samples, val_samples, extra_samples, ctx, log)
    # read before the run is compared: a damaged file changes the contents the run recorded, and is what to report
    train_images, train_masks, val_images, val_masks = _read_images(train_samples + new_extra_samples, val_samples,
                                                                    ctx, log)
    if resume_state is not None and "run" in resume_state:  # last.pt files from before runs were recorded: as they are
        check_same_run(out, json.loads(resume_state["run"]), run)
    if ctx.is_main and not any(mask.any() for mask in val_masks):
        log(f"{NO_VALIDATION_TARGET} ({len(val_masks)}) has a target, so validation cannot tell the "
            "epochs apart: its IoU is 0 and Pd undefined at every epoch, and best.pt keeps the first epoch validated")
    export_windows = _export_windows(cfg, data, set(train_stems) | set(val_stems), extra_samples)
    ctx.barrier()  # every process has looked at --out before its leftovers go
    if ctx.is_main:
        make_out_folder(out)
        if leftovers:
            remove_leftovers(leftovers, log)

    loader = _epoch_loader(train_images, train_masks, cfg, ctx)
    steps_per_epoch = max(1, len(loader))
    optimizer, scheduler = _optimizer_and_schedule(model, cfg, steps_per_epoch, resume_state)
    dtype = autocast_dtype(cfg.precision, ctx.device)
    if ctx.is_main:
        for warning in precision_warnings(cfg.precision, dtype, ctx.device):
            log(warning)
    scaler = grad_scaler(dtype, ctx.device)
    loss_fn = LOSSES[cfg.loss]

    start_epoch, best_iou, best_metrics, best_lost = 0, -1.0, {}, None
    if resume_state is not None:
        start_epoch, best_iou, best_metrics, best_lost = _resume(resume_state, model, scaler, scheduler, cfg, ctx, out,
                                                                 log)
    elif ctx.is_main and init_report is not None:
        log(f"initialised from {cfg.init}: {init_report.summary()}")

    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None and ctx.is_main else None
    if average is not None and resume_state is not None and resume_state.get("average") is not None:
        average.model.load_state_dict(resume_state["average"])
    kept = average.model if average is not None else model  # the network validated and saved as best.pt
    if best_lost:
        rebuild = start_epoch >= cfg.epochs  # no epoch left to write a new best.pt: last.pt's weights make it
        if rebuild:
            best_metrics = validate(kept, val_images, val_masks, ctx.device, None)
            best_iou = best_metrics["iou"]
        # last.pt says first what best.pt holds from now on: killed before best.pt is written, the run finds it lost
        # again; after, later epochs are compared with best.pt's IoU, not the lost one's
        try:
            _write_resume_state(last_path, {**resume_state, "best_iou": best_iou,
                                            "best_metrics": json.dumps(best_metrics)})
        except OSError as error:
            raise save_failed(last_path, error, ("best.pt is not rebuilt" if rebuild else "nothing was trained")
                              + f"; {last_path} keeps its previous version, of epoch {start_epoch}",
                              "the same command " + ("rebuilds best.pt, training nothing" if rebuild
                                                     else f"resumes at epoch {start_epoch + 1}")) from error
        if rebuild:
            try:
                save_checkpoint(out / "best.pt", kept, model_config,
                                _metadata(cfg, start_epoch, best_metrics, val_stems, export_windows, dtype))
            except OSError as error:
                raise save_failed(out / "best.pt", error, f"best.pt is not rebuilt; {last_path} holds all "
                                  f"{cfg.epochs} epochs", "the same command rebuilds it, training nothing") from error
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if ctx.enabled else model
    if ctx.is_main:
        log(
            f"training {model_config.name} on {counted(len(loader.dataset), 'image', 'images')} ({len(val_images)} "
            f"for validation), {ctx.world_size} process(es) on {ctx.device}, autocast {dtype}, {steps_per_epoch} "
            "steps/epoch"
        )
    stopped_early, epochs_done = False, start_epoch
    # of each epoch this process ran: its training steps, its validation (where it ran) and the rest (saving)
    step_seconds: list[float] = []
    val_seconds: list[float] = []
    rest_seconds: list[float] = []
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.time()
        record = _train_epoch(net, loader, optimizer, scheduler, scaler, average, loss_fn, dtype, ctx, epoch,
                              cfg.epochs, steps_per_epoch, t_epoch)
        if record is None:  # the DDP wrapper goes before the process group does
            del net
            raise _diverged(ctx, epoch, last_path, dtype, "the network's outputs became NaN or infinite")
        if ctx.enabled:
            # every rank's weights must be identical after the step: recorded so tests (and users) can check
            record["param_checksums"] = ctx.gather(parameter_checksum(model))

        # every rank holds the same weights: rank 0 judges them, before anything of this epoch is saved
        if ctx.broadcast_flag(not math.isfinite(parameter_checksum(model))):
            del net
            raise _diverged(ctx, epoch, last_path, dtype, "the weights became NaN or infinite")
        is_last = epoch + 1 == cfg.epochs
        step_seconds.append(time.time() - t_epoch)
        # out of time: this epoch is validated, then the run stops
        stop_reason = (_out_of_time(cfg, ctx, epoch, t_start, step_seconds, val_seconds, rest_seconds)
                       if cfg.max_minutes is not None and not is_last else None)
        t_rest, validated = time.time(), 0.0
        if ctx.is_main:
            if (epoch + 1) % cfg.val_every == 0 or is_last or stop_reason is not None:
                val, validated = _validate_epoch(kept, val_images, val_masks, ctx.device, record)
                val_seconds.append(validated)
                if val["iou"] > best_iou:
                    best_iou, best_metrics = val["iou"], val
                    with _epoch_saving(out / "best.pt", epoch, last_path):
                        save_checkpoint(out / "best.pt", kept, model_config,
                                        _metadata(cfg, epoch + 1, best_metrics, val_stems, export_windows, dtype))
            with _epoch_saving(last_path, epoch, last_path):
                _save_resume_state(last_path, model, model_config, average, optimizer, scheduler, scaler, epoch,
                                   best_iou, best_metrics, record, run)
            try:
                _append_record(out / "metrics.jsonl", record, log)
            except OSError as error:
                raise save_failed(out / "metrics.jsonl", error, f"epoch {epoch + 1} is saved in {last_path}, but "
                                  "its line is not in metrics.jsonl", "the same command writes the line back from "
                                  f"last.pt and {_goes_on(epoch + 1, cfg.epochs)}") from error
        ctx.barrier()
        epochs_done = epoch + 1
        rest_seconds.append(time.time() - t_rest - validated)
        if stop_reason is not None:
            stopped_early = True
            if ctx.is_main:
                log(f"stopping after {(time.time() - t_start) / 60:.2f} minutes (limit {cfg.max_minutes:g}): "
                    f"{stop_reason}; run the same command again to resume")
            break
    del net  # DDP's reducer holds the process group; it goes before the group does
    ctx.close()
    if ctx.is_main and not stopped_early and (out / "best.pt").exists():
        try:
            calibrate_threshold(out / "best.pt", val_images, val_masks, str(ctx.device), log)
        except OSError as error:
            raise save_failed(out / "best.pt", error, "the decision threshold chosen on validation is not stored "
                              f"in it (it keeps its previous version); {last_path} holds all {cfg.epochs} epochs",
                              "the same command chooses the threshold again, training nothing") from error
    summary = {
        "best_val_iou": best_iou,
        "best_val_metrics": best_metrics,
        "best": str(out / "best.pt") if (out / "best.pt").exists() else None,
        "last": str(last_path),
        "complete": not stopped_early,
        "minutes": round((time.time() - t_start) / 60, 2),
    }
    if best_lost:
        first = start_epoch + 1
        if epochs_done == start_epoch:
            held = f"last.pt's weights of epoch {start_epoch}, the last, not necessarily the best"
        else:
            held = "the best of " + (f"epoch {first}" if epochs_done == first else f"epochs {first} to {epochs_done}")
        summary["best_note"] = f"{best_lost}: best.pt holds {held}"
    return summary


class SaveFailed(OSError):
    """A write of the run's files failed (a full disk, permissions): the message names the file, what was lost,
    what is kept and how to go on. The previous version of the file is kept (model.atomic)."""


def save_failed(path: Path, error: OSError, lost: str, then: str) -> SaveFailed:
    """SaveFailed: "cannot write PATH (why): LOST; once the cause is fixed, THEN"."""
    failed = SaveFailed(f"cannot write {path} ({error.strerror or error}): {lost}; once the cause is fixed, {then}")
    failed.errno = error.errno
    return failed


def _goes_on(epochs_done: int, epochs: int) -> str:
    """What running the same command does with `epochs_done` of `epochs` saved in last.pt."""
    if epochs_done >= epochs:
        return "finishes the run (it chooses best.pt's decision threshold)"
    return f"resumes at epoch {epochs_done + 1}"


@contextlib.contextmanager
def _epoch_saving(path: Path, epoch: int, last_path: Path):
    """Turn a failed write of `path` (best.pt or last.pt) at the end of `epoch` (counted from 0) into SaveFailed
    saying that the epoch is lost and what last.pt still holds: the epoch before, or nothing."""
    try:
        yield
    except OSError as error:
        earlier = f"{path.name} keeps its previous version and " if path != last_path and path.exists() else ""
        if epoch:
            lost = f"epoch {epoch + 1}'s training is lost; {earlier}{last_path} still holds epoch {epoch}"
            then = f"the same command resumes at epoch {epoch + 1}"
        else:
            lost = f"epoch 1's training is lost, and nothing of the run is saved ({last_path} was never written)"
            then = "the same command starts the run again"
        raise save_failed(path, error, lost, then) from error


def interruption_note(out: Path, epochs: int) -> str:
    """What an interrupted `irsam train` into `out` (of `epochs` epochs) leaves, and how to go on."""
    last_path = out / "last.pt"
    if not last_path.exists():
        return (f"nothing of this run is saved yet ({last_path} is written at the end of each epoch); the same "
                "command starts it again")
    try:  # mmap: the epoch only, without reading the weights
        done = int(torch.load(last_path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
    except Exception as error:  # noqa: BLE001 - a foreign or damaged file: the resume names the problem
        return f"{last_path} cannot be read ({first_line(error)}); the same command says what to do"
    if done >= epochs:
        return f"{last_path} holds all {epochs} epochs; the same command {_goes_on(done, epochs)}"
    return (f"{last_path} holds epoch {done} of {epochs} (the epoch under way is lost); the same command "
            f"{_goes_on(done, epochs)}")


def _resume_state_or_new_run(cfg: TrainConfig, model: torch.nn.Module, model_config: IRSAMConfig,
                             out: Path) -> tuple[TrainConfig, dict | None, InitReport | None, list[Path]]:
    """(cfg, resume state, --init report, leftovers to remove) of `out`: for a resume, last.pt's state and
    training's temporary files, with cfg keeping the run's --init when the command leaves it out; for a new run,
    `model` initialised from --init (its report) and what `check_new_out_folder` found left by a killed run."""
    last_path = out / "last.pt"
    if last_path.exists():  # last.pt holds the weights: --init is not read (its file may be gone)
        resume_state = read_resume_state(last_path, model, model_config)
        leftovers = our_temporary_files(out)
        run_init = json.loads(resume_state["run"]).get("init") if "run" in resume_state else None
        if cfg.init is None and run_init:  # resumed without --init: the run keeps the one it started from
            cfg = replace(cfg, init=run_init)
        return cfg, resume_state, None, leftovers
    init_report = None
    if cfg.init:  # before the out folder and the data: weights that do not fit stop the run at once
        init_report = initialise(model, cfg.init, model_config)
    inputs = (cfg.split_train, cfg.split_val, cfg.init, *cfg.extra_data)
    leftovers = check_new_out_folder(out, {Path(absolute(path)) for path in inputs if path}, cfg)
    return cfg, None, init_report, leftovers


def _new_extra_samples(cfg: TrainConfig, train_samples: list[Sample], val_samples: list[Sample],
                       extra_samples: list[list[Sample]], ctx: DistributedContext, log) -> list[Sample]:
    """The samples of the --extra-data entries (`extra_samples`) that the training set does not hold yet: each image
    is trained on once (an extra data set often holds the training split, a trainval.txt). ValueError naming an
    entry that holds validation images: checkpoint selection would reward memorising them."""
    # An image is known by its file and by its pixels: an export holds copies of its source's frames under other
    # names (the source's frames given as extra data beside an export of them, or the other way round)
    # (each decoded once more: about 2 ms for a 512x512 image, so only when there is extra data)
    def known_as(samples: list[Sample]) -> list[tuple[Path, str | None]]:
        return [(s.image_path.resolve(), pixels_digest(s.image_path) if cfg.extra_data else None) for s in samples]

    val_keys = {key for keys in known_as(val_samples) for key in keys}
    train_keys = {key for keys in known_as(train_samples) for key in keys}
    val_keys.discard(None)
    train_keys.discard(None)  # an unreadable image is reported by `_read_images`
    new_extra_samples = []
    for entry, samples in zip(cfg.extra_data, extra_samples):
        keys_of = known_as(samples)
        leaked = sorted(s.stem for s, keys in zip(samples, keys_of) if val_keys & set(keys))
        if leaked:
            raise ValueError(f"--extra-data {entry} holds {len(leaked)} of the validation images (the same file or "
                             f"the same pixels), e.g. {', '.join(leaked[:3])}: give a split file of that data set that "
                             "leaves them out (a copy of its list without those stems)")
        new = [s for s, keys in zip(samples, keys_of) if not train_keys & set(keys)]
        train_keys.update(key for keys in keys_of for key in keys if key is not None)
        new_extra_samples += new
        if ctx.is_main and len(new) < len(samples):
            log(f"--extra-data {entry}: {len(samples) - len(new)} of its {len(samples)} images are in the training "
                "set already (each image is trained on once)")
    return new_extra_samples


def _read_images(train_samples: list[Sample], val_samples: list[Sample], ctx: DistributedContext,
                 log) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(training images, their masks, validation images, their masks); rank 0 logs each warning reading them
    gave, and ValueError names every unusable file."""
    with warnings.catch_warnings(record=True) as caught:  # e.g. InterpolatedMaskWarning: one line each, below
        warnings.simplefilter("always")
        train_images, train_masks, problems = read_samples(train_samples)
        val_images, val_masks, val_problems = read_samples(val_samples)
    if ctx.is_main:
        for warning in caught:
            log(f"warning: {warning.message}")
    if problems or val_problems:
        raise ValueError(unusable_files_message(problems + val_problems))
    return train_images, train_masks, val_images, val_masks


def _export_windows(cfg: TrainConfig, data: Path, stems: set[str],
                    extra_samples: list[list[Sample]]) -> dict[str, dict[str, dict]]:
    """`exported_windows` of --data (over `stems`) and of each --extra-data entry (over its samples), by the folder's
    absolute path (or the split file's, for an entry given as one); folders without an export record left out."""
    windows = {absolute(cfg.data): exported_windows(data, stems)}
    for entry, samples in zip(cfg.extra_data, extra_samples):
        windows[absolute(entry)] = exported_windows(extra_data_root(entry), {sample.stem for sample in samples})
    return {folder: folder_windows for folder, folder_windows in windows.items() if folder_windows}


def _epoch_loader(images: list[np.ndarray], masks: list[np.ndarray], cfg: TrainConfig,
                  ctx: DistributedContext) -> DataLoader:
    """This process's batches of the augmented training images, drawn by an EpochSampler (`loader.sampler`: set its
    epoch before each epoch)."""
    augment = AugmentConfig(crop=cfg.crop, target_crop_prob=cfg.target_crop_prob, orientations=cfg.orientations,
                            paste_targets=cfg.paste_targets, scale_range=tuple(cfg.scale_range))
    dataset = SegmentationDataset(images, masks, augment, seed=cfg.seed)
    # the epoch travels with each index (EpochSampler), so persistent workers augment as the epoch drawn for
    sampler = EpochSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed)
    return DataLoader(
        EpochItems(dataset),
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=len(dataset) >= cfg.batch_size * ctx.world_size,
        generator=torch.Generator().manual_seed(cfg.seed),  # only seeds the workers' RNGs, which nothing draws from
        persistent_workers=cfg.workers > 0,
    )


def _optimizer_and_schedule(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int,
                            resume_state: dict | None):
    """AdamW and its cosine schedule over the run's steps (`cosine_schedule`), at the step last.pt reached."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_done = 0
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        steps_done = int(resume_state["scheduler"]["last_epoch"])
    # made at the step reached, so a run resumed with more epochs takes the new schedule from its first step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(cfg.epochs * steps_per_epoch),
                                                  last_epoch=steps_done - 1)
    return optimizer, scheduler


def _resume(resume_state: dict, model: torch.nn.Module, scaler: torch.amp.GradScaler, scheduler, cfg: TrainConfig,
            ctx: DistributedContext, out: Path, log) -> tuple[int, float, dict, str | None]:
    """Load last.pt's weights and loss scale into `model` and `scaler`; rank 0 says where the run resumes and makes
    metrics.jsonl say what last.pt holds (`reconcile_log`). Returns (the first epoch to run, the best validation
    IoU, its metrics, None; best.pt's own where they differ from last.pt's), or, on rank 0 when last.pt records a
    best and the run's best.pt is missing or unusable (`best_checkpoint`),
    (the first epoch to run, -1, {}, what happened to the best epoch's weights): the next validated epoch then writes
    a new best.pt, or with no epoch left `_train` makes it of last.pt's weights; either way `_train` first writes
    last.pt's best IoU and metrics anew."""
    model.load_state_dict(resume_state["model"])
    start_epoch, best_iou = int(resume_state["epoch"]) + 1, float(resume_state["best_iou"])
    best_metrics = json.loads(resume_state["best_metrics"])
    if scaler.is_enabled() and resume_state.get("scaler"):  # none: a run before fp16, or before it was saved
        scaler.load_state_dict(resume_state["scaler"])
    if ctx.is_main:
        where = (f"at epoch {start_epoch + 1}/{cfg.epochs}" if start_epoch < cfg.epochs
                 else f"with all {cfg.epochs} epochs done")
        best = f"best val IoU {best_iou:.4f}" if best_iou >= 0 else "no validated epoch yet"
        log(f"resuming from {out / 'last.pt'} {where} ({best})")
        run_epochs = json.loads(resume_state["run"])["epochs"] if "run" in resume_state else cfg.epochs
        if run_epochs < cfg.epochs:
            log(f"extended from {run_epochs} to {cfg.epochs} epochs: the cosine schedule now spans {cfg.epochs} "
                f"epochs, lr {scheduler.get_last_lr()[0]:.2e} at epoch {start_epoch + 1}")
        try:
            repaired = reconcile_log(out / "metrics.jsonl", start_epoch, resume_state.get("record"))
        except OSError as error:
            raise save_failed(out / "metrics.jsonl", error, f"nothing was trained; {out / 'last.pt'} still holds "
                              f"epoch {start_epoch}",
                              f"the same command {_goes_on(start_epoch, cfg.epochs)}") from error
        if repaired:
            log(f"metrics.jsonl: {repaired} (the last run was killed between the two writes)")
    problem, best_pt_metrics = best_checkpoint(out / "best.pt") if ctx.is_main else (None, None)
    if problem is None or best_iou < 0:  # with no best recorded yet, a missing or unreadable best.pt lost nothing
        recorded = best_pt_metrics.get("iou") if isinstance(best_pt_metrics, dict) else None
        if isinstance(recorded, (int, float)) and recorded != best_iou:
            # an epoch wrote best.pt and was killed before last.pt (even before last.pt recorded any best): what
            # best.pt holds is the best to beat, or the epoch run again would replace it with a worse one
            said = f"recorded {best_iou:.4f}" if best_iou >= 0 else "recorded no validated epoch yet"
            log(f"{out / 'best.pt'} holds val IoU {recorded:.4f}, last.pt {said} (the run was killed between the "
                "two writes): resuming against best.pt's")
            return start_epoch, float(recorded), best_pt_metrics, None
        return start_epoch, best_iou, best_metrics, None
    best_path = out / "best.pt"
    then = ("the next validated epoch writes a new best.pt, the best of the epochs from here on"
            if start_epoch < cfg.epochs else f"best.pt is made again of last.pt's weights of epoch {start_epoch}, the "
            "last epoch, not necessarily the best")
    log(f"warning: {best_path} is {problem}: the weights of the run's best epoch so far (val IoU {best_iou:.4f}) are "
        f"lost; {then}")
    return start_epoch, -1.0, {}, (f"{best_path} was {problem} when the run resumed (the weights of its best epoch "
                                   f"until then, val IoU {best_iou:.4f}, were lost)")


def best_checkpoint(path: Path) -> tuple[str | None, dict | None]:
    """(why a run's best.pt cannot be used, "missing" or "unreadable (why)", or None when it loads; the validation
    metrics its metadata records, None where it records none)."""
    if not path.exists():
        return "missing", None
    try:
        metadata = load_checkpoint(path)[2]
    except CheckpointError as error:
        return f"unreadable ({str(error).removeprefix(f'{path}: ')})", None
    metrics = metadata.get("metrics")
    return None, metrics.get("val") if isinstance(metrics, dict) else None


def _train_epoch(net: torch.nn.Module, loader: DataLoader, optimizer, scheduler, scaler: torch.amp.GradScaler,
                 average: WeightAverage | None, loss_fn, dtype: torch.dtype | None, ctx: DistributedContext,
                 epoch: int, epochs: int, steps_per_epoch: int, t_epoch: float) -> dict | None:
    """The training steps of `epoch` (counted from 0): its metrics.jsonl record so far (mean losses, the lr of its
    first step, seconds since `t_epoch`), or None when the network's outputs became NaN or infinite on any rank
    (every rank returns at the same step, holding nothing of it, for the caller to drop the DDP wrapper and stop)."""
    loader.sampler.set_epoch(epoch)
    sums: dict[str, float] = {}
    epoch_lr = scheduler.get_last_lr()[0]  # the lr of the epoch's first step; the schedule lowers it every step
    progress = _progress(loader, f"epoch {epoch + 1}/{epochs}", ctx.is_main)
    for x, y in progress:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out_ = net(x)
        mask_logits, edge_probs = out_.mask_logits.float(), out_.edge_probs.float()
        # the weights went NaN or infinite at the step before: the loss would fail on its input
        if ctx.any_rank(not bool(torch.isfinite(mask_logits).all() and torch.isfinite(edge_probs).all())):
            return None
        loss, parts = loss_fn(mask_logits, edge_probs, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if average is not None:
            average.update()
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        if hasattr(progress, "set_postfix"):
            progress.set_postfix(loss=f"{loss.item():.4f}")
    record = {k: v / steps_per_epoch for k, v in sums.items()}
    record.update(epoch=epoch + 1, lr=epoch_lr, seconds=round(time.time() - t_epoch, 1))
    return record


def _out_of_time(cfg: TrainConfig, ctx: DistributedContext, epoch: int, t_start: float, step_seconds: list[float],
                 val_seconds: list[float], rest_seconds: list[float]) -> str | None:
    """Why the run stops after `epoch` (counted from 0), its steps done: the next epoch would not end within
    --max-minutes (rank 0's decision, on every rank); None to go on. What is left of this epoch counts too (its
    validation, where it validates anyway, and saving), and so does the next epoch's validation (the run would stop
    after it); before any validation was timed, one is taken to last as long as an epoch's steps."""
    steps = statistics.fmean(step_seconds)
    validation_timed = bool(val_seconds)
    validation = statistics.fmean(val_seconds) if validation_timed else steps
    rest = statistics.fmean(rest_seconds) if rest_seconds else 0.0
    this_epoch_left = rest + (validation if (epoch + 1) % cfg.val_every == 0 else 0.0)
    if not ctx.broadcast_flag(
            time.time() - t_start + this_epoch_left + steps + validation + rest > 60 * cfg.max_minutes):
        return None
    return (f"epoch {epoch + 2} would not end within it (about {steps / 60:.2f} minutes of training, "
            f"{validation / 60:.2f} of validation{'' if validation_timed else ' (not timed yet: taken as long)'} "
            f"and {rest / 60:.2f} of saving)")


def _validate_epoch(kept: torch.nn.Module, val_images: list[np.ndarray], val_masks: list[np.ndarray],
                    device: torch.device, record: dict) -> tuple[dict, float]:
    """(validation metrics, seconds) of the network kept as best.pt, both added to the epoch's `record`."""
    t_val = time.time()
    # in fp32, as irsam eval and detect run by default and as the threshold is calibrated, so
    # best.pt's metrics are the ones those report (autocast shifts the logits a little)
    val = validate(kept, val_images, val_masks, device, None)
    seconds = time.time() - t_val
    record.update({f"val_{k}": v for k, v in val.items()}, val_seconds=round(seconds, 1))
    return val, seconds


def _append_record(path: Path, record: dict, log) -> None:
    """Add the epoch's line to metrics.jsonl and log it."""
    with open(path, "a") as f:
        f.write(metrics_line(record) + "\n")
    log(_format_record(record))


def metrics_line(record: dict) -> str:
    """An epoch's metrics.jsonl line: JSON, with null for NaN or infinity (Pd of a validation split without a
    target), which JSON has no value for (strict parsers, jq and JavaScript refuse a bare NaN)."""
    from model.atomic import json_values

    return json.dumps(json_values(record), allow_nan=False)


def initialise(model: torch.nn.Module, init: str, model_config: IRSAMConfig) -> InitReport:
    """Initialise `model` from the --init file (`init_from_pretrained`); CheckpointError naming the file, the config
    and, for our checkpoints, the network the file holds."""
    state_dict, holds = read_weights(init)
    try:
        return init_from_pretrained(model, state_dict)
    except CheckpointError as error:
        named = network_named(holds, model_config)
        if holds is None and (fitting := fitting_preset(state_dict, model_config.name)):  # a bare state_dict
            named = f"the file holds the tensors of a {fitting} network (--config {fitting}): "
        raise CheckpointError(f"--init {init} for the {model_config.name} config: {named}{error}") from None


def network_named(holds: IRSAMConfig | None, model_config: IRSAMConfig) -> str:
    """What a refused --init file's stored config says of it ("the file holds a tiny network: "), "" for none."""
    if holds is None:
        return ""
    if holds.name != model_config.name:
        return f"the file holds a {holds.name} network: "
    ours, theirs = model_config.to_dict(), holds.to_dict()
    changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    return f"the file holds a {holds.name} network with other --set values ({', '.join(changed)}): " if changed else ""


THRESHOLD_CANDIDATES = np.round(np.arange(-2.0, 6.01, 0.25), 2)
# a best threshold at an edge of the sweep widens it by THRESHOLD_WIDEN on that side, up to +-THRESHOLD_LIMIT
THRESHOLD_STEP, THRESHOLD_WIDEN, THRESHOLD_LIMIT = 0.25, 2.0, 20.0


MAX_THRESHOLD_POSITIVE = 0.5  # a threshold marking more than half of the frames' pixels is no decision


def choose_threshold(logits: list[np.ndarray], masks: list[np.ndarray]) -> tuple[float, dict[float, dict]]:
    """The logit threshold with the best IoU over (logits, mask) pairs (ties: the one nearest 0) among those
    detecting as many targets as threshold 0 does (at least one, when 0 finds none) and marking at most
    MAX_THRESHOLD_POSITIVE of the pixels, and every candidate's metrics. The search covers
    THRESHOLD_CANDIDATES and widens by THRESHOLD_WIDEN on a side while that edge scores the best IoU (a
    fine-tune on unlike data can shift the logits further), up to +-THRESHOLD_LIMIT."""

    total = sum(lg.size for lg in logits)
    marked: dict[float, float] = {}  # threshold -> fraction of all pixels above it

    def scored(t: float) -> dict:
        metrics = SegmentationMetrics()
        for lg, mask in zip(logits, masks):
            metrics.update(lg - t, mask)
        marked[t] = sum(int(np.count_nonzero(lg > t)) for lg in logits) / max(total, 1)
        return plain_numbers(metrics.result())

    def keeps_targets(t: float) -> bool:
        # An undertrained network's IoU can peak where every pixel is positive: one frame-sized component,
        # which finds a target only if one lies at the frame's centre. So a threshold must find as many targets
        # as 0 does and must not mark most of the pixels (counted directly: Fa leaves out a component matched
        # to a target). (Pd is NaN on data without targets: then the Pd rule passes every threshold.)
        return t == 0.0 or not results[t]["pd"] < results[0.0]["pd"] and marked[t] <= MAX_THRESHOLD_POSITIVE

    def choosable(t: float) -> bool:
        # when 0 finds no target, another threshold is taken only if it finds one: nothing to calibrate on
        return keeps_targets(t) and (t == 0.0 or results[0.0]["pd"] != 0 or results[t]["pd"] > 0)

    results = {float(t): scored(float(t)) for t in THRESHOLD_CANDIDATES}
    while True:
        best = max(filter(choosable, results), key=lambda t: (results[t]["iou"], -abs(t)))
        top = results[best]["iou"]
        more = []
        for edge, step in ((max(results), THRESHOLD_STEP), (min(results), -THRESHOLD_STEP)):
            # the best IoU reaches the edge: go on
            if keeps_targets(edge) and results[edge]["iou"] >= top and abs(edge) < THRESHOLD_LIMIT:
                end = float(np.clip(edge + np.sign(step) * THRESHOLD_WIDEN, -THRESHOLD_LIMIT, THRESHOLD_LIMIT))
                more += list(np.arange(edge + step, end + step / 2, step))
        if not more:
            return best, results
        results.update({float(t): scored(float(t)) for t in np.round(more, 2)})


def calibrate_threshold(checkpoint: str | Path, images, masks, device: str = "cpu", log=print) -> dict:
    """Choose the logit threshold with the best validation IoU that keeps the Pd of threshold 0
    (`choose_threshold`) and store it in the checkpoint.

    Trained on crops where most pixels are sky, the network's logits are biased; the field's
    metrics threshold at 0, so the shift is stored (metadata "decision_threshold") and the
    predictor applies it. Chosen on validation frames only, never on test.
    """
    model, config, metadata = load_checkpoint(checkpoint)
    logits = predict_logits(model.to(device), images, torch.device(device), None)
    best, results = choose_threshold(logits, masks)
    metadata["decision_threshold"] = best
    metadata.setdefault("metrics", {})["val_at_threshold"] = results[best]
    save_checkpoint(checkpoint, model, config, metadata)
    r, r0 = results[best], results[0.0]
    epoch = metadata.get("training", {}).get("epoch")
    # the "0" side is the epoch line's validation of the same weights, so the two can be compared
    log(f"decision threshold {best:+.2f} chosen on validation for {Path(checkpoint).name}"
        + (f" (epoch {epoch})" if epoch is not None else "")
        + f"; threshold 0 -> {best:+.2f}: IoU {r0['iou']:.4f} -> {r['iou']:.4f}, "
        f"Pd {r0['pd']:.4f} -> {r['pd']:.4f}, Fa {r0['fa'] * 1e6:.2f} -> {r['fa'] * 1e6:.2f} x1e-6")
    return {"threshold": best, "at_zero": r0, "at_threshold": r}


def exported_windows(folder: Path, stems: set[str] | None = None) -> dict[str, dict]:
    """Per sequence, the normalisation with which `app.core.export` turned raw frames into the 8-bit
    images of `folder` (from its meta.json), over the frames in `stems` (all when None); {} for a data
    set without an export record (e.g. a published one)."""
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none (a published data set), or not ours: training does not need it
        return {}
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, dict):
        return {}
    return {
        str(record.get("sequence", stem)): record["normalization"]
        for stem, record in frames.items()
        if (stems is None or stem in stems) and isinstance(record, dict) and isinstance(record.get("normalization"), dict)
    }


def _metadata(cfg: TrainConfig, epoch: int, metrics: dict, val_stems: list[str], export_windows: dict,
              dtype: torch.dtype | None) -> dict:
    options = with_absolute_paths(asdict(cfg))  # the checkpoint says where its data is wherever it is copied
    return {
        # What the network saw: model.data reads 8-bit images only and feeds them as stored. Raw
        # (e.g. 16-bit) frames reach training only through an export's window, recorded below.
        "normalization": dict(EIGHT_BIT_AS_STORED),
        "training": {
            "data": options["data"],
            "split_train": options["split_train"],
            "split_val": options["split_val"],
            "n_val": len(val_stems),
            "extra_data": options["extra_data"],
            "images": "8-bit images used as stored (model.data refuses other bit depths)",
            "export_normalization": export_windows,  # data folder -> sequence -> raw-to-8-bit window
            "recipe": {k: v for k, v in options.items() if k not in ("data", "out")},
            "precision_used": precision_name(dtype),  # the recipe's "auto", or fp16 off CUDA, resolved
            "epoch": epoch,
        },
        "metrics": {"val": metrics},
    }


def read_resume_state(path: Path, model: torch.nn.Module, model_config: IRSAMConfig) -> dict:
    """The resume state in OUT/last.pt, checked to be a run of `model_config`; CheckpointError naming the
    file when it cannot be read or holds another model."""
    # without last.pt, the run's other files would stop a new run (check_new_out_folder)
    others = [name for name in ("best.pt", "metrics.jsonl") if (path.parent / name).exists()]
    advice = ("remove it to start afresh" + (f" (with the run's {' and '.join(others)} too)" if others else "")
              + ", or train into another --out")
    try:
        state = read_torch_file(path)
        if not isinstance(state, dict) or not RESUME_STATE_KEYS <= state.keys():
            raise CheckpointError(f"{path}: not a resume state written by irsam train")
    except CheckpointError as error:
        raise CheckpointError(f"cannot resume: {error}; {advice}") from None
    change = config_change(state, model_config)
    if change is not None:
        raise CheckpointError(f"{path.parent} holds a run of {change}: resume it with the run's --config and --set "
                              "options, or train into another --out")
    report = compare_keys(model, state["model"])  # files from before the config was stored
    if not report.ok:
        raise CheckpointError(f"{path} holds a run of another model config than {model_config.name} "
                              f"({report.summary()}): resume it with its --config, or train into another --out")
    return state


def config_change(state: dict, model_config: IRSAMConfig) -> str | None:
    """How the model config a resume state (last.pt) was trained with differs from `model_config`: "config
    official, not paper" or "config paper with other --set values (fusion, ...)"; None when it is the same, or
    the state is from before configs were stored."""
    if "config" not in state:
        return None
    stored = json.loads(state["config"])
    try:  # fields added since the run started read as their defaults
        stored = json.loads(json.dumps(IRSAMConfig.from_dict(stored).to_dict()))
    except (TypeError, ValueError):
        pass  # reported below as a config that differs
    current = json.loads(json.dumps(model_config.to_dict()))
    if stored.get("name") != model_config.name:
        return f"config {stored.get('name')}, not {model_config.name}"
    if stored != current:
        changed = sorted(k for k in current.keys() | stored.keys() if current.get(k) != stored.get(k))
        return f"config {model_config.name} with other --set values ({', '.join(changed)})"
    return None


def check_new_out_folder(out: Path, inputs: set[Path], cfg: TrainConfig | None = None) -> list[Path]:
    """ValueError naming what an existing --out without last.pt holds, the command's own input files, logs,
    LAUNCHER_FILES and TRAIN_LOCK aside: a new run would overwrite its best.pt, add to its metrics.jsonl, or write
    into a data set or a review project. What this command left when it was killed in its first epoch is not in the
    way: training's temporary files (OUR_TEMPORARY) and, with `cfg`, a best.pt `first_epoch_best` recognises;
    returns them, for `remove_leftovers`."""
    try:
        entries = sorted(out.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # a new folder, or one make_out_folder cannot make
        return []
    except OSError as error:
        raise ValueError(f"cannot read --out {out}: {error.strerror or error}") from None
    leftovers = [entry for entry in entries if is_our_temporary(entry)]
    if cfg is not None and first_epoch_best(out / "best.pt", cfg):
        leftovers.append(out / "best.pt")
    others = [entry.name + ("/" if entry.is_dir() else "") for entry in entries
              if not (Path(absolute(entry)) in inputs or entry.name in (*LAUNCHER_FILES, TRAIN_LOCK)
                      or entry in leftovers or entry.suffix == LOG_SUFFIX and entry.is_file())]
    if others:
        raise ValueError(f"--out {out} holds {name_some(others, NAMED_ENTRIES)} and no last.pt to resume: train into a new or empty folder")
    return leftovers


def is_our_temporary(path: Path) -> bool:
    return OUR_TEMPORARY.fullmatch(path.name) is not None and path.is_file()


def our_temporary_files(out: Path) -> list[Path]:
    """Training's temporary files in `out` (writes killed before their rename)."""
    try:
        return sorted(entry for entry in out.iterdir() if is_our_temporary(entry))
    except OSError:
        return []


def first_epoch_best(path: Path, cfg: TrainConfig) -> bool:
    """Whether `path`, a best.pt beside no last.pt, is what the command of `cfg` wrote before it was killed in its
    first epoch (best.pt is written just before last.pt): a checkpoint of epoch 1 without a calibrated threshold
    (chosen after the last epoch), of this data and recipe (RESUMABLE_OPTIONS aside). Running the same command
    again then starts the run again."""
    if not path.is_file():
        return False
    try:
        metadata = read_torch_file(path)["metadata"]
        training = metadata["training"]
        then, epoch, data = training["recipe"], training["epoch"], training["data"]
    except (CheckpointError, KeyError, TypeError):
        return False
    if not isinstance(then, dict):
        return False
    try:  # a best.pt written before paths were recorded absolute holds them as typed, relative to this folder
        then, data = with_absolute_paths(then), absolute(data)
    except TypeError:  # not paths
        return False
    now = _metadata(cfg, 1, {}, [], {}, None)["training"]["recipe"]
    then = {**RECORDED_SINCE, **then}
    recipe = [json.loads(json.dumps({k: v for k, v in r.items() if k not in RESUMABLE_OPTIONS})) for r in (then, now)]
    return (epoch == 1 and "decision_threshold" not in metadata and data == absolute(cfg.data)
            and recipe[0] == recipe[1])


def remove_leftovers(paths: list[Path], log) -> None:
    """Remove what a killed run left (`check_new_out_folder`, `our_temporary_files`), saying so."""
    for path in paths:
        path.unlink(missing_ok=True)
    starts_again = any(path.name == "best.pt" for path in paths)
    log(f"removed {', '.join(path.name for path in paths)} from {paths[0].parent}: left by "
        + ("this command killed in its first epoch, before last.pt was written; starting again" if starts_again
           else "writes killed before they completed"))


def data_contents(train_samples: list[Sample], val_samples: list[Sample], extra_samples: list[list[Sample]]) -> dict:
    """What `run_record` keeps of the files themselves: a SHA-1 over each sample's image and mask bytes, for the
    training and validation splits and each --extra-data entry, so that a mask corrected (exported again) under
    the same name is a change a resume must not mix in. Reads every file once (about 1 s for 10,000 small PNGs)."""
    def digest(samples: list[Sample]) -> str:
        combined = hashlib.sha1()
        for sample in sorted(samples, key=lambda s: s.stem):
            combined.update(sample.stem.encode("utf-8") + b"\0")
            for path in (sample.image_path, sample.mask_path):
                try:
                    combined.update(hashlib.sha1(Path(path).read_bytes()).digest())
                except OSError:  # a broken link, a folder: `read_samples` names every unusable file
                    combined.update(b"unreadable")
        return combined.hexdigest()

    return {"train_content": digest(train_samples), "val_content": digest(val_samples),
            "extra_data_content": [digest(samples) for samples in extra_samples]}


def run_record(cfg: TrainConfig, processes: int, train_stems: list[str], val_stems: list[str],
               extra_stems: list[list[str]] | None = None, contents: dict | None = None) -> dict:
    """What makes the run what it is, kept in last.pt for `check_same_run`: its options (paths resolved: a
    resume from another working folder compares equal; the model config is checked by read_resume_state),
    its number of processes (with the batch size, the images of a step), the images its splits list and the
    images of each --extra-data entry (`extra_stems`, in the order of cfg.extra_data; None: not recorded, so not
    compared, for callers that do not read the extra data)."""
    options = with_absolute_paths(asdict(cfg))
    for name in ("out", "config", "config_overrides"):
        del options[name]
    record = {**options, "processes": processes, "train_stems": sorted(train_stems), "val_stems": sorted(val_stems)}
    if extra_stems is not None:
        record["extra_data_stems"] = [sorted(stems) for stems in extra_stems]
    record.update(contents or {})  # `data_contents`; None: not recorded, so not compared
    return json.loads(json.dumps(record))  # as last.pt gives it back


def absolute(path: str | Path) -> str:
    """`path` resolved; a symlink loop (`ln -s b a; ln -s a b`) is left as it is, not an error."""
    return os.path.realpath(path)


def with_absolute_paths(options: dict) -> dict:
    """`options` (TrainConfig's fields, as `asdict` gives them or a checkpoint recorded them) with the paths of the
    data and of --init resolved (a relative one in the current folder)."""
    options = dict(options)
    for name in ("data", "split_train", "split_val", "init"):
        if options.get(name) is not None:
            options[name] = absolute(options[name])
    if "extra_data" in options:
        options["extra_data"] = [absolute(entry) for entry in options["extra_data"]]
    return options


def check_same_run(out: Path, run: dict, now: dict) -> None:
    """ValueError naming every change of `run` (the run last.pt holds, `run_record`) a resume as `now` would
    make, RESUMABLE_OPTIONS aside (--epochs only up): the run would go on learning from other images, at
    another rate or batch, and best.pt's score and threshold would mix two validations. Keys a run recorded
    before they existed are not compared."""
    changes = list(run_changes(run, now).values())
    if changes:
        raise ValueError(f"{out} holds a run with other options: {'; '.join(changes)}. Resuming would mix two runs: "
                         "train into another --out, or resume with the run's options")


def run_changes(run: dict, now: dict) -> dict[str, str]:
    """`check_same_run`'s changes: {record key: its change described by `describe_change`}, {} when `now`
    resumes `run`."""
    run = {**{name: value for name, value in RECORDED_SINCE.items() if name in now}, **run}
    changes = {name: describe_change(name, value, now[name], now.get("extra_data")) for name, value in run.items()
               if name in now and name not in RESUMABLE_OPTIONS and value != now[name]
               and not (name == "init" and now[name] is None)}  # a resume without --init: last.pt has the weights
    if "extra_data" in changes:  # other entries: their images differ too, which says nothing more
        changes.pop("extra_data_stems", None)
    for names, content in ((("train_stems", "split_train"), "train_content"), (("val_stems", "split_val"), "val_content"),
                           (("extra_data", "extra_data_stems"), "extra_data_content")):
        if changes.keys() & set(names):  # other images: that their bytes differ says nothing more
            changes.pop(content, None)
    if "epochs" in run and now["epochs"] < run["epochs"]:
        changes["epochs"] = (f"--epochs {now['epochs']} (the run's: {run['epochs']}; a run may be extended, not "
                             "shortened)")
    return changes


def describe_change(name: str, then, now, extra_data: list[str] | None = None) -> str:
    if name in ("train_stems", "val_stems"):
        return f"the images {'--split-train' if name == 'train_stems' else '--split-val'} lists {added_gone(then, now)}"
    if name == "extra_data_stems":  # with the same entries (else --extra-data's change says it): per entry
        changed = [f"the images --extra-data {entry} holds {added_gone(old, new)}"
                   for entry, old, new in zip(extra_data or [], then, now) if old != new]
        return "; ".join(changed) or f"the images of --extra-data ({len(then)} entries, now {len(now)})"
    if name in ("train_content", "val_content"):
        flag = "--split-train" if name == "train_content" else "--split-val"
        return f"the images or masks {flag} lists changed under the same names (a mask corrected and exported again)"
    if name == "extra_data_content":
        changed = [entry for entry, old, new in zip(extra_data or [], then, now) if old != new]
        return (f"the images or masks --extra-data {', '.join(changed)} holds changed under the same names"
                if changed else "the images or masks of --extra-data changed under the same names")
    if name == "processes":
        return f"{now} process{'' if now == 1 else 'es'} (the run's: {then})"
    if name == "scale_range":  # as the command line takes it
        return f"--scale-range {' '.join(map(str, now))} (the run's: {' '.join(map(str, then))})"
    flag = name if name == "weight_decay" else "--" + name.replace("_", "-")  # weight_decay has no CLI option
    return f"{flag} {shown(now)} (the run's: {shown(then)})"


def added_gone(then: list[str], now: list[str]) -> str:
    return f"({len(set(now) - set(then))} added, {len(set(then) - set(now))} gone)"


def shown(value) -> str:
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return "none" if value in (None, "") else str(value)


def make_out_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create --out {out}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not a writable folder")


def reconcile_log(path: Path, epochs_done: int, last_record: str | None) -> str:
    """Make metrics.jsonl say what last.pt holds: one line per epoch up to `epochs_done`. A run killed between
    writing last.pt and appending the epoch's line left it a line short (restored from `last_record`, the
    line last.pt keeps), one killed mid-append a partial line, one killed before last.pt lines of epochs
    that will run again (both dropped). Returns what was changed ("" for nothing)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    kept, kept_epochs, dropped = [], set(), 0
    for line in lines:
        try:
            epoch = int(json.loads(line)["epoch"])
        except (ValueError, KeyError, TypeError):
            epoch = None
        if epoch is None or epoch > epochs_done:
            dropped += 1
        else:
            kept.append(line)
            kept_epochs.add(epoch)
    restored = last_record is not None and epochs_done >= 1 and epochs_done not in kept_epochs
    if restored:  # a last.pt written before metrics lines had null for NaN holds a bare NaN
        kept.append(metrics_line(json.loads(last_record)))
    if not dropped and not restored:
        return ""
    from model.atomic import atomic_write_bytes

    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())
    changes = [f"dropped {counted(dropped, 'line', 'lines')} of epochs last.pt does not hold"] if dropped else []
    return ", ".join(changes + ([f"restored epoch {epochs_done}'s line from last.pt"] if restored else []))


def _save_resume_state(
    path: Path, model, model_config: IRSAMConfig, average: WeightAverage | None, optimizer, scheduler,
    scaler: torch.amp.GradScaler, epoch: int, best_iou: float, best_metrics: dict, record: dict, run: dict,
) -> None:
    _write_resume_state(
        path,
        {
            "model": model.state_dict(),
            **({"average": average.model.state_dict()} if average is not None else {}),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            # fp16's loss scale: a resume starting again at 65536 would skip steps until it came back down
            **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
            "epoch": epoch,
            "best_iou": best_iou,
            "best_metrics": json.dumps(best_metrics),
            "config": json.dumps(model_config.to_dict()),
            "record": metrics_line(record),  # the epoch's metrics.jsonl line, should the run die before writing it
            "run": json.dumps(run),  # what a resume must keep (check_same_run)
        },
    )


def _write_resume_state(path: Path, state: dict) -> None:
    """last.pt holding `state` whole, or kept as it was (model.atomic)."""
    import io

    from model.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _format_record(r: dict) -> str:
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.4f}", f"lr {r['lr']:.2e}", f"{r['seconds']}s"]
    if "val_iou" in r:
        parts.append(
            f"val IoU {r['val_iou']:.4f} nIoU {r['val_niou']:.4f} Pd {r['val_pd']:.4f} Fa {r['val_fa'] * 1e6:.2f} x1e-6"
        )
    return " | ".join(parts)


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
