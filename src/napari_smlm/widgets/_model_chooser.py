"""The model chooser several widgets share: a viewer's model list + "Load checkpoint…".

Import :class:`ModelChooser` from :mod:`._forms` with the other shared forms.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from ._base import notify_error, wrap_label

__all__ = ["ModelChooser"]


class ModelChooser(QWidget):
    """The model list of a viewer (shipped weights, checkpoints trained here, loaded files) + Load checkpoint….

    Kept in sync with the session's :class:`~napari_smlm.widgets._state.ModelRegistry`; entries
    without weights are listed but disabled. ``changed`` is emitted when the choice changes.
    """

    changed = Signal()
    #: Preferred default, first found wins.
    PREFERRED = ("shipped:decode", "shipped:fid-storm", "shipped:deep-storm")

    def __init__(self, models: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.models = models
        self.combo = QComboBox()
        self.combo.setToolTip("Shipped models, checkpoints trained in this session, and loaded checkpoint files")
        self.load_button = QPushButton("Load checkpoint…")
        self.info = wrap_label()
        self.info.setStyleSheet("color: gray;")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.load_button)
        lay.addLayout(row)
        lay.addWidget(self.info)
        self.combo.currentIndexChanged.connect(self._on_changed)
        self.load_button.clicked.connect(self._on_load_clicked)
        self.models.changed.connect(self.refresh)
        self.refresh()

    @property
    def entry(self) -> Any:
        """The chosen :class:`~napari_smlm.widgets._state.ModelEntry` (None when the list is empty)."""
        key = self.combo.currentData()
        return self.models.get(key) if key is not None else None

    def select(self, key: str) -> None:
        """Select a model by its registry key (``"shipped:<name>"`` or a checkpoint path); a bare
        shipped name (``"decode3d"``) selects that shipped model."""
        idx = self.combo.findData(key)
        if idx < 0 and ":" not in key:
            idx = self.combo.findData(f"shipped:{key}")
        if idx < 0:
            known = [self.combo.itemData(i) for i in range(self.combo.count())]
            raise ValueError(f"no model {key!r} in the list; known: {', '.join(str(k) for k in known if k)}")
        self.combo.setCurrentIndex(idx)

    def refresh(self, *_: Any) -> None:
        current = self.combo.currentData()
        entries = self.models.entries()
        self.combo.blockSignals(True)
        try:
            self.combo.clear()
            model: QStandardItemModel = self.combo.model()
            for e in entries:
                self.combo.addItem(e.label, e.key)
                item = model.item(self.combo.count() - 1)
                if not e.usable:
                    item.setEnabled(False)
                item.setToolTip(e.info.get("description", e.path or ""))
            keys = [e.key for e in entries]
            usable = [e.key for e in entries if e.usable]
            if current in keys and self.models.get(current).usable:
                idx = keys.index(current)
            elif usable:
                idx = keys.index(next((k for k in self.PREFERRED if k in usable), usable[0]))
            else:
                idx = 0 if keys else -1
            self.combo.setCurrentIndex(idx)
        finally:
            self.combo.blockSignals(False)
        self._on_changed()

    def _on_changed(self, *_: Any) -> None:
        e = self.entry
        if e is None:
            self.info.setText("No model available: train one in the Training widget or load a checkpoint.")
        else:
            text = e.info.get("description", "")
            tr = e.info.get("training") or {}
            if tr:
                bits = [f"{tr.get('total_steps', tr.get('steps', '?'))} steps"]
                m = tr.get("metrics") or {}
                if isinstance(m.get("jaccard"), (int, float)) and math.isfinite(m["jaccard"]):
                    bits.append(f"validation JI {m['jaccard']:.2f}")
                text = (text + " · " if text else "") + ", ".join(bits)
            self.info.setText(text or e.model)
        self.changed.emit()

    def _on_load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a napari-smlm checkpoint", "", "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.load_checkpoint_file(path)

    def load_checkpoint_file(self, path: str | Path) -> bool:
        """Validate and add a checkpoint file to the model list; select it. Errors -> notification (reason first)."""
        try:
            entry = self.models.add_checkpoint(path, source="file")
        except Exception as exc:  # noqa: BLE001 - CheckpointError, or anything a foreign file raises
            notify_error(f"{getattr(exc, 'problem', exc)} — cannot load checkpoint {Path(path).name}")
            return False
        self.select(entry.key)
        return True

    def disconnect_registry(self) -> None:
        try:
            self.models.changed.disconnect(self.refresh)
        except Exception:  # noqa: BLE001 - not connected
            pass
