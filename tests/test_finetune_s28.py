"""A fine-tune run's preparation cancelled (`prepare_run`'s `cancelled` event): before, during and after its
export. Cancelled during the export, the fine-tune folder is left as it was (a new one is removed again), so that
the next Start exports and trains as if the cancelled one had never run."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.core.export import read_exported_dataset
from app.core.finetune import FineTuneJob, RunPreparationCancelled, prepare_run
from app.core.project import ReviewStatus
from tests.test_finetune import reviewed_sequence


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden and temporary ones too), by relative path, with its content."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _cancel_after(frames: int, cancelled: threading.Event, exported: list[int]):
    """A progress callback that records the frames done and cancels once `frames` of them are."""
    def progress(done: int, total: int) -> None:
        exported.append(done)
        if done == frames:
            cancelled.set()
    return progress


def test_an_export_cancelled_midway_into_a_new_folder_leaves_nothing_and_the_next_start_exports_afresh(tmp_path):
    project, source = reviewed_sequence(tmp_path)
    folder = tmp_path / "finetune"
    cancelled, exported = threading.Event(), []
    with pytest.raises(RunPreparationCancelled) as stopped:
        prepare_run(folder, project, sequence_name="seqA", source=source,
                    progress=_cancel_after(3, cancelled, exported), cancelled=cancelled)
    assert str(stopped.value) == "Cancelled during the export: none of its files or folders were kept."
    assert exported == [1, 2, 3]  # it stopped at the next frame
    assert not folder.exists()  # no empty data/images/ to pass for an export begun

    prepared = prepare_run(folder, project, sequence_name="seqA", source=source, cancelled=threading.Event())
    assert len(prepared.report.exported) == 8 and len(read_exported_dataset(folder / "data", "sirst")) == 8
    assert prepared.job.out_dir == folder / "run" and prepared.note == ""
    source.close()


def test_an_export_cancelled_over_an_earlier_one_leaves_that_one_whole(tmp_path):
    project, source = reviewed_sequence(tmp_path)
    folder = tmp_path / "finetune"
    first = prepare_run(folder, project, sequence_name="seqA", source=source)
    assert len(first.report.exported) == 8
    project.set_status(project.stems[7], ReviewStatus.REJECTED)  # the next export removes its frame
    before = _files(folder)
    cancelled, exported = threading.Event(), []
    with pytest.raises(RunPreparationCancelled) as stopped:
        prepare_run(folder, project, sequence_name="seqA", source=source,
                    progress=_cancel_after(2, cancelled, exported), cancelled=cancelled)
    assert str(stopped.value) == (f"Cancelled during the export: none of its files were kept; {folder / 'data'} is "
                                  "as it was before.")
    assert _files(folder) == before  # meta.json, split files, images, masks: no file changed, none added

    again = prepare_run(folder, project, sequence_name="seqA", source=source)
    assert len(read_exported_dataset(folder / "data", "sirst")) == 7
    assert again.job.out_dir == folder / "run"  # it held no run yet: reused
    source.close()


def test_a_preparation_cancelled_before_its_export_writes_nothing(tmp_path):
    project, source = reviewed_sequence(tmp_path)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(RunPreparationCancelled, match=r"^Cancelled before the export: nothing was written\.$"):
        prepare_run(tmp_path / "finetune", project, sequence_name="seqA", source=source, cancelled=cancelled)
    assert not (tmp_path / "finetune").exists()
    source.close()


def test_a_preparation_cancelled_after_its_export_keeps_the_whole_export_and_starts_nothing(tmp_path, monkeypatch):
    project, source = reviewed_sequence(tmp_path)
    folder = tmp_path / "finetune"
    cancelled = threading.Event()
    check_targets = FineTuneJob.check_targets

    def cancelled_meanwhile(job):  # a step after the export, whose files are all in place by then
        cancelled.set()
        check_targets(job)

    monkeypatch.setattr(FineTuneJob, "check_targets", cancelled_meanwhile)
    with pytest.raises(RunPreparationCancelled) as stopped:
        prepare_run(folder, project, sequence_name="seqA", source=source, cancelled=cancelled)
    assert str(stopped.value) == (f"Cancelled after the export: {folder / 'data'} holds the reviewed frames; no "
                                  "training was started.")
    assert len(read_exported_dataset(folder / "data", "sirst")) == 8
    monkeypatch.undo()
    again = prepare_run(folder, project, sequence_name="seqA", source=source)  # exported again over it
    assert len(again.report.exported) == 8 and again.job.out_dir == folder / "run" and again.note == ""
    source.close()
