"""Checkpoint files: reading foreign state_dicts safely, strict loading with named reports,
initialising from MobileSAM / official IRSAM weights (shape mismatches refused), and our own format
with config and metadata (its code version names the git commit when run from a checkout).

Our format (`FORMAT`) is a dict
    {"format": "irsam-review/1", "config": IRSAMConfig.to_dict(), "model": state_dict, "metadata": {...}}
Every file is read with `torch.load(weights_only=True)`: a checkpoint can never execute code.
A training resume state (`irsam train`'s OUT/last.pt: model.train) holds the model's state_dict under "model"
and its config as a JSON string; it loads as the network it stores, with a ResumeStateWarning: it has no decision
threshold chosen on validation (the run's best.pt has).
"""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path

import torch
from torch import Tensor, nn

from model.atomic import atomic_write_bytes
from model.build import build_irsam
from model.config import NUM_PRIORS, PRESETS, IRSAMConfig, official, preset
from model.data import name_some

FORMAT = "irsam-review/1"
_FORMAT_FAMILY = "irsam-review/"
_WRAPPER_KEYS = ("model", "state_dict")
RESUME_STATE_KEYS = {"model", "optimizer", "scheduler", "epoch"}  # what every last.pt of irsam train holds
_MAX_LISTED = 12


class CheckpointError(Exception):
    """A checkpoint file that cannot be read, or whose weights do not fit the model."""


class ResumeStateWarning(UserWarning):
    """A training resume state (last.pt) loaded as weights to detect with: the last epoch's weights, scored with
    threshold 0 where the run's best.pt holds the threshold chosen on validation."""


# the official network's tensors that SAM / MobileSAM lack: IRSAM's edge branch and its feature fusion
IRSAM_ONLY_PREFIXES = (
    "mask_decoder.edge_token.", "mask_decoder.edge_mlp.", "mask_decoder.embedding_encoder.",
    "mask_decoder.embedding_maskfeature.", "mask_decoder.compress_vit_feat.", "prompt_encoder.pe_layer_2.",
)


def _listing(names: list[str]) -> str:
    return name_some(names, _MAX_LISTED, ", ... and {} more")


def _unwrap(obj: object, source: str) -> dict[str, Tensor]:
    """The state_dict inside a plain / {"model": sd} / {"state_dict": sd} object, `module.` prefix removed,
    floating tensors as float32. Refuses another version of our format and NaN or infinite weights."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")
    stored_format = obj.get("format")
    if isinstance(stored_format, str) and stored_format.startswith(_FORMAT_FAMILY) and stored_format != FORMAT:
        raise CheckpointError(f"{source}: unsupported checkpoint format {stored_format} (this version reads {FORMAT})")
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not obj or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise CheckpointError(
            f"{source}: not a state_dict: expected tensors by parameter name, found keys {_listing([str(k) for k in obj])}"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}
    # A float64 sum is NaN or infinite exactly when a float32 tensor holds NaN or inf (finite values cannot
    # overflow it), and takes a third of the time of isfinite().all().
    non_finite = [name for name, v in state_dict.items()
                  if v.is_floating_point() and not v.sum(dtype=torch.float64).isfinite()]
    if non_finite:
        raise CheckpointError(f"{source}: NaN or infinite weights (a diverged training run?) in {len(non_finite)} "
                              f"of {len(state_dict)} tensors: {_listing(non_finite)}")
    return state_dict


def read_torch_file(path: str | os.PathLike) -> object:
    """torch.load(weights_only=True) on the CPU; CheckpointError with one line naming the file when it fails."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        with warnings.catch_warnings():
            # on a foreign or corrupt file; the failure, if any, is reported below in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as error:  # torch and pickle raise many types for foreign or corrupt files
        raise CheckpointError(f"{path}: {_load_failure(path, error)}") from error


def _load_failure(path: str | os.PathLike, error: Exception) -> str:
    """One line on why torch.load refused a file, without torch's advice to load it with weights_only=False."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "empty file (0 bytes)"
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        return f"not a PyTorch checkpoint (neither a zip archive nor a pickle; it starts with {head!r})"
    text = str(error)
    if "GLOBAL " in text:  # "Unsupported global: GLOBAL x.Y ..." or "unsupported GLOBAL posix.mkdir whose module ..."
        name = text.split("GLOBAL ", 1)[1].split()[0]
        return f"the checkpoint holds a Python object ({name}) that would need to run code to load; refused"
    if "WeightsUnpickler error:" in text:  # torch's advice around it is about loading unsafely: keep the cause only
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[0].split(". ")[0] if lines else type(error).__name__
    return f"not a readable PyTorch checkpoint, truncated or corrupt ({detail})"


def check_weights_path(text: str, option: str = "--weights") -> Path:
    """The checkpoint file a --weights (or --init) value names; CheckpointError when it is empty (an unset shell
    variable), a directory, missing or not a regular file."""
    if not text:
        raise CheckpointError(f"{option} is empty: give a checkpoint file")
    path = Path(text)
    if path.is_dir():
        raise CheckpointError(f"{option} {path} is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{option} {path} is not a regular file (a pipe or a device), not a checkpoint file")
    return path


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state_dict stored in `path` (plain, wrapped in "model"/"state_dict", or our format)."""
    return _unwrap(read_torch_file(path), str(path))


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: checkpoint (a, b) vs model (c, d)"
    mistyped: list[str] = field(default_factory=list)  # "name: checkpoint torch.bool vs model torch.float32"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.mistyped)

    def summary(self, shown: int = _MAX_LISTED) -> str:
        """The counts, each with its first `shown` names."""
        parts = [f"{len(self.loaded)} tensors fit"]
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", self.mismatched), ("type mismatch", self.mistyped)):
            if names:
                parts.append(f"{len(names)} {label}: {name_some(names, shown, ', ... and {} more')}")
        return "; ".join(parts)


def _mistyped(stored: Tensor, expected: Tensor) -> bool:
    """A tensor of another kind of number than the model's (bool or int weights, complex ones): load_state_dict would
    cast it silently (bools to 1.0, ints truncated)."""
    return stored.is_complex() or stored.is_floating_point() != expected.is_floating_point()


def compare_keys(model: nn.Module, state_dict: dict[str, Tensor]) -> LoadReport:
    expected = model.state_dict()
    report = LoadReport()
    for name, tensor in state_dict.items():
        if name not in expected:
            report.unexpected.append(name)
        elif tensor.shape != expected[name].shape:
            report.mismatched.append(f"{name}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[name].shape)}")
        elif _mistyped(tensor, expected[name]):
            report.mistyped.append(f"{name}: checkpoint {tensor.dtype} vs model {expected[name].dtype}")
        else:
            report.loaded.append(name)
    report.missing = [name for name in expected if name not in state_dict]
    return report


def load_into(model: nn.Module, state_dict: dict[str, Tensor]) -> LoadReport:
    """Load strictly; on any missing, unexpected or mis-shaped key raise `CheckpointError` naming them.

    Leaves the model in eval mode.
    """
    report = compare_keys(model, state_dict)
    if not report.ok:
        raise CheckpointError(f"checkpoint does not fit the model: {report.summary()}")
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return report


@dataclass
class InitReport:
    initialised: list[str] = field(default_factory=list)  # model tensors copied from the checkpoint
    fresh: list[str] = field(default_factory=list)  # model tensors the checkpoint lacks: fresh initialisation
    ignored: list[str] = field(default_factory=list)  # checkpoint tensors the model has no place for
    widened: list[str] = field(default_factory=list)  # convolutions given new input channels, starting at zero

    def summary(self) -> str:
        text = f"{len(self.initialised)} tensors initialised"
        if self.widened:
            text += f" ({len(self.widened)} convolutions with zero kernels for the input priors: {_listing(self.widened)})"
        if self.fresh:
            text += f"; {len(self.fresh)} fresh: {_listing(self.fresh)}"
        if self.ignored:
            text += f"; {len(self.ignored)} checkpoint tensors unused: {_listing(self.ignored)}"
        return text


@torch.no_grad()
def init_from_pretrained(model: nn.Module, state_dict: dict[str, Tensor]) -> InitReport:
    """Copy every tensor whose name and shape match (MobileSAM or official IRSAM weights into any config,
    our checkpoints into their own config); the model keeps fresh tensors where the file has none.

    Raises `CheckpointError`, leaving the model untouched, when a name matches with another shape (the
    file holds another architecture: a `tiny` model from full-size weights, a `--set` override that
    changes a layer) or when no tensor matches at all (an unrelated file). Between the official, paper
    and MobileSAM layouts names differ but shapes never do: the paper's WPMD, GAD and refinement tensors
    are fresh from official or MobileSAM weights, and the released network's unused heads are ignored.
    """
    report = InitReport()
    target = model.state_dict()
    mismatched = [
        f"{name}: checkpoint {tuple(state_dict[name].shape)} vs model {tuple(tensor.shape)}"
        for name, tensor in target.items()
        if name in state_dict and state_dict[name].shape != tensor.shape and not _widens(state_dict[name], tensor)
    ]
    if mismatched:
        raise CheckpointError(f"weights do not fit the model: {len(mismatched)} shape mismatch: {_listing(mismatched)}")
    mistyped = [f"{name}: checkpoint {state_dict[name].dtype} vs model {tensor.dtype}"
                for name, tensor in target.items() if name in state_dict and _mistyped(state_dict[name], tensor)]
    if mistyped:
        raise CheckpointError(f"weights do not fit the model: {len(mistyped)} type mismatch: {_listing(mistyped)}")
    if not any(name in state_dict for name in target):
        raise CheckpointError(
            f"no tensor of the file belongs to this model: file keys {_listing(list(state_dict))}; "
            f"model keys {_listing(list(target))}"
        )
    for name, tensor in target.items():
        if name in state_dict and state_dict[name].shape != tensor.shape:  # a convolution that gained inputs
            tensor.zero_()
            tensor[:, : state_dict[name].shape[1]].copy_(state_dict[name])
            report.initialised.append(name)
            report.widened.append(name)
        elif name in state_dict:
            tensor.copy_(state_dict[name])
            report.initialised.append(name)
        else:
            report.fresh.append(name)
    report.ignored = [name for name in state_dict if name not in target]
    return report


def _widens(old: Tensor, new: Tensor) -> bool:
    """Whether `new` is the convolution kernel `old` with input channels appended, as the input priors
    (`IRSAMConfig.input_priors`) append them to the stem and refinement convolutions."""
    return (old.ndim == 4 and new.ndim == 4 and old.shape[0] == new.shape[0] and old.shape[2:] == new.shape[2:]
            and old.shape[1] < new.shape[1] == old.shape[1] + NUM_PRIORS)


def _code_version() -> str:
    """The package version, plus the git commit (with "-dirty" for uncommitted changes to tracked files)
    when the code runs from a git checkout; the version alone where git or the checkout is absent."""
    try:
        version = f"irsam-review {package_metadata.version('irsam-review')}"
    except package_metadata.PackageNotFoundError:
        version = "irsam-review (not installed)"
    commit = _git_commit(Path(__file__).resolve().parent)
    return f"{version}, git {commit}" if commit else version


def _git_commit(folder: Path) -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout, or git hung
        return None
    return commit + ("-dirty" if dirty else "")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: IRSAMConfig, metadata: dict,
                    dtype: torch.dtype = torch.float32) -> None:
    """Write our format atomically. `metadata` (normalisation, training data and split, metrics, ...)
    must be JSON-like; floating weights are stored as `dtype` (float16 halves the file)."""
    try:
        json.dumps(metadata)
    except TypeError as error:
        raise TypeError(f"checkpoint metadata must be JSON-like (dict/list/str/number/bool/None): {error}") from None
    state_dict = {
        name: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu())
        for name, t in model.state_dict().items()
    }
    record = {"code_version": _code_version(), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record.update(metadata)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "config": config.to_dict(), "model": state_dict, "metadata": record}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def is_resume_state(obj: object) -> bool:
    """Whether `obj` (a file's content) is a training resume state, irsam train's last.pt."""
    return isinstance(obj, dict) and "format" not in obj and RESUME_STATE_KEYS <= obj.keys()


def stored_config(obj: object, source: str) -> IRSAMConfig | None:
    """The network config a file's content stores: our format's, or a resume state's (a JSON string); None for
    a file without one (a plain state_dict, a resume state from before configs were stored)."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        stored = obj.get("config")
    elif is_resume_state(obj) and "config" in obj:
        try:
            stored = json.loads(obj["config"])
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: invalid stored config ({error})") from error
    else:
        return None
    try:
        if not isinstance(stored, dict):
            raise TypeError(f"a {type(stored).__name__}, not a mapping")
        return IRSAMConfig.from_dict(stored)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: invalid stored config ({error})") from error


def read_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], IRSAMConfig | None]:
    """(`load_state_dict_file`, the config the file stores or None): for initialising from a file, whose stored
    config only serves to name its network, so a damaged one counts as none."""
    obj = read_torch_file(path)
    try:
        config = stored_config(obj, str(path))
    except CheckpointError:
        config = None
    return _unwrap(obj, str(path)), config


def load_checkpoint(path: str | os.PathLike, config_name: str | None = None) -> tuple[nn.Module, IRSAMConfig, dict]:
    """(model in eval mode, its config, metadata). `config_name` is the network asked for (--config): files
    without a stored config hold weights of that preset (when None: official, or the one preset whose tensor
    names and shapes they have), and a file storing another config is refused. A training resume state (last.pt)
    loads its model weights (not the --ema-decay average) as the network it stores, with a ResumeStateWarning and
    the metadata `resume_state_metadata` gives (decision threshold 0: the calibrated one is in best.pt)."""
    obj = read_torch_file(path)
    stored = stored_config(obj, str(path))
    config_stored = stored is not None
    config = stored or (preset(config_name) if config_name else official())
    metadata = {}
    if config_stored and config_name and config.name != config_name:
        raise CheckpointError(f"{path}: this checkpoint holds a {config.name} network, not the {config_name} one "
                              "asked for with --config: leave out --config (the file names its network)")
    if config_stored and obj.get("format") == FORMAT:
        if not isinstance(obj.get("metadata"), (dict, type(None))):
            raise CheckpointError(f"{path}: its metadata is a {type(obj['metadata']).__name__}, not a mapping")
        metadata = dict(obj.get("metadata") or {})
        threshold = metadata.get("decision_threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise CheckpointError(f"{path}: its metadata's decision_threshold {threshold!r} is not a finite number")
    state_dict = _unwrap(obj, str(path))  # its errors name the file already
    # names and shapes first, on the meta device: a file whose stored config asks for a huge network is refused
    # before any memory is taken for it
    report = compare_keys(_network(path, config, config_stored, meta=True), state_dict)
    if not report.ok:
        fitting = None if config_stored else fitting_preset(state_dict, config.name)
        if fitting and config_name:
            raise CheckpointError(f"{path}: these are weights of the {fitting} config, not of {config.name}: "
                                  f"load them with --config {fitting}, or without --config") from None
        if not fitting and _is_sam_without_irsam(state_dict):
            raise CheckpointError(f"{path}: SAM / MobileSAM weights, without IRSAM's edge branch and feature "
                                  "fusion: they cannot detect by themselves, but start a network to train "
                                  f"(irsam train --init {path})") from None
        if not fitting:
            raise CheckpointError(f"{path}: {_misfit(state_dict, config, config_stored, config_name, report)}")
        config = preset(fitting)  # nothing asked for: the file names its network by its tensors
    model = _network(path, config, config_stored)
    load_into(model, state_dict)
    if is_resume_state(obj):
        metadata = resume_state_metadata(obj, path)
        warnings.warn(describe_resume_state(path, metadata["resume_state"]), ResumeStateWarning, stacklevel=2)
    return model, config, metadata


def resume_state_metadata(state: dict, path: str | os.PathLike) -> dict:
    """The metadata a resume state (last.pt) loads with: decision threshold 0 (none was chosen for these weights),
    and "resume_state": the epochs it holds (None where it records no count) and the run's best.pt beside it (an
    absolute path, None where there is none), so that a record of the results says what was scored."""
    try:
        epochs_done = int(state["epoch"]) + 1  # irsam train stores the last finished epoch, counted from 0
    except (TypeError, ValueError):
        epochs_done = None
    best = Path(path).with_name("best.pt")
    return {"decision_threshold": 0.0,
            "resume_state": {"epochs_done": epochs_done, "best": os.path.abspath(best) if best.is_file() else None}}


def describe_resume_state(path: str | os.PathLike, resume_state: dict) -> str:
    """What loading a resume state (last.pt) as weights gives, and what to load instead."""
    epochs = resume_state["epochs_done"]
    text = (f"{path} is the resume state of an irsam train run (last.pt), not a checkpoint to detect with: it holds "
            f"the weights of the run's last epoch{f' (epoch {epochs})' if epochs is not None else ''} and no decision "
            "threshold chosen on validation, so threshold 0 is used; ")
    if resume_state["best"]:
        return text + (f"the run's best.pt beside it ({resume_state['best']}) holds the best validated weights "
                       "with their threshold: load that one to detect")
    return text + "no best.pt lies beside it (a run writes one when it first validates an epoch)"


def _network(path: str | os.PathLike, config: IRSAMConfig, config_stored: bool, meta: bool = False) -> nn.Module:
    """build_irsam(config) (on the meta device: names and shapes only); a stored config that builds no network (a
    negative or zero size, ...) raises CheckpointError naming the file, the config and the field at fault when
    one can be told. A meta build that fails for another reason falls back to a real one."""
    try:
        return _meta_network(config) if meta else build_irsam(config)
    except _BUILD_ERRORS as error:
        if meta:
            return _network(path, config, config_stored)
        if not config_stored:
            raise
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path}: its stored config cannot build a network ({text}): "
                              f"{_config_fault(config)}") from None


_BUILD_ERRORS = (RuntimeError, ValueError, TypeError, ZeroDivisionError, IndexError, AssertionError, OverflowError,
                 MemoryError)


def _changed_fields(config: IRSAMConfig) -> list[str]:
    """The fields of a config that differ from its preset's (all but the name when it names no preset)."""
    ours = config.to_dict()
    if config.name not in PRESETS:
        return [name for name in ours if name != "name"]
    base = preset(config.name).to_dict()
    return [name for name in ours if ours[name] != base[name]]


def _config_changes(config: IRSAMConfig, names: list[str] | None = None) -> str:
    """"tiny with embed_dim=-5 (the tiny preset has 32)": a stored config by the fields (`names`, default all)
    that set it apart from its preset."""
    if config.name not in PRESETS:
        return f"{config.name!r}, which names no preset of this version"
    base, ours = preset(config.name).to_dict(), config.to_dict()
    names = _changed_fields(config) if names is None else names
    if not names:
        return config.name
    return (f"{config.name} with " + ", ".join(f"{name}={json.dumps(ours[name])}" for name in names)
            + f" (the {config.name} preset has " + ", ".join(json.dumps(base[name]) for name in names) + ")")


def _config_fault(config: IRSAMConfig) -> str:
    """What in a stored config that builds no network is at fault, by what sets it apart from its preset: the
    fields whose preset value alone makes the network build ("field embed_dim: tiny with embed_dim=-5 (the tiny
    preset has 32)"), else every field that differs, else the config's name."""
    changed = _changed_fields(config) if config.name in PRESETS else []
    at_fault = []
    for name in changed:
        try:
            _meta_network(config.replace(**{name: getattr(preset(config.name), name)}))
        except Exception:  # noqa: BLE001 - still no network: not this field alone
            continue
        at_fault.append(name)
    if at_fault:
        return f"field{'s' if len(at_fault) > 1 else ''} {', '.join(at_fault)}: {_config_changes(config, at_fault)}"
    return f"config {_config_changes(config)}"


def _meta_network(config: IRSAMConfig) -> nn.Module:
    """build_irsam(config) on the meta device: names, shapes and types only, no memory, no initialisation."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Initializing zero-element tensors is a no-op"
        return build_irsam(config)


_SHORT_LISTING = 3  # keys named of each kind when a file is compared with a network it may not be meant for


def _misfit(state_dict: dict[str, Tensor], config: IRSAMConfig, config_stored: bool, config_name: str | None,
            report: LoadReport) -> str:
    """Why a file that fits no preset exactly does not load: compared with the network asked for (--config), the
    one it stores the config of, or else the preset nearest to it (most tensors of the same name and shape),
    named with the --config that compares with it when it is not the default."""
    if config_stored and _changed_fields(config):
        return (f"checkpoint does not fit the model its stored config describes ({_config_changes(config)}): "
                f"{report.summary(_SHORT_LISTING)}")
    if config_stored or config_name:
        return f"checkpoint does not fit the model: {report.summary()}"
    nearest, nearest_report = config.name, report
    for name, make in PRESETS.items():
        if name != config.name:
            candidate = compare_keys(_meta_network(make()), state_dict)
            if len(candidate.loaded) > len(nearest_report.loaded):
                nearest, nearest_report = name, candidate
    if nearest == config.name:
        return f"checkpoint does not fit the model: {report.summary(_SHORT_LISTING)}"
    return (f"checkpoint does not fit the model: fits no network config exactly; nearest is the {nearest} one "
            f"(if it holds a {nearest} network, load it with --config {nearest}), compared with it: "
            f"{nearest_report.summary(_SHORT_LISTING)}")


def _is_sam_without_irsam(state_dict: dict[str, Tensor]) -> bool:
    """Whether the file is MobileSAM's layout: the official network's tensors but for IRSAM's own, every one of them
    (an official IRSAM file that lost some of its own is damaged, and its missing tensors are named)."""
    with torch.device("meta"):  # names, shapes and types only: no memory, no initialisation
        official_model = build_irsam(official())
    report = compare_keys(official_model, state_dict)
    return (not (report.unexpected or report.mismatched or report.mistyped) and bool(report.missing)
            and all(name.startswith(IRSAM_ONLY_PREFIXES) for name in report.missing)
            and not any(name.startswith(IRSAM_ONLY_PREFIXES) for name in state_dict))


def fitting_preset(state_dict: dict[str, Tensor], tried: str) -> str | None:
    """The named config other than `tried` whose network has exactly these tensor names and shapes."""
    for name, make in PRESETS.items():
        if name != tried:
            with torch.device("meta"):  # names and shapes only: no memory, no initialisation
                model = build_irsam(make())
            if compare_keys(model, state_dict).ok:
                return name
    return None
