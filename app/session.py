"""What the review window has open: a frame source, its normalisation, its review project and ground truth.

Qt-free view-model: the widgets ask it for a frame's raw values and layers and draw them.

Where predictions go when a plain folder/TIFF is opened (not a project): a sibling folder
`<source name>.irsam-review` next to the source when its parent folder is writable, otherwise
`$XDG_DATA_HOME/irsam-review/projects/<source name>-<hash of the path>` (~/.local/share/... by default).
Reopening the same source finds that project again, so earlier results show up at once. The project
is created on the first detection run; committed masks (labels/) are never touched by a run.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.frames import FrameSource, GroundTruth, find_ground_truth, open_source
from app.core.normalization import Normalization, default_for
from app.core.project import ProjectError, ReviewProject, ReviewStatus
from app.core.targets import Target, extract_targets
from model.detectors import FrameResult

PROJECT_SUFFIX = ".irsam-review"
RECENT_RESULTS = 32  # in-memory results of this session's runs (they carry probabilities, which are not saved)
STATUS_CODES = {s: k for k, s in enumerate(ReviewStatus)}  # unreviewed 0 ... negative 4 (timeline colours)
NOT_RUN, UNREADABLE = -1, -2


@dataclass
class FrameLayers:
    """Everything drawn over one frame; None / [] where the layer does not exist for that frame."""

    prediction: np.ndarray | None = None  # bool (H, W)
    committed: np.ndarray | None = None  # bool (H, W)
    edges: np.ndarray | None = None  # float32 [0, 1]
    probability: np.ndarray | None = None  # float32 [0, 1]
    targets: list[Target] = field(default_factory=list)
    truth_mask: np.ndarray | None = None  # bool (H, W)
    truth_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x0, y0, x1, y1 inclusive


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "irsam-review"


def project_dir_for(source_path: Path) -> Path:
    """Where the project of a plain source lives (see the module docstring)."""
    source_path = Path(source_path).resolve()
    sibling = source_path.parent / f"{source_path.name}{PROJECT_SUFFIX}"
    if sibling.exists() or os.access(source_path.parent, os.W_OK):
        return sibling
    digest = hashlib.sha1(str(source_path).encode()).hexdigest()[:10]
    return user_data_dir() / "projects" / f"{source_path.name}-{digest}"


def is_project(path: Path) -> bool:
    return (Path(path) / "project.json").is_file()


class ReviewSession:
    def __init__(self, source: FrameSource, normalization: Normalization, project_dir: Path,
                 project: ReviewProject | None = None, warnings: list[str] | None = None):
        self.source = source
        self.normalization = normalization
        self.project_dir = project_dir
        self.project = project
        self.warnings = list(warnings or [])
        self.ground_truth: GroundTruth | None = find_ground_truth(source)
        self._recent: OrderedDict[int, FrameResult] = OrderedDict()
        self.detection_counts = np.full(len(source), NOT_RUN, np.int32)
        self.status_codes = np.zeros(len(source), np.uint8)
        self._load_project_state()

    @classmethod
    def open(cls, path: str | os.PathLike) -> "ReviewSession":
        """A review project folder, or a source (folder / TIFF stack / image). Raises SourceError/ProjectError."""
        path = Path(path).expanduser()
        if is_project(path):
            project = ReviewProject.open(path)
            source = open_source(project.source_path)
            if list(source.stems) != project.stems:
                raise ProjectError(f"{project.source_path} no longer holds the frames of the project {path}")
            return cls(source, Normalization.from_dict(project.normalization), path, project,
                       [f"{p}: {reason}" for p, reason in project.damaged])
        source = open_source(path)
        project_dir = project_dir_for(path)
        project, warnings = None, []
        if is_project(project_dir):
            try:
                project = ReviewProject.open(project_dir)
                if project.stems != list(source.stems):
                    raise ProjectError(f"{project_dir} holds a project over different frames")
            except ProjectError as e:
                warnings.append(f"earlier results not used: {e}")
                project = None
                project_dir = project_dir.with_name(project_dir.name + "-new")
        normalization = Normalization.from_dict(project.normalization) if project else default_for(source)
        return cls(source, normalization, project_dir, project, warnings)

    @property
    def name(self) -> str:
        return Path(self.source.path).name

    def __len__(self) -> int:
        return len(self.source)

    def close(self) -> None:
        self.source.close()

    def ensure_project(self) -> ReviewProject:
        """The project, created on first use (an existing one over the same frames is reused)."""
        if self.project is None:
            self.project = ReviewProject.create(
                self.project_dir, self.source.path, self.source.kind, self.source.stems, self.source.shape,
                self.normalization.to_dict(), None, exist_ok=True,
            )
        return self.project

    def frame(self, index: int) -> np.ndarray:
        """Raw frame (raises FrameReadError for an unreadable one)."""
        return self.source.frame(index)

    def stem(self, index: int) -> str:
        return self.source.stems[index]

    # --- results --------------------------------------------------------------------------------

    def record_result(self, index: int, result: FrameResult) -> list[Target]:
        """A fresh result of this session (already saved in the project by the worker): remember and count it."""
        self._recent[index] = result
        self._recent.move_to_end(index)
        while len(self._recent) > RECENT_RESULTS:
            self._recent.popitem(last=False)
        targets = extract_targets(result.mask, result.logits)
        self.detection_counts[index] = len(targets)
        return targets

    def mark_unreadable(self, index: int) -> None:
        self.detection_counts[index] = UNREADABLE

    def set_status(self, index: int, status: ReviewStatus) -> None:
        self.ensure_project().set_status(self.stem(index), status)
        self.status_codes[index] = STATUS_CODES[status]

    def status(self, index: int) -> ReviewStatus:
        return self.project.status(self.stem(index)) if self.project else ReviewStatus.UNREVIEWED

    def layers(self, index: int, wanted: set[str]) -> FrameLayers:
        """The layers of a frame; files are read only for the wanted layers ("edges", "probability", ...)."""
        stem = self.stem(index)
        layers = FrameLayers()
        recent = self._recent.get(index)
        if recent is not None:
            layers.prediction = recent.mask
            layers.targets = extract_targets(recent.mask, recent.logits)
            if "edges" in wanted and recent.edge is not None:
                layers.edges = recent.edge
            if "probability" in wanted:
                layers.probability = recent.probability
        elif self.project is not None and self.detection_counts[index] >= 0:
            layers.prediction = self.project.prediction_mask(stem)
            layers.targets = self.project.detections(stem)
            if "edges" in wanted:
                edge = self.project.prediction_edge(stem)
                layers.edges = None if edge is None else edge.astype(np.float32) / 255.0
            if "probability" in wanted:
                logits = self.project.prediction_logits(stem)
                if logits is not None:
                    layers.probability = FrameResult(logits).probability
        if self.project is not None and "committed" in wanted:
            layers.committed = self.project.committed_mask(stem)
        if self.ground_truth is not None and "truth" in wanted:
            layers.truth_mask = self.ground_truth.mask(stem)
            layers.truth_boxes = [
                (int(round(x)), int(round(y)), int(round(x + w)) - 1, int(round(y + h)) - 1)
                for x, y, w, h in self.ground_truth.boxes(index)
            ]
        return layers

    def _load_project_state(self) -> None:
        if self.project is None:
            return
        masks_dir = self.project.folder / "masks"
        predicted = {name[:-4] for name in os.listdir(masks_dir) if name.endswith(".png")} if masks_dir.is_dir() else set()
        for i, stem in enumerate(self.source.stems):
            if stem in predicted:
                self.detection_counts[i] = len(self.project.detections(stem))
            self.status_codes[i] = STATUS_CODES[self.project.status(stem)]

