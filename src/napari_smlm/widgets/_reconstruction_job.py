"""The Reconstruction widget's worker side: what its job yields, computed off the GUI thread.

:func:`_reconstruction_job` is the generator the widget's worker drains: the movie's
out-of-distribution check, then :func:`~napari_smlm.core.inference.iter_predict`'s updates, each
batch's points as plain arrays (:class:`_LivePart`) and, at the end, the points layer data of
every localization (:class:`_FinalPoints`) — O(run) work that would stall the GUI thread.
No Qt here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .. import _layers
from ..core.progress import UpdateKind

log = logging.getLogger(__name__)


#: A finished run with more localizations than this gets a points layer that shows the current
#: frame's (:func:`~napari_smlm._layers.frame_view_points`; the whole table stays readable from it):
#: handing napari 650 k points at the end of a 20,000-frame run stalled its event loop ~0.9 s.
#: Filling a points layer costs napari ~60 ms + ~0.9 µs per point of CPU (``benchmarks/gui_layer_costs.py
#: --fill``: 166 ms for 120 k, 235 ms for 200 k): 120 k keeps the final refresh under the 250 ms goal.
FINAL_POINTS_ROWS = 120_000


@dataclass(frozen=True)
class _DomainWarnings:
    """First item of a reconstruction job: the movie's out-of-distribution warnings (worker side)."""

    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _LivePart:
    """Item after each ``"batch"`` update: that batch's points as plain arrays (worker side)."""

    part: tuple


@dataclass(frozen=True)
class _FinalPoints:
    """Item after the ``"done"`` update: the points layer data of every localization (worker side)."""

    layer_data: tuple


def _points_layer_data(locs: Any, name: str, px: float, run_meta: dict, frame_range: Any) -> tuple:
    """The points layer tuple of ``locs`` with the run's metadata (``localizations_meta`` included)."""
    md = {**run_meta, "frame_range": frame_range, "live_points": None}
    return _layers.localizations_layer_data(locs, name, pixel_size_nm=px, metadata=md)


def _reconstruction_job(data: Any, ckpt: Any, cfg: Any, camera: Any, points_name: str, run_meta: dict,
                        inner: Any = None, predict: Any = None):
    """The worker's generator: domain check, ``iter_predict``'s updates, then the final points data.

    Yields a :class:`_DomainWarnings` first, then every update of
    :func:`~napari_smlm._workers.predict_job`, and after a ``"done"`` update a
    :class:`_FinalPoints` (coordinates and features of all localizations: O(run) work that would
    otherwise stall the GUI thread at the end of the run). ``inner``: the updates to drain instead
    of ``predict_job``'s (the streamed job); its final table is the file's bounded view, which
    the widget reads itself (no :class:`_FinalPoints`). ``predict(data, ckpt, cfg)``: the updates
    otherwise (default :func:`~napari_smlm._workers.predict_job`).
    """
    from ..core.localizations import Localizations
    from ..core.models.domain import check_movie

    px = float(run_meta["pixel_size_nm"])
    try:
        warnings = tuple(check_movie(ckpt, data, camera=camera, pixel_size_nm=px).warnings)
    except Exception as exc:  # noqa: BLE001 - a failed estimate must not stop the run
        log.debug("out-of-distribution check failed: %s", exc)
        warnings = ()
    yield _DomainWarnings(warnings)
    if inner is None:
        updates = (predict or _predict_job)(data, ckpt, cfg)
    else:
        updates = inner
    try:
        for u in updates:
            yield u
            if u.kind == UpdateKind.BATCH:
                yield _LivePart(_layers.points_part(u.localizations))
            elif u.kind == UpdateKind.DONE and inner is None:
                frame_range = [int(u.start), int(u.stop)]
                done = u.localizations
                locs = Localizations(done.df, {**done.meta, **run_meta, "frame_range": frame_range})
                if len(locs) > FINAL_POINTS_ROWS:  # a frame view: napari gets one frame's points, not all
                    md = {**run_meta, "frame_range": frame_range, "live_points": None}
                    yield _FinalPoints(_layers.frame_view_points(locs, points_name, mode="frame", frame=int(u.stop) - 1,
                                                                 pixel_size_nm=px, metadata=md))
                else:
                    yield _FinalPoints(_points_layer_data(locs, points_name, px, run_meta, frame_range))
    finally:  # Stop closes this generator: close the inner one now (a streamed file is finished then)
        close = getattr(updates, "close", None)
        if close is not None:
            close()


def _predict_job(data: Any, ckpt: Any, cfg: Any):
    from .._workers import predict_job

    return predict_job(data, ckpt, cfg)
