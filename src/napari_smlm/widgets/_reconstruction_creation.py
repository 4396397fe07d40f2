"""The Reconstruction widget's result layers at Run: created hidden, warmed up, shown, one step per turn.

Part of :class:`~napari_smlm.widgets._reconstruction.ReconstructionWidget` (a mixin; the widget
holds the run's state). Right after Run (:meth:`ResultCreation._create_next_layer`), the result
layers are created hidden and shown one step per event-loop turn, two timer hops apart
(:func:`_after_a_turn`), while the worker is held (:data:`HOLD_WORKER_WHILE_CREATING`); between
creating and showing the points layer, its first draw is prepared one vispy program per turn
(:data:`WARM_UP_FIRST_DRAW`). The super-resolved layer is laid out on the run's final grid
(:meth:`ResultCreation._lay_out_sr`), so that its results fill it in place. The refreshes that
follow are in :mod:`._reconstruction_live`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from .. import _layers
from .._vispy_warmup import no_redraw_for_hidden_layer, warm_up_steps
from ._reconstruction_job import _points_layer_data

log = logging.getLogger(__name__)

#: Gap between the steps that create and first show the result layers (ms; each step is ~50-100 ms
#: of GUI thread). With zero-delay timers two steps could run in one event-loop pass and make one
#: stall of ~250 ms; with a gap, pending input, paints and timers are served between them.
CREATE_GAP_MS = 10
#: Hold the worker at Run until the result layers are created and first drawn (~0.3-0.4 s of GUI
#: thread): both threads running Python at once made those steps take ~2x their CPU time (GIL).
HOLD_WORKER_WHILE_CREATING = True
#: Prepare a hidden result layer's first draw in steps before showing it: each vispy shader program
#: built (GLSL generated in Python) in its own event-loop turn, then compiled by the GL driver, so that
#: the repaint that shows the layer only draws (:func:`napari_smlm._vispy_warmup.warm_up_steps`).
#: The first draw of the points layer was one stall of ~75-100 ms of GUI CPU; its largest piece
#: now is the text program's build, ~40 ms.
WARM_UP_FIRST_DRAW = True
#: Lay the super-resolved layer out on its grid (napari: dims update, every layer re-sliced, a repaint)
#: in a turn of its own before its first draw, instead of in the turn that first draws it. Off: tried
#: in session 7, the two turns cost ~43 + 43 ms of CPU where the one cost ~72 (``gui_layer_costs.py
#: --warm-up``: a repaint more), and the run's blocked time did not go down; the longest stalls of a
#: run are the two layer creations (~80-90 ms each), so the shorter steps did not lower its p99 either.
LAY_OUT_APART = False
#: Add a result layer (created hidden) without vispy redrawing the canvas for it: its picture does
#: not change until the layer is shown (:func:`napari_smlm._vispy_warmup.no_redraw_for_hidden_layer`).
#: The redraw napari's add asked for was ~15-20 ms of process CPU per layer (a render of the movie
#: with software OpenGL) in the event-loop pass after the add; the layer list and controls still repaint.
NO_REDRAW_FOR_HIDDEN_ADD = True
#: Show the (still empty) points layer in the turn that shows the super-resolved layer, not in a turn
#: of its own: an empty points layer adds nothing to the picture, but showing it cost a canvas
#: redraw and window repaint of its own (~40 ms of process CPU); the image's first draw repaints anyway.
SHOW_POINTS_WITH_SR = True


class ResultCreation:
    """The creation of a run's result layers at Run (mixin of the Reconstruction widget; see the module docstring)."""

    def _create_next_layer(self) -> None:
        """Create one result layer of the current run, empty and hidden; it is shown one turn later.

        Hidden at first, shown by :meth:`_show_created`: napari's part of a creation (vispy visual,
        layer controls) and vispy's first draw of the new visual (shader compile) are then two
        shorter stalls instead of one. A layer adopted from the previous run is left as it is.
        """
        rl = self._run_layers
        if self._closed or rl is None or not self._to_create:
            self._show_deferred()
            self._release_worker()
            return
        key = self._to_create.pop(0)
        layer = None
        if key not in rl.layers:
            px = self._run_meta["pixel_size_nm"]
            md = {**self._run_meta, "frame_range": [self._start, self._start]}
            if key == "points":
                from ..core.localizations import Localizations

                ldt = _points_layer_data(Localizations.empty(), rl.names[key], px, self._run_meta, md["frame_range"])
            else:  # an invisible 1x1 placeholder; laid out on the run's grid when shown (_lay_out_sr)
                ldt = _layers.super_resolved_layer_data(np.zeros((1, 1), np.float32), px, rl.names[key], metadata=md,
                                                        contrast_limits=(0.0, 1.0))
            ldt[1]["visible"] = False
            t = time.perf_counter()
            if NO_REDRAW_FOR_HIDDEN_ADD:
                with no_redraw_for_hidden_layer(self.viewer):
                    layer = rl.update(key, ldt)
            else:
                layer = rl.update(key, ldt)
            self.creation_log.append((t, time.perf_counter() - t))
        steps: list = []
        if layer is not None and WARM_UP_FIRST_DRAW and key == "points":
            # Not the super-resolved image: napari gives a hidden layer's visual no data (it slices
            # visible layers only), so vispy cannot build its program before it is shown; it is
            # cheap (~10 ms) where the points' text and markers programs are ~50 ms.
            steps = [(fn, 1) for fn in warm_up_steps(self.viewer, layer)]
        self.warm_up_log.append(len(steps))
        if layer is not None and LAY_OUT_APART and key == "sr":
            # its own turn (2 hops: the dims update queues a repaint), before the first draw
            steps.append((lambda: self._lay_out_sr(layer), 2))
        _after_a_turn(lambda: self._warm_next(layer, steps))

    def _warm_next(self, layer: Any, steps: list) -> None:
        """One step that prepares the first draw of a hidden result layer (:mod:`napari_smlm._vispy_warmup`).

        One shader program built (or the GL compile) per event-loop turn; when none is left, the
        layer is shown (:meth:`_show_created`), and that repaint only draws. ``steps``: ``(call,
        timer hops after it)``; with :data:`LAY_OUT_APART`, the super-resolved layer's one step lays it out.
        """
        if self._closed or not steps:
            self._show_created(layer)
            return
        fn, hops = steps.pop(0)
        fn()
        _after_a_turn(lambda: self._warm_next(layer, steps), hops=hops)

    def _show_created(self, layer: Any) -> None:
        """Show a result layer created hidden by :meth:`_create_next_layer`; then create the next one.

        With :data:`SHOW_POINTS_WITH_SR`, the points layer (empty at this point) is shown later, in
        the turn that shows the super-resolved layer (:meth:`_show_deferred`): one repaint for both.
        """
        rl = self._run_layers
        if (SHOW_POINTS_WITH_SR and layer is not None and rl is not None and "sr" in self._to_create
                and _layers.same_layer(layer, rl.get("points"))):
            self._deferred_show.append(layer)
            layer = None
        if layer is not None and not self._closed:
            self._lay_out_sr(layer)
            layer.visible = True
        if layer is not None or not self._to_create:
            self._show_deferred()
        if self._to_create and not self._closed:
            _after_a_turn(self._create_next_layer)
        else:
            self._release_worker()

    def _show_deferred(self) -> None:
        """Show the result layers whose showing waited for another one's (:data:`SHOW_POINTS_WITH_SR`).

        Also called when the creation steps end early (the run ended, the widget closed): a result
        layer is never left hidden by them.
        """
        waiting = getattr(self, "_deferred_show", None)
        while waiting:
            la = waiting.pop(0)
            if not self._closed and not la.visible:
                la.visible = True

    def _release_worker(self) -> None:
        """The result layers are there: the worker, held at Run, starts its work."""
        job = self._job
        if job is not None and hasattr(job, "release"):
            job.release()

    def _lay_out_sr(self, layer: Any) -> None:
        """Put the super-resolved layer on the run's final grid (zeros), in the turn that first draws it.

        Its results then fill that buffer in place (no data event, no extent change). Laying it out
        makes napari update the dims (the finer grid) and re-slice every layer: at creation that
        made the largest stall of a run larger, at the first result it made the first refresh
        cost ~1/3 more; the first draw is the cheapest of the creation steps and its repaint is
        shared. Not when the grid is unknown or a result already set the image.
        """
        rl = self._run_layers
        if rl is None or self._sr_grid is None or self._sr_buf is not None or not _layers.same_layer(layer, rl.get("sr")):
            return
        shape, sr_px = self._sr_grid
        self._sr_buf = np.zeros(shape, np.float32)
        md = {**self._run_meta, "frame_range": [self._start, self._start]}
        rl.update("sr", _layers.super_resolved_layer_data(self._sr_buf, sr_px, rl.names["sr"], metadata=md,
                                                          contrast_limits=(0.0, 1.0)))

    @staticmethod
    def _expected_sr_grid(ckpt: Any, cfg: Any, image_shape: tuple[int, int], px: float) -> tuple | None:
        """The running super-resolved image's ``(shape, pixel size)``, known at Run; None if it cannot be told.

        The image layer is then created on it: its first result fills it in place, where a 1x1
        placeholder growing to the real grid made napari update the dims and re-slice every layer.
        """
        from ..core.sr_grid import sr_grid

        try:
            return sr_grid(ckpt, cfg, image_shape, px)
        except Exception as exc:  # noqa: BLE001 - an unknown family: the first result sets the grid
            log.debug("super-resolved grid not known before the run: %s", exc)
            return None


def _after_a_turn(fn: Any, hops: int = 2) -> None:
    """Call ``fn`` in a later event-loop pass than whatever the current step queued (its repaint).

    Two hops of :data:`CREATE_GAP_MS`: a step's deferred work (napari's queued layer-list and
    layer-controls events, the canvas repaint that first draws a layer: ~40-100 ms) runs after the
    step; a single timer started at the step's end is already due when that work ends and fired in
    the same pass, before the input and timers that waited (one stall of both). The first hop runs
    after that work; the second is due :data:`CREATE_GAP_MS` later, after what waited.
    ``hops=1``: one timer hop, for a step that queues no deferred work (a warm-up step draws nothing).
    """
    if hops <= 1:
        QTimer.singleShot(CREATE_GAP_MS, fn)
        return
    QTimer.singleShot(CREATE_GAP_MS, lambda: QTimer.singleShot(CREATE_GAP_MS, fn))
