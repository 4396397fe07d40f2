"""Errors raised by the file readers and writers."""

from __future__ import annotations

import os

__all__ = ["SMLMFileError"]


class SMLMFileError(ValueError):
    """A file could not be read (or written) as the expected SMLM format.

    Every reader in :mod:`napari_smlm.core.io` raises only this type for bad input;
    the low-level exception (tifffile, h5py, pandas, yaml ...) is chained as
    ``__cause__``.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file (or pattern / directory).
    problem : str
        What is wrong, in words a user can act on.

    Attributes
    ----------
    path : str
        The offending file as a string.
    problem : str
        The description of the problem.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        self.problem = str(problem)
        super().__init__(self.path, self.problem)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"

    def __reduce__(self):
        # ValueError pickles its args; keep (path, problem) so the error crosses processes.
        return (type(self), (self.path, self.problem))
