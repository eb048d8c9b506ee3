"""Which detector proposed a frame's mask, through which normalisation.

Every proposal (masks/<stem>.png) carries its own `ProposalOrigin` in a PNG text chunk, written in the
same atomic write as the mask: a project whose frames were detected by several runs (an interrupted
re-run, `--limit`, the app's current-frame and range runs, another detector) says for each frame which
one made its proposal, and an export records it per frame.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

PNG_TEXT_KEY = "irsam-proposal"


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def detector_record(method: str, size_gate=None, weights: str | Path | None = None, network=None,
                    precision: str | None = None, sha256: str | None = None) -> dict:
    """What a project stores of the detector that proposes its masks (project.json "detector", and what
    `ProposalOrigin.of` reads): `method`, and for IRSAM its `weights` file (hashed), the `network` built
    from it (a model.predictor.Predictor: config, test-time augmentation, refinement) and the `precision`
    asked for; for a classical method, the `network` (a model.classical.ClassicalDetector) gives its largest
    target size and threshold. `size_gate`: a model.size_gate.TargetSizeGate or None. `sha256`: the weights' hash taken when
    they were loaded (the file may have been rewritten since); hashed from the file when not given."""
    gate = size_gate.to_dict() if size_gate is not None and size_gate.active else None
    if method != "irsam":
        record = {"name": method, "weights": None, "sha256": None, "config": None, "size_gate": gate}
        if network is not None:
            record |= {"target_size": network.target_size, "threshold_k": network.k}
        return record
    from model.refine import refinement_record

    return {
        "name": "irsam",
        "weights": str(Path(weights).resolve()),
        "sha256": sha256 or sha256_of(weights),
        "config": network.config.to_dict(),
        "precision": precision,
        "tta": network.tta,
        "refine": network.refine,
        "refinement": refinement_record(network.refine),
        "size_gate": gate,
    }


def _number_text(value: float) -> str:
    """8.0 -> "8", 8.25 -> "8.25": every digit kept, so that two values never read the same."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True)
class ProposalOrigin:
    """What made a proposal: the detector (`method`, and for IRSAM its weights, their sha256, network config,
    precision, test-time augmentation and refinement), the size gate, the normalisation
    (`str(Normalization)`), and when."""

    method: str
    normalization: str
    weights: str | None = None  # file name; the sha256 identifies it
    sha256: str | None = None
    config: str | None = None  # the network's config name: a bare state_dict can be read as more than one
    precision: str | None = None
    tta: str | None = None
    refine: str | None = None
    size_gate: str | None = None  # str(TargetSizeGate), e.g. "4-200 px", when active
    target_size: str | None = None  # a classical method's largest target, e.g. "16 px", when not the default
    threshold_k: str | None = None  # a classical method's threshold in std above the mean, e.g. "8", when not the
    # method's default
    time: str | None = None

    @classmethod
    def of(cls, record: dict, normalization) -> "ProposalOrigin":
        """From a detector record (`app.commands.detect.make_detector`'s, as stored in project.json)."""
        from model.classical import DEFAULT_TARGET_SIZE, DEFAULT_THRESHOLD_K
        from model.size_gate import TargetSizeGate

        gate = record.get("size_gate")
        size = record.get("target_size")
        k = record.get("threshold_k")
        return cls(
            method=str(record["name"]),
            normalization=str(normalization),
            weights=Path(record["weights"]).name if record.get("weights") else None,
            sha256=record.get("sha256"),
            config=(record.get("config") or {}).get("name"),
            precision=record.get("precision"),
            tta=record.get("tta"),
            refine=record.get("refine"),
            size_gate=str(TargetSizeGate(**gate)) if gate else None,
            target_size=f"{size} px" if size not in (None, DEFAULT_TARGET_SIZE) else None,
            threshold_k=_number_text(k) if k not in (None, DEFAULT_THRESHOLD_K.get(record["name"])) else None,
        )

    def same_run_settings(self, other: "ProposalOrigin | None") -> bool:
        """Whether `other` came from the same detector, gate and normalisation (at any time)."""
        return other is not None and self.to_dict() | {"time": None} == other.to_dict() | {"time": None}

    @property
    def label(self) -> str:
        """Short human description, e.g. "IRSAM (irsam_paper_sirst.pt, flips)" or "mpcm (targets 4-200 px)"."""
        extras = []
        if self.tta and self.tta != "none":
            extras.append(self.tta)
        if self.refine and self.refine != "contrast":
            extras.append(f"refine {self.refine}")
        if self.precision and self.precision != "fp32":
            extras.append(self.precision)
        if self.target_size:
            extras.append(f"up to {self.target_size} across")
        if self.threshold_k:
            extras.append(f"threshold mean + {self.threshold_k} std")
        if self.size_gate:
            extras.append(f"targets {self.size_gate}")
        if self.method == "irsam":
            return f"IRSAM ({', '.join([self.weights or '?', *extras])})"
        return f"{self.method} ({', '.join(extras)})" if extras else self.method

    @property
    def description(self) -> str:
        """`label` with the rest, a line each: the weights' sha256 (fine-tune runs all save a best.pt: the sha256
        tells their proposals apart), the network config, the detector's input and when."""
        lines = [f"Proposal by {self.label}"]
        if self.sha256:
            lines.append(f"weights: {self.weights or '?'}, sha256 {self.sha256[:16]}"
                         + (f", {self.config} network" if self.config else ""))
        lines += [f"input: {self.normalization}", f"at {self.time} (UTC)"]
        return "\n".join(lines)

    @staticmethod
    def label_of(origin: "ProposalOrigin | None") -> str:
        """`origin.label`, or what to call a proposal saved without its origin (by an older version)."""
        return "an unrecorded detector" if origin is None else origin.label

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        """ASCII JSON (a PNG tEXt value)."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True)

    @classmethod
    def from_text(cls, text: str) -> "ProposalOrigin":
        """Raises ValueError for text that is not one."""
        try:
            d = json.loads(text)
            return cls(**{k: (None if d.get(k) is None else str(d[k])) for k in cls.__dataclass_fields__
                          if k in d})
        except (TypeError, ValueError) as e:
            raise ValueError(f"not a proposal origin: {e}") from e
