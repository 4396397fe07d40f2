"""Evented, per-viewer state shared by the dock widgets.

* :class:`RunState` / :class:`TaskStatus`: the run-state machine (IDLE → RUNNING → DONE /
  STOPPED / FAILED) that drives each widget's buttons.
* :class:`ModelRegistry`: the models a Reconstruction widget can use — shipped weights,
  checkpoints trained in this session (added by the Training widget the moment they are
  written) and checkpoint files the user loaded — with a ``changed`` signal.
* :func:`session_for` returns the one :class:`SmlmSession` of a viewer (created on first use,
  dropped with the viewer), so widgets docked on the same viewer see the same models.

No torch at import time; checkpoints are loaded lazily.
"""

from __future__ import annotations

import enum
import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psygnal import Signal

__all__ = ["RunState", "TaskStatus", "ModelEntry", "ModelRegistry", "SmlmSession", "session_for"]

log = logging.getLogger(__name__)


class RunState(enum.Enum):
    """State of a long-running task."""

    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def busy(self) -> bool:
        return self is RunState.RUNNING


class TaskStatus:
    """An evented run state: ``changed`` is emitted with the new :class:`RunState`."""

    changed = Signal(object)

    def __init__(self) -> None:
        self._state = RunState.IDLE
        self.message = ""

    @property
    def state(self) -> RunState:
        return self._state

    def set(self, state: RunState, message: str = "") -> None:
        self.message = message
        if state is not self._state:
            self._state = state
            self.changed.emit(state)

    @property
    def running(self) -> bool:
        return self._state is RunState.RUNNING


@dataclass
class ModelEntry:
    """One choice of the model list.

    Attributes
    ----------
    key : str
        Unique key: ``"shipped:<name>"`` or the checkpoint path.
    label : str
        What the combo box shows.
    model : str
        Registry name of the family.
    path : str or None
        Checkpoint file (None for a registry model without weights).
    source : {"shipped", "session", "file", "registry"}
    info : dict
        Free details (training record, description).
    """

    key: str
    label: str
    model: str
    path: str | None
    source: str
    info: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.path is not None


class ModelRegistry:
    """Models known to a viewer's widgets; ``changed`` fires on every addition/update."""

    changed = Signal()

    def __init__(self) -> None:
        self._extra: dict[str, ModelEntry] = {}
        self._checkpoints: dict[str, Any] = {}

    def entries(self) -> list[ModelEntry]:
        """Shipped models, then registered families without weights, then session/file checkpoints."""
        from ..core.checkpoint import shipped_checkpoint_path, shipped_models
        from ..core.models import available_models

        families = available_models()
        shipped = [m for m in shipped_models() if m in families]
        out = [
            ModelEntry(f"shipped:{m}", f"{m} (shipped weights)", m, str(shipped_checkpoint_path(m)), "shipped",
                       {"description": families[m]})
            for m in shipped
        ]
        out += [
            ModelEntry(f"registry:{m}", f"{m} (no weights yet: train it)", m, None, "registry", {"description": d})
            for m, d in families.items()
            if m not in shipped
        ]
        return out + list(self._extra.values())

    def get(self, key: str) -> ModelEntry | None:
        return next((e for e in self.entries() if e.key == key), None)

    def add_checkpoint(self, path: str | Path, source: str = "file", label: str | None = None, checkpoint: Any = None) -> ModelEntry:
        """Register a checkpoint file (validated: raises ``CheckpointError`` for a bad file).

        Parameters
        ----------
        path : path
            The ``.pt`` file.
        source : {"session", "file"}
            Trained here, or loaded by the user.
        label : str, optional
            Display label; default ``"<stem> (<model>, trained here|file)"``.
        checkpoint : Checkpoint, optional
            Already loaded; else loaded here (GUI thread; small files).
        """
        from ..core.checkpoint import load_checkpoint

        key = str(Path(path).resolve())
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(key)
        self._checkpoints[key] = ckpt
        tag = "trained here" if source == "session" else "file"
        entry = ModelEntry(
            key,
            label or f"{Path(path).stem} ({ckpt.model}, {tag})",
            ckpt.model,
            key,
            source,
            {"training": dict(ckpt.training or {})},
        )
        self._extra[key] = entry
        self.changed.emit()
        return entry

    def checkpoint(self, entry: ModelEntry, reload: bool = False):
        """The loaded :class:`~napari_smlm.core.checkpoint.Checkpoint` of an entry (cached)."""
        from ..core.checkpoint import load_checkpoint

        if entry.path is None:
            raise ValueError(f"model {entry.model!r} has no weights yet: train it in the Training widget or load a checkpoint")
        if reload or entry.key not in self._checkpoints:
            self._checkpoints[entry.key] = load_checkpoint(entry.path)
        return self._checkpoints[entry.key]

    def forget_cached(self, key: str) -> None:
        """Drop a cached checkpoint (it was rewritten on disk)."""
        self._checkpoints.pop(key, None)


class SmlmSession:
    """Everything the widgets of one viewer share."""

    def __init__(self) -> None:
        self.models = ModelRegistry()
        self.reconstruction = TaskStatus()
        self.training = TaskStatus()
        self.simulation = TaskStatus()
        #: Reconstruction runs per (movie layer name, model): numbers the result layers.
        self.runs: dict[tuple[str, str], int] = {}


_SESSIONS: dict[int, SmlmSession] = {}


def session_for(viewer: Any) -> SmlmSession:
    """The :class:`SmlmSession` of ``viewer`` (one per viewer, released when it is collected).

    napari hands each plugin widget its own public-only proxy of the viewer, so the proxies
    are unwrapped (``__wrapped__``) to find the one viewer behind them.
    """
    while hasattr(viewer, "__wrapped__"):
        viewer = viewer.__wrapped__
    key = id(viewer)
    s = _SESSIONS.get(key)
    if s is None:
        s = _SESSIONS[key] = SmlmSession()
        try:
            weakref.finalize(viewer, _SESSIONS.pop, key, None)
        except TypeError:  # not weak-referenceable: keep it for the process lifetime
            log.debug("viewer %r is not weak-referenceable; its session lives until exit", viewer)
    return s
