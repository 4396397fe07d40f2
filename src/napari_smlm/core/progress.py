"""What a long-running core generator reports: one vocabulary for every ``iter_*``.

Every typed update (``PredictUpdate``, ``TrainUpdate``, ``BenchmarkUpdate``, ...) carries a
``kind`` from :class:`UpdateKind`. It is a ``str`` enum, so ``u.kind == "batch"`` keeps working
for scripts and JSON gets the plain word, but a typo in a consumer (``UpdateKind.BACTH``) is an
``AttributeError`` instead of a branch that silently never runs.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["UpdateKind"]


class UpdateKind(str, Enum):
    """Kinds of progress updates yielded by the core generators."""

    START = "start"  #: a unit of work begins (a model in a benchmark)
    BATCH = "batch"  #: frames processed (inference)
    STEP = "step"  #: an optimiser step (training)
    EPOCH = "epoch"  #: a validation pass (training)
    ROW = "row"  #: a finished result row (benchmark)
    SKIPPED = "skipped"  #: a method that could not run; why in the update's message
    DONE = "done"  #: the last update, with the full result

    def __str__(self) -> str:  # f-strings and logs show the word, not "UpdateKind.BATCH"
        return self.value
