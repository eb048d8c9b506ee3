"""The review queue: per-frame summaries to filter, sort and step through, and the keyboard shortcut map.

`summarize` reads statuses and the project's detection table, not masks (but for a proposal whose rows the table
lacks, which another instance wrote since it was read), so it stays fast on sequences of 10k+ frames.
`change_from_previous` is the number of targets that appeared or disappeared since the previous frame: targets of
consecutive frames are paired greedily by bounding boxes that overlap once grown by `MATCH_GROW` pixels (a target
moving a pixel or two stays paired); every unpaired target on either side counts one. The first frame has no change
(None): there is no frame before it to compare with. A frame the detector has not run on has no detection count, and
neither it nor the frame after it has a change: "no targets" and "not looked at" are different things to a reviewer.
Nor has a frame whose size differs from the previous frame's (a folder of single images of several sizes): it shows
another scene.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Iterable, Sequence

from app.core.project import ReviewProject, ReviewStatus
from app.core.targets import Target
from model.atomic import atomic_write_json

MATCH_GROW = 2
SORT_KEYS = ("index", "status", "detections", "peak_score", "change")
SHORTCUT_FORMAT = "irsam-review-shortcuts/1"


@dataclass(frozen=True)
class FrameSummary:
    index: int
    stem: str
    status: ReviewStatus
    n_detections: int | None  # None: not detected yet
    peak_score: float  # max peak score over the frame's targets; nan without targets (or scores)
    # targets appeared + disappeared since the previous frame; None: nothing to compare (the first frame, either
    # frame not detected, or of another size)
    change_from_previous: int | None


def targets_changed(previous: Sequence[Target], current: Sequence[Target], grow: int = MATCH_GROW) -> int:
    """Targets of either frame left unpaired (see the module docstring)."""
    unmatched = list(previous)
    paired = 0
    for target in current:
        for i, other in enumerate(unmatched):
            if (target.x0 - grow <= other.x1 and other.x0 <= target.x1 + grow
                    and target.y0 - grow <= other.y1 and other.y0 <= target.y1 + grow):
                del unmatched[i]
                paired += 1
                break
    return (len(current) - paired) + len(unmatched)


def summarize(project: ReviewProject, indices: Iterable[int] | None = None) -> list[FrameSummary]:
    """The summaries of every frame, in frame order; with `indices`, of those frames and of the frame after each
    (its change counts from them), as the whole pass gives them: the queue follows a detection run as it goes."""
    stems = project.stems
    if indices is None:
        wanted: Iterable[int] = range(len(stems))
    else:
        wanted = sorted({j for i in indices for j in (i, i + 1) if 0 <= j < len(stems)})
    mixed_sizes = project.frame_shape is None
    read: dict[int, list[Target] | None] = {}

    def targets_of(index: int) -> list[Target] | None:
        if index not in read:
            read[index] = project.detections(stems[index]) if project.is_predicted(stems[index]) else None
            read.pop(index - 2, None)  # the whole pass holds two frames' targets at a time
        return read[index]

    summaries = []
    for index in wanted:
        targets = targets_of(index)
        previous = targets_of(index - 1) if index > 0 else None
        if mixed_sizes and index > 0:
            shape = project.known_shape(stems[index])
            if shape is None or shape != project.known_shape(stems[index - 1]):
                previous = None
        scores = [t.peak_score for t in targets or () if not math.isnan(t.peak_score)]
        summaries.append(FrameSummary(
            index=index,
            stem=stems[index],
            status=project.status(stems[index]),
            n_detections=None if targets is None else len(targets),
            peak_score=max(scores) if scores else math.nan,
            change_from_previous=None if targets is None or previous is None else targets_changed(previous, targets),
        ))
    return summaries


def unreviewed_summaries(stems: Sequence[str]) -> list[FrameSummary]:
    """The queue of a sequence that has no project yet: every frame unreviewed, nothing detected."""
    return [FrameSummary(i, stem, ReviewStatus.UNREVIEWED, None, math.nan, None) for i, stem in enumerate(stems)]


def filter_frames(
    summaries: Iterable[FrameSummary],
    statuses: Iterable[ReviewStatus | str] | None = None,
    min_detections: int | None = None,
    max_detections: int | None = None,
    min_peak_score: float | None = None,
    min_change: int | None = None,
    predicate: Callable[[FrameSummary], bool] | None = None,
    frames: Container[int] | None = None,
) -> list[FrameSummary]:
    """The summaries meeting every given condition, in their order. A frame without a score (nan)
    fails `min_peak_score`; one not detected fails the detection and change conditions. `frames`: only
    these frame indices (a set: the frames changed on disk, say)."""
    wanted = None if statuses is None else {ReviewStatus(s) for s in statuses}
    kept = []
    for s in summaries:
        if frames is not None and s.index not in frames:
            continue
        if wanted is not None and s.status not in wanted:
            continue
        if min_detections is not None and (s.n_detections is None or s.n_detections < min_detections):
            continue
        if max_detections is not None and (s.n_detections is None or s.n_detections > max_detections):
            continue
        if min_peak_score is not None and not s.peak_score >= min_peak_score:
            continue
        if min_change is not None and (s.change_from_previous is None or s.change_from_previous < min_change):
            continue
        if predicate is not None and not predicate(s):
            continue
        kept.append(s)
    return kept


_STATUS_ORDER = {status: i for i, status in enumerate(ReviewStatus)}


def sort_frames(summaries: Iterable[FrameSummary], key: str = "index", descending: bool = False) -> list[FrameSummary]:
    """Sorted by `key` (one of SORT_KEYS); ties keep frame order. Status order is ReviewStatus's
    (unreviewed, accepted, corrected, rejected, negative); frames without a value (no peak score, not
    detected) come last either way."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {SORT_KEYS}, got {key!r}")
    summaries = sorted(summaries, key=lambda s: s.index)
    if key == "index":
        return summaries[::-1] if descending else summaries
    value = {
        "status": lambda s: _STATUS_ORDER[s.status],
        "detections": lambda s: s.n_detections,
        "peak_score": lambda s: None if math.isnan(s.peak_score) else s.peak_score,
        "change": lambda s: s.change_from_previous,
    }[key]
    valued = [s for s in summaries if value(s) is not None]
    without = [s for s in summaries if value(s) is None]
    # sorted() is stable, and reverse=True keeps ties in their original (frame) order too
    return sorted(valued, key=value, reverse=descending) + without


def status_counts(project: ReviewProject) -> dict[ReviewStatus, int]:
    """Frames per status, every status present (0 when none)."""
    counts = Counter(project.status(stem) for stem in project.stems)
    return {status: counts.get(status, 0) for status in ReviewStatus}


# --- keyboard shortcuts --------------------------------------------------------------------------

DEFAULT_SHORTCUTS: dict[str, str] = {
    "next_frame": "D",
    "previous_frame": "A",
    "first_frame": "Home",
    "last_frame": "End",
    "accept_and_next": "Space",
    "next_unreviewed": "N",
    "previous_unreviewed": "Shift+N",
    "mark_accepted": "Ctrl+1",
    "mark_corrected": "C",
    "mark_rejected": "R",
    "mark_negative": "0",
    "mark_unreviewed": "Ctrl+0",
    "undo": "Ctrl+Z",
    "redo": "Ctrl+Shift+Z",
    "tool_navigate": "H",
    "tool_brush": "B",
    "tool_eraser": "E",
    "tool_polygon": "P",
    "tool_flood_fill": "F",
    "tool_delete_component": "X",
    "tool_grow_target": "G",
    "tool_accept_target": "T",
    "brush_smaller": "[",
    "brush_larger": "]",
    "accept_all_predicted": "Ctrl+A",
    "propagate_forward": "Ctrl+Right",
    "propagate_backward": "Ctrl+Left",
    "toggle_prediction_overlay": "1",
    "toggle_committed_overlay": "2",
    "toggle_edge_overlay": "3",
    "toggle_target_boxes": "4",
    "toggle_probability_overlay": "5",
    "toggle_truth_overlay": "6",
    "toggle_bad_pixels_overlay": "7",
    "toggle_diff": "8",
    "zoom_in": "+",
    "zoom_out": "-",
    "zoom_whole_frame": "Z",
}

# Qt's portable text order (QKeySequence.toString): a map written here reads back in Qt unchanged.
_MODIFIERS = ("Ctrl", "Alt", "Shift", "Meta")
_MODIFIER_ALIASES = {"ctrl": "Ctrl", "control": "Ctrl", "alt": "Alt", "shift": "Shift", "meta": "Meta"}


def normalize_keys(keys: str) -> str:
    """Canonical text of one key combination: modifiers in Qt's order, single letters upper case
    ("shift+ctrl+z" -> "Ctrl+Shift+Z"); "" stays "" (unbound). Raises ValueError on a malformed one."""
    keys = keys.strip()
    if not keys:
        return ""
    if keys == "+" or keys.endswith("++"):  # the plus key itself, e.g. "Ctrl++"
        modifiers, key = [p.strip() for p in keys[:-2].split("+")] if len(keys) > 1 else [], "+"
    else:
        *modifiers, key = [p.strip() for p in keys.split("+")]
    seen = set()
    for m in modifiers:
        canonical = _MODIFIER_ALIASES.get(m.lower())
        if canonical is None:
            raise ValueError(f"{keys!r}: unknown modifier {m!r} (use {', '.join(_MODIFIERS)})")
        seen.add(canonical)
    if not key or key.lower() in _MODIFIER_ALIASES:
        raise ValueError(f"{keys!r} has no key besides its modifiers")
    if len(key) == 1:
        key = key.upper()
    else:
        key = key[0].upper() + key[1:]
    if key == "Backtab":  # what Shift+Tab arrives as (a key field records it as "Shift+Backtab")
        key = "Tab"
        seen.add("Shift")
    return "+".join([m for m in _MODIFIERS if m in seen] + [key])


class ShortcutMap:
    """Action name -> key combination text (QKeySequence's portable form), editable and saved as JSON.

    Every action of DEFAULT_SHORTCUTS is always present; "" means unbound. Conflicts (one key bound to
    several actions) are allowed while editing and reported by `conflicts()`, so the GUI can show them.
    """

    def __init__(self, bindings: dict[str, str] | None = None):
        self._bindings = dict(DEFAULT_SHORTCUTS)
        for action, keys in (bindings or {}).items():
            self.set(action, keys)

    @property
    def actions(self) -> list[str]:
        return list(self._bindings)

    def get(self, action: str) -> str:
        self._check_action(action)
        return self._bindings[action]

    def set(self, action: str, keys: str) -> list[str]:
        """Bind `action` to `keys`; returns the other actions already bound to the same keys."""
        self._check_action(action)
        keys = normalize_keys(keys)
        self._bindings[action] = keys
        return [a for a in self.actions_for(keys) if a != action]

    def reset(self, action: str | None = None) -> None:
        """Back to the default binding: one action, or all of them."""
        if action is None:
            self._bindings = dict(DEFAULT_SHORTCUTS)
        else:
            self._check_action(action)
            self._bindings[action] = DEFAULT_SHORTCUTS[action]

    def actions_for(self, keys: str) -> list[str]:
        keys = normalize_keys(keys)
        if not keys:
            return []
        return [a for a, k in self._bindings.items() if k == keys]

    def conflicts(self, reserved: dict[str, str] | None = None) -> dict[str, list[str]]:
        """keys -> the actions sharing them, for every key bound more than once. `reserved` (keys -> name) are
        fixed shortcuts elsewhere in the app: an action bound to one of them conflicts with that name."""
        by_keys: dict[str, list[str]] = {keys: [name] for keys, name in (reserved or {}).items()}
        for action, keys in self._bindings.items():
            if keys:
                by_keys.setdefault(keys, []).append(action)
        return {keys: actions for keys, actions in by_keys.items() if len(actions) > 1}

    def to_dict(self) -> dict[str, str]:
        return dict(self._bindings)

    def save(self, path: str | Path) -> None:
        """Only bindings that differ from the defaults are stored, so new defaults reach old files."""
        changed = {a: k for a, k in self._bindings.items() if k != DEFAULT_SHORTCUTS[a]}
        atomic_write_json(path, {"format": SHORTCUT_FORMAT, "shortcuts": changed})

    @classmethod
    def load(cls, path: str | Path) -> "ShortcutMap":
        """The saved map; defaults when the file does not exist. Actions this version does not know are
        ignored; a default key the analyst gave another action (a default new since the file was saved) is left
        unbound, so the analyst's key keeps working; a malformed file raises ValueError."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != SHORTCUT_FORMAT:
                raise ValueError(f"not a {SHORTCUT_FORMAT} file")
            saved = dict(document["shortcuts"])
        except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: unreadable shortcut file: {e}") from e
        bindings = {a: str(k) for a, k in saved.items() if a in DEFAULT_SHORTCUTS}
        shortcut_map = cls(bindings)
        taken = {shortcut_map.get(a) for a in bindings} - {""}
        for action in DEFAULT_SHORTCUTS.keys() - bindings.keys():
            if shortcut_map.get(action) in taken:
                shortcut_map.set(action, "")
        return shortcut_map

    def _check_action(self, action: str) -> None:
        if action not in self._bindings:
            raise KeyError(f"unknown action {action!r}")
