"""The Training widget's two small matplotlib plots: the simulated-vs-movie preview and the live loss curves.

matplotlib is imported on first use (light, no extra dependency).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["figure", "LossPlot", "draw_preview"]


def figure(width: float, height: float, n: int = 1):
    """A small matplotlib canvas for Qt (imported on first use)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(int(height * 80))
    return fig, axes, canvas


def draw_preview(axes: list, canvas: Any, sim: np.ndarray, real: np.ndarray | None) -> None:
    """A simulated frame next to a movie frame (or a hint to choose one), on the same ADU scale."""
    h, w = sim.shape
    both = sim if real is None else np.concatenate([sim.ravel(), real[:h, :w].ravel()])
    vmin, vmax = np.percentile(both, [0.5, 99.8])
    for ax in axes:
        ax.clear()
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].imshow(sim, cmap="gray", vmin=vmin, vmax=vmax)
    axes[0].set_title(f"simulated, median {np.median(sim):.0f} ADU", fontsize=8)
    if real is not None:
        axes[1].imshow(real[:h, :w], cmap="gray", vmin=vmin, vmax=vmax)
        axes[1].set_title(f"movie, median {np.median(real):.0f} ADU", fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "choose a movie\nto compare", ha="center", va="center", fontsize=8)
    canvas.draw_idle()


class LossPlot:
    """Training loss per step and validation loss per epoch, against the step.

    ``fig``, ``ax`` and ``canvas`` are the matplotlib objects; ``loss_line`` and ``val_line``
    the two curves (new ones after each :meth:`reset`).
    """

    def __init__(self, width: float = 4.2, height: float = 2.4):
        self.fig, (self.ax,), self.canvas = figure(width, height)
        self.reset()

    def reset(self) -> None:
        """Empty curves (a new run)."""
        ax = self.ax
        ax.clear()
        (self.loss_line,) = ax.plot([], [], lw=0.8, color="tab:blue", alpha=0.7, label="training")
        (self.val_line,) = ax.plot([], [], "o-", ms=3, color="tab:orange", label="validation")
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
        self.canvas.draw_idle()

    def update(self, history: dict[str, list]) -> None:
        """Redraw from ``history`` (lists ``step``, ``loss``, ``val_step``, ``val_loss``); log scale past a 20x range."""
        self.loss_line.set_data(history["step"], history["loss"])
        self.val_line.set_data(history["val_step"], history["val_loss"])
        ax = self.ax
        vals = [v for v in history["loss"] + history["val_loss"] if v is not None and math.isfinite(v)]
        if vals:
            if min(vals) > 0 and max(vals) / min(vals) > 20:
                ax.set_yscale("log")
            ax.relim()
            ax.autoscale_view()
        self.canvas.draw_idle()
