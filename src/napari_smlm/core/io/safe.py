"""Writing files without ever losing what the user already has.

Two rules, one home:

* **Atomic replace.** Every writer writes to a temporary file in the destination folder
  and renames it over the destination only once the content is complete
  (:func:`atomic_path`). A crash, SIGINT, SIGKILL or full disk mid-write leaves the old
  file untouched (and no half-written new one).
* **Never over an input, never over an existing file unless asked.** Commands call
  :func:`check_output` with the inputs they read; writing onto one of them is refused
  even with ``overwrite=True``, and an existing file is refused unless ``overwrite``.

No torch, no Qt.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import SMLMFileError

__all__ = [
    "OutputExistsError", "atomic_path", "check_output", "check_outputs", "check_table_output", "companion_files", "same_file",
]


class OutputExistsError(SMLMFileError):
    """An output path would replace an input or an existing file."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (resolving links; ``b`` may not exist)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    what: str = "output",
    remedy: str = "choose another name or pass --overwrite",
) -> Path:
    """Refuse an output that would destroy data; return it as a :class:`Path`.

    Parameters
    ----------
    path : str or os.PathLike
        The file about to be written.
    inputs : iterable of path-like
        Files the command reads. Writing onto one of them is always refused.
    overwrite : bool
        Allow replacing an existing file that is not an input.
    what : str
        The parameter name shown in the error (e.g. ``"--output"``).
    remedy : str
        What the message tells the user to do about an existing file: the CLI's default names
        ``--overwrite``; a widget (which has no such option) says what to do in the GUI.

    Raises
    ------
    OutputExistsError
        ``path`` is one of ``inputs``, is an existing directory, or exists and
        ``overwrite`` is false.
    SMLMFileError
        The folder ``path`` would be written in cannot be written (read-only, no
        permission, or a file stands where a folder is needed): refused before any work.
    """
    p = Path(path)
    for inp in inputs:
        if inp is None:
            continue
        if same_file(p, inp):
            raise OutputExistsError(p, f"{what} is also an input of this command; choose another file name")
    if p.is_dir():
        raise OutputExistsError(p, f"{what} is an existing folder, not a file")
    if p.exists() and not overwrite:
        raise OutputExistsError(p, f"{what} already exists; {remedy}")
    _check_writable_folder(p, what)
    return p


def _check_writable_folder(p: Path, what: str) -> None:
    """Refuse ``p`` when its folder (or the nearest one that exists) cannot take a new file.

    Checked before any work so that an hour-long run does not end in "read-only file system".
    ``os.access`` honours read-only mounts even for root; a folder still to be created needs its
    nearest existing ancestor to be a writable folder.
    """
    parent = p.parent if str(p.parent) else Path(".")
    missing = []
    while not parent.exists():
        missing.append(parent.name)
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise SMLMFileError(p, f"{what}: {parent} is a file, not a folder")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        where = f"folder {parent}" + (f" (to create {'/'.join(reversed(missing))} in it)" if missing else "")
        raise SMLMFileError(p, f"{what}: cannot write in {where}: read-only or no permission; "
                               "choose another folder")


def companion_files(path: str | os.PathLike) -> list[Path]:
    """Files a localization writer creates beside ``path`` (Picasso's ``.yaml`` next to ``.hdf5``)."""
    p = Path(path)
    return [p.with_suffix(".yaml")] if p.suffix.lower() in (".hdf5", ".h5") else []


def check_table_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    what: str = "the table",
    remedy: str = "choose another name",
) -> Path:
    """:func:`check_output` for a localization table a save dialog asked about, and for its sidecars.

    A dialog asks about the table only, so a sidecar (:func:`companion_files`: Picasso's ``.yaml``)
    is replaced only together with the existing table it belongs to (``overwrite`` and the table is
    there); any other file at the sidecar's name is refused, as the CSV run record's rule
    (:func:`~napari_smlm.core.io.run_record.check_localize_record`).
    """
    p = check_output(path, overwrite=overwrite, what=what, remedy=remedy)
    replacing = overwrite and p.is_file()
    for c in companion_files(p):
        check_output(c, overwrite=replacing, what=f"the sidecar of {p.name}",
                     remedy="choose another name for the table, or move that file")
    return p


def check_outputs(
    outputs: Iterable[tuple[str | os.PathLike | None, str]],
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
) -> list[Path]:
    """:func:`check_output` for every ``(path, what)`` of a command, before any work starts.

    Also refuses two outputs of the same command naming one file. ``None`` paths are skipped.

    Raises
    ------
    OutputExistsError
        The first output that would destroy data.
    """
    inputs = [i for i in inputs if i is not None]
    done: list[tuple[Path, str]] = []
    for path, what in outputs:
        if path is None:
            continue
        p = check_output(path, inputs=inputs, overwrite=overwrite, what=what)
        for q, qwhat in done:
            if same_file(p, q):
                raise OutputExistsError(p, f"{what} and {qwhat} are the same file; choose two names")
        done.append((p, what))
    return [p for p, _ in done]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Use it around any writer that takes a file name (tifffile, h5py, torch.save, pandas)::

        with atomic_path(out) as tmp:
            tifffile.imwrite(tmp, image)

    On an exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left exactly as it was.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part" + p.suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # content on disk before the rename makes it visible
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
