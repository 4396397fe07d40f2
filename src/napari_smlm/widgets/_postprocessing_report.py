"""How the Post-processing widget shows a result: the summary lines and the drift / FRC plots.

Takes a :class:`~napari_smlm.core.postprocessing.PostprocessResult`; every number shown is one
the core computed. No Qt here: the text goes to a label, the plots to a matplotlib figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["summary_text", "plot_result"]


def summary_text(r: Any) -> str:
    """One line per step that ran: localizations left, sub-pixel deviation, drift, NeNA, FRC."""
    n_in = getattr(r, "n_input", None)
    n = len(r.localizations)
    lines = [(f"{n_in} → " if n_in is not None and n_in != n else "") + f"{n} localizations"]
    if r.pixel_locking is not None:
        b, a = r.pixel_locking.before, r.pixel_locking.after
        lines.append(f"sub-pixel deviation x {b.deviation_x:.2f} → {a.deviation_x:.2f}, y {b.deviation_y:.2f}"
                     f" → {a.deviation_y:.2f} (noise {b.noise:.2f})"
                     + "".join("\n" + w for w in r.pixel_locking.warnings))
    if r.drift is not None:
        lines.append(f"drift ({r.drift.method}): up to {r.drift.max_displacement_nm:.1f} nm")
        if r.drift.info.get("warning"):
            lines.append(f"warning: {r.drift.info['warning']}")
    if r.nena is not None:
        lines.append(f"NeNA precision: {r.nena.sigma_nm:.1f} nm")
    if r.frc is not None:
        lines.append(f"FRC resolution: {r.frc.describe()}")
    return "\n".join(lines)


def plot_result(figure: Any, r: Any) -> None:
    """Draw the drift table (with RCC's segment drifts) and the FRC curve, one panel each, on ``figure``."""
    figure.clear()
    panels = [p for p in (r.drift, r.frc) if p is not None]
    for k, p in enumerate(panels):
        ax = figure.add_subplot(len(panels), 1, k + 1)
        if p is r.drift:
            f = np.arange(p.n_frames)
            ax.plot(f, p.drift_x_nm, label="x")
            ax.plot(f, p.drift_y_nm, label="y")
            if len(p.segment_frames):
                ax.plot(p.segment_frames, p.segment_drift_nm[:, 0], "o", ms=3, color="C0")
                ax.plot(p.segment_frames, p.segment_drift_nm[:, 1], "o", ms=3, color="C1")
            ax.set_xlabel("frame")
            ax.set_ylabel("drift (nm)")
            ax.legend(frameon=False, fontsize=8)
        else:
            ax.plot(p.frequency_per_nm * 1000, p.frc, color="0.7", lw=0.8)
            ax.plot(p.frequency_per_nm * 1000, p.frc_smooth, color="C3")
            ax.axhline(p.threshold, color="k", lw=0.6, ls="--")
            ax.set_xlabel("spatial frequency (1/µm)")
            ax.set_ylabel("FRC")
            ax.set_title(f"{p.resolution_nm:.1f} nm", fontsize=9)
