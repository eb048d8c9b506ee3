"""Mask editing for the review window, without Qt: what each tool does to a frame, and how the result
is saved through the session's project.

Every tool call is one undoable edit (`ReviewProject.commit_edit`: history and committed mask written
atomically at once). An edit that changes the mask also marks the frame `corrected`: the analyst has
now drawn the truth, so export takes the committed mask. One that changes nothing (the eraser on empty
sky) saves nothing and leaves the status alone, except that the accept tools commit the proposals they
pick even where the frame already showed just those. Edits start from the committed mask, else the
proposal, except on a frame marked negative, where they start from an empty mask (`working_mask`).
Undoing the edit that marked the frame corrected gives back the status it had before (and undoing a frame's first
edit takes its committed mask away again: the frame shows its proposal), and redoing it marks
the frame corrected again, until the analyst sets a status (an accept, C, ...): that verdict stands, and undo
and redo change the mask only. A redo is refused where a re-run replaced the proposal it was undone to with one that
differs where the edit changes it (`ReviewProject.redo`).
A failed write raises `ProjectWriteError`. When the mask's own write fails, the project keeps its last
saved state. When the mask (and its history step) is saved but the status written after it is not,
`StatusNotSaved` (a `ProjectWriteError`) says so: the frame keeps its old status. Either way the editor
keeps the mask in memory as the frame's working mask, so the next edit that saves carries it (and the
status `corrected`) too, and so does a status change (`FrameEditor.set_status`): a status is about the
mask shown.
Edits, undo, redo and status changes act on the status the window shows: where another window on the project
set the frame's status since, they are refused (`EditRefused`, nothing changed) and that status is shown
(`ReviewSession.check_status_shown`), as the window refuses them over a mask changed on disk; so are edits on a
frame whose proposal or committed mask another instance wrote in a project it made while this window had none
(`ReviewSession.masks_not_shown`). A frame holding an edit that could not be saved is the exception: saved, it
replaces what another instance set, status and mask alike.
"""
from __future__ import annotations

from enum import Enum

import numpy as np

from app.core.edits import (StaleRedo, accept_targets, brush_kernel, delete_component, fill_polygon, flood_fill,
                            grow_target, mask_diff, paint_stroke)
from app.core.project import ProjectWriteError, ReviewStatus, StatusSetElsewhere
from app.core.targets import label_components, nearest_pixel
from app.session import ReviewSession

FILL_LIMIT = 0.02  # a fill may add at most this fraction of the frame: small targets are far smaller (SIRST: < 0.15 %)


class EditRefused(ValueError):
    """The tool or status would do something the analyst cannot have meant; nothing was changed."""


class StatusNotSaved(ProjectWriteError):
    """The frame's mask is saved (its committed mask and history are on disk) but its status is not: the
    status write after the mask's failed, and the frame keeps its previous status."""


class MaskNotUndone(ProjectWriteError):
    """An undo gave the frame its status back, but neither its mask step nor the status put back again could be
    written: the frame has the status the undo gave and still its edited mask."""


class Tool(str, Enum):
    NAVIGATE = "navigate"  # pan and zoom; no editing
    BRUSH = "brush"
    ERASER = "eraser"
    POLYGON = "polygon"
    FLOOD_FILL = "flood_fill"
    DELETE_COMPONENT = "delete_component"
    ACCEPT_TARGET = "accept_target"
    GROW_TARGET = "grow_target"


def _status_set_elsewhere_message(index: int, refusal: StatusSetElsewhere, mask_saved: bool = False,
                                  shown_committed: bool = False) -> str:
    """The window's words for a change refused over a status another instance set (`StatusSetElsewhere`);
    `mask_saved`: the change's mask was written before the status write found it (in the moment between the two);
    `shown_committed`: that mask is the one the frame showed, committed as it was (Mark Corrected: no undo step)."""
    said = (f"Frame {index + 1}: its status changed on disk since it was shown (another window on this project "
            f"marked it {refusal.status.value}): shown now as it is")
    if shown_committed:
        return f"{said}, with the mask it showed saved as its committed mask; check it, then set its status."
    if mask_saved:
        return f"{said}, with your change to its mask saved (Undo takes it back); check it, then set its status."
    return f"{said}; check it, then do it again."


def brush_offsets(size: int) -> np.ndarray:
    """(N, 2) (dx, dy) of the pixels one brush stamp covers, relative to the pixel it is put on
    (`brush_kernel`: index k lands at size // 2 - k)."""
    ky, kx = np.nonzero(brush_kernel(size))
    return np.stack([size // 2 - kx, size // 2 - ky], axis=1)


def predicted_target_at(prediction: np.ndarray, x: float, y: float) -> int:
    """Id (raster-order, as `extract_targets`) of the predicted target under or nearest (x, y) (`nearest_pixel`);
    0 if none."""
    pixel = nearest_pixel(prediction, x, y)
    if pixel is None:
        return 0
    _, labels = label_components(prediction)
    return int(labels[pixel[1], pixel[0]])


class FrameEditor:
    """The edits of one session: each method applies a tool to a frame and saves it as one undoable edit.

    Methods return True when the frame's committed mask changed.
    """

    def __init__(self, session: ReviewSession):
        self.session = session
        self.unsaved: dict[int, np.ndarray] = {}  # frame index -> mask whose save failed

    def working_mask(self, index: int) -> np.ndarray:
        if index in self.unsaved:
            return self.unsaved[index].copy()
        project = self.session.project
        if project is None:
            prediction = self._prediction(index)
            return prediction.copy()
        return project.working_mask(self.session.stem(index))

    def paint(self, index: int, points, size: int, erase: bool = False) -> bool:
        return self._save(index, paint_stroke(self.working_mask(index), points, size, not erase))

    def fill_polygon(self, index: int, vertices) -> bool:
        return self._save(index, fill_polygon(self.working_mask(index), vertices, True))

    def flood_fill(self, index: int, x: float, y: float) -> bool:
        """Raises EditRefused when the region would add more than FILL_LIMIT of the frame (a click on open
        background, or an outline with a gap)."""
        before = self.working_mask(index)
        after = flood_fill(before, x, y, True)
        added = int(after.sum() - before.sum())
        if added > FILL_LIMIT * before.size:
            raise EditRefused(f"Fill refused: it would add {added} px ({100 * added / before.size:.0f} % of the "
                              "frame). Click inside a closed outline, or paint with the brush.")
        return self._save(index, after)

    def delete_component(self, index: int, x: float, y: float) -> bool:
        return self._save(index, delete_component(self.working_mask(index), x, y))

    def accept_target(self, index: int, x: float, y: float) -> bool:
        """Add the predicted target at (x, y) to the committed mask. On a frame without a committed mask
        this commits that one target alone (the other proposals are not accepted by it)."""
        prediction = self._prediction(index)
        target_id = predicted_target_at(prediction, x, y)
        if target_id == 0:
            return False
        return self._save(index, accept_targets(self._committed(index), prediction, [target_id]),
                          commit_unchanged=True)

    def accept_all(self, index: int) -> bool:
        """Add every predicted target to the committed mask. Raises EditRefused, saving nothing, when the
        proposal has no target: committed as it is, that empty mask would mark the frame corrected with
        no target (a frame not detected yet, whose targets nobody has looked for)."""
        project = self.session.project
        prediction = None if project is None else project.prediction_mask(self.session.stem(index))
        if prediction is None:
            raise EditRefused(f"Frame {index + 1} has no proposal to add yet: detect it, or draw its targets.")
        if not prediction.any():
            raise EditRefused(f"Frame {index + 1}'s proposal has no target to add: draw its targets, or mark it "
                              "Negative.")
        return self._save(index, accept_targets(self._committed(index), prediction), commit_unchanged=True)

    def grow_target(self, index: int, frame: np.ndarray, x: float, y: float) -> bool:
        """Add the bright region around (x, y) of the raw frame (`grow_target`); EditRefused when none stands out.
        The sequence's bad pixels are repaired first: a hot pixel in the background ring would raise the
        threshold over the target, and a click beside one would grow the hot pixel itself."""
        grown = grow_target(self.session.normalization.repair(frame), x, y)
        if not grown.any():
            raise EditRefused("Grow target: no region stands out from its surroundings here.")
        return self._save(index, self.working_mask(index) | grown)

    def undo(self, index: int) -> bool:
        return self._step_history(index, redo=False)

    def redo(self, index: int) -> bool:
        return self._step_history(index, redo=True)

    def can_undo(self, index: int) -> bool:
        project = self.session.project
        return project is not None and project.history(self.session.stem(index)).can_undo

    def can_redo(self, index: int) -> bool:
        project = self.session.project
        return project is not None and project.history(self.session.stem(index)).can_redo

    def diff(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(only predicted, only committed, both) of a frame."""
        return mask_diff(self._prediction(index), self.working_mask(index))

    def _has_proposal(self, index: int) -> bool:
        """Whether the frame shows something to accept or mark corrected: a detection result (no target is one too),
        or a committed mask with a target. An empty committed mask on a frame never detected is none: nobody saw a
        proposal there (C on such a frame committed one, before it was refused), and "no target" is what Negative
        says."""
        if self.session.detection_counts[index] >= 0:
            return True
        committed = self._committed(index)
        return committed is not None and bool(committed.any())

    def _proposal_unreadable(self, index: int) -> bool:
        """Whether what an accept would take is a proposal file that cannot be read (no committed mask over it)."""
        project, stem = self.session.project, self.session.stem(index)
        return (project is not None and not project.has_committed_mask(stem) and project.has_prediction(stem)
                and project.prediction_mask(stem) is None)

    def set_status(self, index: int, status: ReviewStatus) -> None:
        """Set a frame's review status; EditRefused says why a status cannot be given, ProjectWriteError
        that it was not saved (the frame keeps its status): StatusNotSaved when the frame's mask is saved
        all the same, ProjectWriteError itself when nothing is.

        A status is about the mask shown: a mask whose save failed is saved first (with the same error, and
        no status change, if it still cannot be). Accepted says the proposal is right, so a frame with none
        yet (not detected, no committed mask) cannot be accepted. Corrected commits the mask shown: export
        takes the committed mask of a corrected frame, so it is refused where there is no proposal either (it would
        commit an empty mask nobody drew: Negative says a frame has no target).
        """
        status = ReviewStatus(status)
        session = self.session
        if session.is_unreadable(index) and status not in (ReviewStatus.REJECTED, ReviewStatus.UNREVIEWED):
            raise EditRefused(f"Frame {index + 1} is unreadable: it can only be marked rejected.")
        asked = {ReviewStatus.ACCEPTED: "accept", ReviewStatus.CORRECTED: "mark corrected"}.get(status)
        if asked and index not in self.unsaved and not self._has_proposal(index):
            raise EditRefused(f"Frame {index + 1} has no proposal to {asked} yet: detect it, draw its targets, or "
                              "mark it Negative.")
        if status is ReviewStatus.ACCEPTED and index not in self.unsaved and self._proposal_unreadable(index):
            raise EditRefused(f"Frame {index + 1}'s proposal, masks/{session.stem(index)}.png, cannot be read: "
                              "accepted, it would export nothing. Detect the frame again, draw its targets, or mark "
                              "it Negative.")
        # the project is made (or another instance's taken up) only by the check or the write of the status: taken up
        # before, its statuses would pass for the ones shown
        shown_committed = False  # the mask shown committed as it is (C): no undo step
        mask_saved = index in self.unsaved  # once committed below: it is the frame's committed mask
        if mask_saved:
            self._commit(index, self.unsaved[index])
        elif status is ReviewStatus.CORRECTED:
            self._check_shown(index, status)  # before the commit (the status write checks it too)
            mask_saved = shown_committed = self._commit(index, session.project.shown_mask(session.stem(index)))
        self._set_status(index, status, mask_saved, shown_committed)
        self.unsaved.pop(index, None)
        session.project.keep_status_on_undo(session.stem(index))  # the analyst's verdict: undo no longer changes it

    def _save(self, index: int, new_mask: np.ndarray, commit_unchanged: bool = False) -> bool:
        """Save a tool's result as the frame's committed mask and mark the frame corrected. A result equal
        to the working mask changes nothing, unless `commit_unchanged` (the proposal shown, committed as
        it is) or the frame has an unsaved mask (saved now)."""
        if not (commit_unchanged or index in self.unsaved) and np.array_equal(new_mask, self.working_mask(index)):
            return False
        try:
            self._check_shown(index)  # (it makes the project when there is none yet: a write that may fail)
            status = self.session.status(index)
            status_before = None if status is ReviewStatus.CORRECTED else status.value
            # an unsaved mask that is already the committed one lacks its status: that save failed after the mask
            if not self._commit(index, new_mask, status_before) and index not in self.unsaved:
                return False
            self._set_status(index, ReviewStatus.CORRECTED, mask_saved=True)
        except ProjectWriteError:
            self.unsaved[index] = np.asarray(new_mask, bool)
            raise
        self.unsaved.pop(index, None)
        return True

    def _set_status(self, index: int, status: ReviewStatus, mask_saved: bool, shown_committed: bool = False) -> None:
        """Save the frame's status; `mask_saved`: its mask was just committed, so a failure raises StatusNotSaved;
        `shown_committed`: that mask is the one shown, committed as it was (no undo step).
        EditRefused when another instance set the frame's status since it was shown (after `_check_shown`,
        within the moment before the mask's write), unless the frame holds an edit that could not be saved."""
        try:
            if index in self.unsaved:
                self.session.replace_status(index, status)
            else:
                self.session.set_status(index, status)
        except StatusSetElsewhere as e:
            raise EditRefused(_status_set_elsewhere_message(index, e, mask_saved, shown_committed)) from None
        except ProjectWriteError as e:
            if not mask_saved:
                raise
            raise StatusNotSaved(str(e)) from e

    def _check_shown(self, index: int, asked: ReviewStatus | None = None) -> None:
        """EditRefused, nothing changed, when another instance set the frame's status since it was shown to another
        than `asked`, or wrote its proposal or committed mask in a project this session took up since (the window shows
        theirs now), unless the frame holds an edit that could not be saved: that replaces it."""
        if index in self.unsaved:
            return
        try:
            self.session.check_status_shown(index, asked)
        except StatusSetElsewhere as e:
            raise EditRefused(_status_set_elsewhere_message(index, e)) from None
        not_shown = self.session.masks_not_shown(index)
        if not_shown:
            raise EditRefused(f"Frame {index + 1}: its {' and '.join(not_shown)} changed on disk since it was shown "
                              "(another window or an irsam command): shown now as it is; check it, then do it again.")

    def _commit(self, index: int, mask: np.ndarray, status_before: str | None = None) -> bool:
        """Make `mask` the frame's committed mask (`ReviewProject.commit_edit`); False when it already was."""
        changed = self.session.ensure_project().commit_edit(self.session.stem(index), mask,
                                                            status_before=status_before)
        if changed:
            self._forget_layers(index)
        return changed

    def _step_history(self, index: int, redo: bool) -> bool:
        """Undo or redo the frame's last edit, and the status change it made (module docstring). An undo that gives
        a status back writes it first: ProjectWriteError, and nothing changed, when it cannot. StatusNotSaved when a
        redo's mask is stepped but its status cannot be written."""
        if not (self.can_redo(index) if redo else self.can_undo(index)):
            return False
        if index in self.unsaved:  # the history's last step is not what the frame shows: stepping it would be lost
            raise EditRefused(f"Frame {index + 1} holds an edit that is not saved yet: {'redo' if redo else 'undo'} "
                              "waits until it is (your next change, a status, or closing the sequence saves it, once "
                              "the project can be written).")
        self._check_shown(index)  # (the status it may give back or set is decided on what is on disk)
        project, stem = self.session.project, self.session.stem(index)
        history = project.history(stem)
        step = history.next_redo() if redo else history.next_undo()
        try:
            status_before = ReviewStatus(step.status_before) if step and step.status_before else None
        except ValueError:  # a history file from elsewhere: its status is not one of ours
            status_before = None
        current = self.session.status(index)
        if redo:
            try:
                project.redo(stem)
            except StaleRedo as refusal:
                raise EditRefused(str(refusal)) from None
            self._forget_layers(index)
            if status_before is not None and current is status_before:
                self._set_status(index, ReviewStatus.CORRECTED, mask_saved=True)
        elif status_before is not None and current is ReviewStatus.CORRECTED:
            # the status first: one that cannot be written leaves the frame as it was, where after the mask it could
            # leave a corrected frame without the committed mask its undo removed (export skips such a frame)
            self._set_status(index, status_before, mask_saved=False)
            try:
                project.undo(stem)
            except ProjectWriteError as error:
                try:
                    self._set_status(index, ReviewStatus.CORRECTED, mask_saved=False)
                except ProjectWriteError:
                    raise MaskNotUndone(str(error)) from error
                raise
            self._forget_layers(index)
        else:
            project.undo(stem)
            self._forget_layers(index)
        return True

    def _prediction(self, index: int) -> np.ndarray:
        project = self.session.project
        prediction = None if project is None else project.prediction_mask(self.session.stem(index))
        return np.zeros(self.session.source.frame_shape(index), bool) if prediction is None else prediction

    def _committed(self, index: int) -> np.ndarray | None:
        project = self.session.project
        return None if project is None else project.committed_mask(self.session.stem(index))

    def _forget_layers(self, index: int) -> None:
        # the session caches decoded layer files per frame; the committed mask just changed on disk
        self.session.files_rewritten([self.session.stem(index)])
