"""The Training widget's run: settings checked into a :class:`TrainingPlan`, the job it starts, the texts it shows.

Everything here runs on the GUI thread before or after the worker; the worker itself is
:func:`napari_smlm._workers.train_job` around :func:`napari_smlm.core.training.iter_train`.
Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._notify import error_reason, notify_error, notify_info
from ._state import RunState

__all__ = [
    "SetupError",
    "TrainingPlan",
    "default_checkpoint_dir",
    "checkpoint_path",
    "plan_training",
    "progress_text",
    "run_summary",
    "save_checkpoint_as",
]


class SetupError(ValueError):
    """Settings that cannot start a run; the message is what the user is shown."""


def default_checkpoint_dir() -> Path:
    """Where new checkpoints go unless the user picks a file: ``~/.napari-smlm/checkpoints``."""
    return Path.home() / ".napari-smlm" / "checkpoints"


def checkpoint_path(text: str, model: str) -> Path:
    """The file the user typed, or a new time-stamped one in :func:`default_checkpoint_dir`."""
    text = text.strip()
    if text:
        return Path(text).expanduser()
    return default_checkpoint_dir() / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}.pt"


@dataclass
class TrainingPlan:
    """What one run trains: the checked settings :meth:`job` hands to the worker."""

    model: str
    sim: Any
    cfg: Any
    path: Path
    init: Any = None
    model_config: Any = None
    pairs: Any = None

    def job(self):
        """The training generator for :meth:`SmlmDockWidget.start_run`."""
        from .._workers import train_job

        return train_job(
            self.model, self.sim, self.cfg, str(self.path),
            init_checkpoint=self.init, pairs=self.pairs, model_config=self.model_config,
        )


def plan_training(
    models: Any,
    model: str,
    sim: Any,
    cfg: Any,
    path: Path,
    init_key: str | None = None,
    psf: str = "",
    pairs: Callable[[str], Any] | None = None,
) -> TrainingPlan:
    """Check the settings in the order the user would fix them; :class:`SetupError` says what is wrong.

    ``init_key``: a model-list entry to fine-tune from; ``psf``: a PSF calibration file;
    ``pairs``: called with the model to train on the user's movie + ground truth instead of
    simulated data. Creates the checkpoint's folder; refuses a checkpoint file that already exists
    (the CLI's ``train`` does the same without ``--overwrite``).
    """
    init = None
    if init_key is not None:
        entry = models.get(init_key)
        try:
            init = models.checkpoint(entry)
        except Exception as exc:  # noqa: BLE001 - CheckpointError: tell the user
            raise SetupError(
                f"Cannot fine-tune from '{entry.label if entry else init_key}': {getattr(exc, 'problem', exc)}"
            ) from exc
        if init.model != model:
            raise SetupError(f"Checkpoint '{entry.label}' is a {init.model!r} model, not {model!r}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"Cannot create {path.parent}: {exc}") from exc
    model_config = None
    if psf:
        from ..core.psf_training import setup_psf_training

        try:
            sim, model_config = setup_psf_training(model, sim, psf, fine_tune=init is not None)
        except (ValueError, TypeError) as exc:
            raise SetupError(f"PSF calibration: {error_reason(exc)}") from exc
    sampler = None
    if pairs is not None:
        try:
            sampler = pairs(model)
        except (ValueError, KeyError) as exc:
            raise SetupError(f"Cannot train on the movie: {error_reason(exc)}") from exc
        sim = sampler.simulation_config(sim)
    from ..core.io.errors import SMLMFileError
    from ..core.io.safe import check_output

    # last, before any work: the run writes the file at its first validation; an existing one (the init too) is kept
    try:
        check_output(path, what="the checkpoint file", remedy="choose another file name, or leave the field empty for "
                     "a new one; an existing checkpoint is never replaced")
    except SMLMFileError as exc:
        raise SetupError(f"Cannot train into {path.name}: {error_reason(exc)}") from exc
    return TrainingPlan(model, sim, cfg, path, init=init, model_config=model_config, pairs=sampler)


def progress_text(u: Any, history: dict[str, list], elapsed_s: float) -> str:
    """The status line while training: step, loss, last validation loss, Jaccard index, minutes."""
    text = f"step {u.step}/{u.total_steps}, loss {u.loss:.4g}"
    if history["val_loss"]:
        text += f", validation {history['val_loss'][-1]:.4g}"
    if u.metrics and isinstance(u.metrics.get("jaccard"), float) and math.isfinite(u.metrics["jaccard"]):
        text += f", JI {u.metrics['jaccard']:.2f}"
    return text + f" ({elapsed_s / 60:.1f} min)"


def run_summary(state: RunState, exc: BaseException | None, history: dict[str, list], best: str | None) -> str:
    """The status line when training ends; ``best``: the best checkpoint written, if any."""
    if state is RunState.FAILED:
        return f"Failed: {error_reason(exc)}"
    n = history["step"][-1] if history["step"] else 0
    saved = f" Best checkpoint: {best}" if best else " No checkpoint yet (no validation ran)."
    return f"{'Done' if state is RunState.DONE else 'Stopped'} after {n} steps.{saved}"


def save_checkpoint_as(models: Any, src: str | None, path: str | Path, *, overwrite: bool = False) -> Path | None:
    """Copy the checkpoint ``src`` to ``path`` and add it to the model list (a notification either way).

    An existing file at ``path`` is kept unless ``overwrite`` (the widget passes it only after
    the save dialog's own "replace?" question); the copy is atomic, so a failed save leaves
    ``path`` as it was.
    """
    from napari_smlm.core.io.safe import atomic_path, check_output
    from napari_smlm.core.io.errors import SMLMFileError

    if not src or not Path(src).is_file():
        notify_error("No checkpoint to save yet: train until the first validation.")
        return None
    try:
        dst = check_output(path, inputs=[src], overwrite=overwrite, what="checkpoint")
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    except (OSError, SMLMFileError) as exc:
        notify_error(f"Cannot save the checkpoint to {Path(path)}: {error_reason(exc)}")
        return None
    models.add_checkpoint(dst, source="session")
    notify_info(f"Saved checkpoint to {dst}")
    return dst
