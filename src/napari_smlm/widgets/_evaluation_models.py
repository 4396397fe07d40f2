"""The Evaluation widget's model comparison: every chosen model on a movie layer, scored against the ground truth.

:class:`ModelComparison` is a mixin of :class:`~._evaluation.EvaluationWidget` (it uses the widget's
pickers, tolerance, run cycle and the controls its ``__init__`` makes: ``movie_picker``,
``models_edit``, ``benchmark_button``, ``benchmark_stop``, ``status``, ``status_label``,
``benchmark_table``). The work is :func:`napari_smlm.core.benchmark.iter_benchmark` on a worker; one row
per model as it finishes. No numerics here.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _layers
from ..core.progress import UpdateKind
from ._base import notify_error

__all__ = ["ModelComparison", "BENCH_SHOWN"]


def _fmt(v: Any, digits: int = 3) -> str:
    """``digits`` significant digits; a whole number once it has more digits (1110 frames/s, not 1.11e+03)."""
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        text = f"{v:.{digits}g}"
        return f"{v:.0f}" if "e+" in text else text
    return str(v)


#: Columns of the model comparison shown in the dock: (header, benchmark column, significant digits, header tooltip).
BENCH_SHOWN = (
    ("model", "model", None, "model (or baseline)"),
    ("JI %", "jaccard_percent_greedy", 3, "Jaccard index (%), greedy matching"),
    ("RMSE nm", "rmse_lateral_nm_greedy", 3, "lateral RMSE of the matches (nm)"),
    ("eff. %", "efficiency_lateral_greedy", 3, "lateral efficiency (%)"),
    ("SSIM", "ssim", 3, "SSIM of its super-resolved image against the ground truth rendered on its grid"),
    ("frames/s", "frames_per_s", 3, "frames per second of the whole run, on this machine"),
)


class ModelComparison:
    """Compare models on a movie layer (a mixin of :class:`~._evaluation.EvaluationWidget`)."""

    # ================================================================ models
    def compare_models(self) -> bool:
        """Run the chosen models on the movie layer and score each (``core.benchmark``) on a worker."""
        from ..core.benchmark import iter_benchmark

        movie, gt_layer = self.movie_picker.value, self.gt_picker.value
        if self.status.running:
            return False
        if movie is None or gt_layer is None or movie.rgb or movie.data.ndim not in (2, 3):
            notify_error("Choose a raw movie (image layer, frames × height × width) and a ground-truth points layer.")
            return False
        gt = _layers.layer_to_localizations(gt_layer)
        px = movie.metadata.get("pixel_size_nm") or gt.meta.get("pixel_size_nm")
        try:  # models are checked before the worker starts: a typo is a message, not a failed run
            gen = iter_benchmark(movie.data, gt, self.models_edit.text().strip() or "all",
                                 pixel_size_nm=px, tol_lateral_nm=self.tolerance.value(), baseline="auto")
            first = next(gen)
        except (ValueError, KeyError) as exc:
            notify_error(str(exc))
            return False
        self.benchmark_rows = []
        self._fill_benchmark_table()

        def updates():
            yield first
            yield from gen

        self.start_run(updates(), self._on_benchmark_update, f"Comparing models on '{movie.name}'…")
        return True

    def _on_state_changed(self, state: Any) -> None:
        running = self.status.running
        self.status_label.setVisible(True)  # hidden (no empty row) until the first comparison
        self.benchmark_button.setEnabled(not running)
        self.benchmark_stop.setEnabled(running)

    def _on_benchmark_update(self, u: Any) -> None:
        if u.kind == UpdateKind.ROW:
            self.benchmark_rows.append(u.row)
            self._fill_benchmark_table()
        elif u.kind == UpdateKind.SKIPPED:
            self.status_label.setText(u.message)
        elif u.kind == UpdateKind.START:
            self.status_label.setText(f"Running {u.model} ({u.index + 1}/{u.n_models})…")

    def _fill_benchmark_table(self) -> None:
        t = self.benchmark_table
        t.setVisible(bool(self.benchmark_rows) or self.status.running)
        t.set_rows([[str(row.get(key)) if digits is None else _fmt(row.get(key), digits) for _, key, digits, _ in BENCH_SHOWN]
                    for row in self.benchmark_rows])
