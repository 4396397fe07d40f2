"""Small controls the widgets share: spin boxes, a wrapping label, a file-path field, a layer picker, a result table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

__all__ = ["LayerPicker", "PathField", "PSF_FILES", "ResultTable", "spin", "dspin", "wrap_label"]


def _bounded(w: Any, value: float, lo: float, hi: float, step: float, suffix: str, tip: str) -> Any:
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    if suffix:
        w.setSuffix(suffix)
    if tip:
        w.setToolTip(tip)
    return w


def spin(value: int, lo: int, hi: int, step: int = 1, suffix: str = "", tip: str = "") -> QSpinBox:
    return _bounded(QSpinBox(), value, lo, hi, step, suffix, tip)


def dspin(
    value: float, lo: float, hi: float, step: float = 1.0, decimals: int = 1, suffix: str = "", tip: str = ""
) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setDecimals(decimals)  # before the range and value, which it rounds
    return _bounded(w, value, lo, hi, step, suffix, tip)


def wrap_label(text: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setWordWrap(True)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    lab.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    return lab


#: The file dialog's filter for PSF calibrations (YAML from ``napari-smlm calibrate``).
PSF_FILES = "Calibrations (*.yaml *.yml)"


class PathField(QWidget):
    """A file path: a line edit and a "…" button that fills it from a file dialog.

    ``choose(parent)`` opens the dialog and returns the chosen path or ``""`` (cancelled);
    by default an open-file dialog titled ``title`` with filter ``filter``.
    """

    def __init__(
        self,
        placeholder: str = "",
        tip: str = "",
        title: str = "Open",
        filter: str = "",
        choose: Callable[[QWidget], str] | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        if tip:
            self.edit.setToolTip(tip)
        self.button = QPushButton("…")
        self.button.setFixedWidth(30)
        self._choose = choose or (lambda w: QFileDialog.getOpenFileName(w, title, "", filter)[0])
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.button)
        self.button.clicked.connect(self.browse)

    @property
    def path(self) -> str:
        """The text, stripped (``""``: none)."""
        return self.edit.text().strip()

    def browse(self) -> None:
        path = self._choose(self)
        if path:
            self.edit.setText(path)


#: Image layers this plugin makes that are never a camera movie (a render, the network's output).
_NOT_A_MOVIE = frozenset({"super_resolved", "super_resolved_rgb", "network_output"})


def may_be_movie(layer: Any) -> bool:
    """Whether an image layer may be a raw camera movie: not one of this plugin's renders or outputs.

    A picker of movies that offered a ``... SR`` render picked it when it was the top layer
    ("1 frames of 512×512 px, 12.5 nm"); layers of other readers carry no kind and stay offered.
    """
    return (getattr(layer, "metadata", None) or {}).get("smlm_kind") not in _NOT_A_MOVIE


#: Image layers this plugin makes that are never a super-resolved grey image (raw frames, the network's output,
#: a colour render).
_NOT_AN_SR_IMAGE = frozenset({"movie", "network_output", "super_resolved_rgb"})


def may_be_sr_image(layer: Any) -> bool:
    """Whether an image layer may be a super-resolved image to score: one grey 2-D image, not a raw movie.

    The Evaluation dock's image picker offered (and chose) the raw movie when no render was open. Layers of
    other readers carry no kind and stay offered when they are one grey 2-D image.
    """
    kind = (getattr(layer, "metadata", None) or {}).get("smlm_kind")
    return kind not in _NOT_AN_SR_IMAGE and not getattr(layer, "rgb", False) and getattr(layer, "ndim", 0) == 2


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers of some types, kept in sync with the layer list.

    ``value`` is the selected layer or None. napari also calls :meth:`reset_choices` when
    layers are inserted or removed (it does so for any dock widget that has the method).

    Long names: the box shows the chosen name elided in the middle (:meth:`shown_text`), so
    that two names with a long common prefix (``<movie> [decode #1]`` and ``#2``) still look
    different; the list opens as wide as the longest name, and the tooltips of the box and of
    each item hold the whole name (the box's own tooltip, :meth:`setToolTip`, follows it).

    ``prefer``: when the chosen layer goes away (or at first), the topmost layer it accepts is
    chosen, else the topmost layer.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer: Any, layer_types: Sequence[type], optional: bool = False, parent: QWidget | None = None,
                 accept: Callable[[Any], bool] | None = None, prefer: Callable[[Any], bool] | None = None):
        super().__init__(parent)
        self._viewer = viewer
        self._types = tuple(layer_types)
        self._accept = accept  # a further test of a layer of those types (e.g. a z-stack: ndim >= 3)
        self._prefer = prefer
        self._optional = optional
        self._layers: list[Any] = []
        self._description = ""
        self._following = True  # connected to the viewer's layer events (disconnect_viewer)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.currentIndexChanged.connect(self._emit)
        self.currentIndexChanged.connect(self._update_tooltip)
        ev = viewer.layers.events
        ev.inserted.connect(self._on_layers_changed)
        ev.removed.connect(self._on_layers_changed)
        ev.moved.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.reset_choices()

    def _on_layers_changed(self, event: Any = None) -> None:
        value = getattr(event, "value", None)
        kind = getattr(event, "type", "")
        if kind == "inserted" and value is not None:
            value.events.name.connect(self._on_layers_changed)
        elif kind == "removed" and value is not None:  # a layer out of the list: its renames are not ours
            value.events.name.disconnect(self._on_layers_changed)
        self.reset_choices()

    def reset_choices(self, *_: Any) -> None:
        if not self._following:
            # the dock went away (disconnect_viewer); napari still calls a removed dock's reset_choices
            # (it connected it to the layer events): the picker stays as it was and emits nothing
            return
        current = self.value
        layers = [la for la in reversed(list(self._viewer.layers))
                  if isinstance(la, self._types) and (self._accept is None or self._accept(la))]
        self.blockSignals(True)
        try:
            self.clear()
            self._layers = ([None] if self._optional else []) + layers
            if self._optional:
                self.addItem("(none)")
            for la in layers:
                self.addItem(la.name)
                self.setItemData(self.count() - 1, la.name, Qt.ItemDataRole.ToolTipRole)
            if current is not None and current in self._layers:
                self.setCurrentIndex(self._layers.index(current))
            elif self._prefer is not None:
                preferred = next((la for la in layers if self._prefer(la)), None)
                if preferred is not None:
                    self.setCurrentIndex(self._layers.index(preferred))
            fm = self.view().fontMetrics()
            widest = max((fm.horizontalAdvance(la.name) for la in layers), default=0)
            self.view().setMinimumWidth(widest + 4 * fm.averageCharWidth())  # the list shows whole names
        finally:
            self.blockSignals(False)
        self._update_tooltip()
        if self.value is not current:
            self._emit()

    # -- long names
    def shown_text(self) -> str:
        """The chosen name as the box shows it: elided in the middle to the box's text field."""
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(opt.currentText, Qt.TextElideMode.ElideMiddle, max(field.width(), 0))

    def paintEvent(self, event: Any) -> None:  # Qt API
        # QComboBox elides on the right: "<long prefix>…" for every layer that shares the prefix
        painter = QStylePainter(self)
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
        opt.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)

    def setToolTip(self, text: str | None) -> None:  # Qt API
        """The picker's description; the tooltip shows it under the chosen layer's whole name."""
        self._description = text or ""
        self._update_tooltip()

    def _update_tooltip(self, *_: Any) -> None:
        name = self.value.name if self.value is not None else ""
        super().setToolTip("\n".join(t for t in (name, self._description) if t))

    def _emit(self, *_: Any) -> None:
        self.layer_changed.emit(self.value)

    @property
    def value(self) -> Any:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    @value.setter
    def value(self, layer: Any) -> None:
        if layer not in self._layers:
            raise ValueError(f"{getattr(layer, 'name', layer)!r} is not one of the choices")
        self.setCurrentIndex(self._layers.index(layer))

    def disconnect_viewer(self) -> None:
        """Stop following the viewer's layer list (the dock goes away); idempotent."""
        if not self._following:
            return
        self._following = False
        viewer = self._viewer
        ev = viewer.layers.events
        for e in (ev.inserted, ev.removed, ev.moved):
            e.disconnect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.disconnect(self._on_layers_changed)


class ResultTable(QTableWidget):
    """A read-only table of results in a dock that never scrolls on its own: the dock scrolls as a whole.

    Its width follows the dock: every column is as wide as its contents and header, except ``stretch``,
    which takes what is left and elides long texts in the middle; no horizontal scroll bar hides a
    column or cuts a header. Every cell's tooltip holds its whole text, every header's its ``tips``
    entry (or its whole label). Its height shows every row (:meth:`set_rows`).
    """

    def __init__(self, headers: Sequence[str], stretch: int = 0, tips: Sequence[str] | None = None,
                 parent: QWidget | None = None):
        super().__init__(0, len(headers), parent)
        self.setHorizontalHeaderLabels(list(headers))
        hh = self.horizontalHeader()
        for j, label in enumerate(headers):
            hh.setSectionResizeMode(j, QHeaderView.ResizeMode.Stretch if j == stretch else
                                    QHeaderView.ResizeMode.ResizeToContents)
            self.horizontalHeaderItem(j).setToolTip(tips[j] if tips else label)
        hh.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.verticalHeader().setVisible(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.set_rows([])

    def set_rows(self, rows: Sequence[Sequence[str]]) -> None:
        """Show ``rows`` (texts, one per column), all of them: the table is as tall as its rows."""
        self.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                item = QTableWidgetItem(str(text))
                item.setToolTip(str(text))
                self.setItem(i, j, item)
        self._fit_height()

    def _fit_height(self) -> None:
        h = self.horizontalHeader().sizeHint().height() + sum(self.rowHeight(i) for i in range(self.rowCount()))
        self.setFixedHeight(h + 2 * self.frameWidth())

    def event(self, e: QEvent) -> bool:  # Qt API
        # napari's style sheet reaches the table when it is first shown (or the theme changes): rows and
        # header get their final heights only then, and the table must still show all of them
        if e.type() in (QEvent.Type.Polish, QEvent.Type.StyleChange, QEvent.Type.FontChange, QEvent.Type.Show):
            handled = super().event(e)
            self._fit_height()
            return handled
        return super().event(e)
