"""The per-frame drift table (:class:`DriftResult`) and its application to a localization table.

The estimators that make it live in :mod:`.drift_rcc` (redundant cross-correlation) and
:mod:`.drift_fiducials` (fiducial markers); :mod:`.drift` describes the sign convention
and gathers all the drift names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..localizations import Localizations

__all__ = ["DriftResult", "apply_drift"]


@dataclass
class DriftResult:
    """A per-frame drift table.

    Attributes
    ----------
    drift_x_nm, drift_y_nm : np.ndarray
        Drift of frames ``0 .. n_frames − 1`` (nm); 0 at frame 0.
    method : str
        ``"rcc"`` or ``"fiducials"``.
    segment_frames : np.ndarray
        RCC: mean frame of each segment; fiducials: empty.
    segment_drift_nm : np.ndarray
        RCC: ``(n_segments, 2)`` solved segment drifts (same zero as the table).
    info : dict
        Parameters and diagnostics (pairs used / rejected, residual RMS, fiducials used ...).
    """

    drift_x_nm: np.ndarray
    drift_y_nm: np.ndarray
    method: str
    segment_frames: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segment_drift_nm: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    info: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.drift_x_nm)

    @property
    def max_displacement_nm(self) -> float:
        """Largest distance of the sample from its first-frame position, ``max hypot(dx, dy)`` (nm); 0 if empty."""
        if self.n_frames == 0:
            return 0.0
        return float(np.hypot(self.drift_x_nm, self.drift_y_nm).max())

    def table(self) -> pd.DataFrame:
        """``frame``, ``drift_x_nm``, ``drift_y_nm`` — one row per frame."""
        return pd.DataFrame(
            {"frame": np.arange(self.n_frames), "drift_x_nm": self.drift_x_nm, "drift_y_nm": self.drift_y_nm}
        )

    def at(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drift (dx, dy) in nm at the given frames (clipped to the table)."""
        f = np.clip(np.asarray(frames, dtype=np.int64), 0, self.n_frames - 1)
        return self.drift_x_nm[f], self.drift_y_nm[f]


def apply_drift(locs: Localizations, drift: DriftResult) -> Localizations:
    """Subtract the drift of each localization's frame: the corrected table (a copy).

    The table's ``meta["postprocessing"]`` list gains a ``drift`` entry.
    """
    dx, dy = drift.at(locs.frames)
    out = locs.copy()
    out.df["x_nm"] = out["x_nm"] - dx
    out.df["y_nm"] = out["y_nm"] - dy
    out.meta.setdefault("postprocessing", []).append({"step": "drift", "method": drift.method, **_plain(drift.info)})
    return out


def _plain(d: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items() if not isinstance(v, np.ndarray)}

