"""Stage-drift correction: redundant cross-correlation (RCC) and fiducials.

Convention
----------
``drift(f)`` is where the sample *appears* at frame ``f`` relative to where it appeared at the
first frame (nm): a molecule at sample position ``p`` is localized at ``p + drift(f)``, and the
corrected position is ``x − drift_x(frame)``. The drift of the first frame is 0 (the simulator,
:func:`napari_smlm.core.simulate.drift_trajectory`, uses the same convention), so corrected
positions are in the coordinates of the start of the movie.

Estimators
----------
* :mod:`.drift_rcc` — redundant cross-correlation (RCC, Wang et al. 2014): no fiducials needed.
* :mod:`.drift_fiducials` — fiducial markers, given (nm) or found as always-on emitters.

Both return a :class:`~.drift_table.DriftResult` (:mod:`.drift_table`), which
:func:`~.drift_table.apply_drift` subtracts from a table. This module gathers those names, so
``from napari_smlm.core.postprocessing.drift import ...`` reaches every one of them.
"""

from __future__ import annotations

from .drift_fiducials import fiducial_drift, find_fiducials, iter_fiducial_drift
from .drift_rcc import LOCS_PER_SEGMENT, auto_segments, iter_rcc, rcc
from .drift_table import DriftResult, apply_drift

__all__ = [
    "DriftResult",
    "apply_drift",
    "auto_segments",
    "iter_rcc",
    "rcc",
    "iter_fiducial_drift",
    "fiducial_drift",
    "find_fiducials",
    "LOCS_PER_SEGMENT",
]
