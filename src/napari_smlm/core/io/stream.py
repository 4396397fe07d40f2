"""Localizations streamed to disk: an appendable, resumable Picasso HDF5 writer.

:class:`LocStreamWriter` writes the Picasso layout of
:func:`~napari_smlm.core.io.formats.picasso.write_picasso_hdf5` (``/locs`` compound table in
camera pixels + the ``<stem>.yaml`` sidecar) one chunk of frames at a time, so a localization
run never holds its whole table in memory.

Crash safety
------------
* While a run is in progress it writes ``<stem>.partial.hdf5`` (+ ``.partial.yaml``), never the
  final name; the final name appears (by ``os.replace``) only when the run ends — completed or
  cancelled. A file the user already has is therefore never replaced by a half-done run.
* Each chunk is appended by opening the file, resizing ``/locs``, writing the rows, flushing, then
  updating the attributes ``last_frame_done`` (absolute, exclusive: the next frame to process) and
  ``n_rows``, and closing it. Between chunks the file is closed and consistent: a SIGKILL or crash
  leaves a valid Picasso file holding every completed chunk. Rows past ``n_rows`` (a chunk whose
  progress record was not yet written) are cut off on resume, so no localization is duplicated.
  HDF5 is not journaled: a kill inside the few milliseconds of the write itself could in principle
  damage the file (not seen in our kill tests). HDF5's SWMR mode was tried and rejected: after a
  SIGKILL its files open only in SWMR-read mode (not in Picasso) until ``h5clear`` is run.
* The YAML sidecar is rewritten atomically at start, at every chunk and at the end; it carries
  ``Frames`` and ``napari-smlm frames done``.
* The running super-resolved image (sum over frames, model grid) is stored in the dataset
  ``/napari_smlm_sr`` at every chunk so a resumed run continues the same image. Picasso ignores it.

Why HDF5 and not Parquet: h5py is already a dependency, Picasso reads the result directly
(``/locs`` + YAML is its native format), an HDF5 dataset is appendable in place and its rows can be
cut back after a crash; a Parquet file is immutable once its footer is written, so streaming
needs one file per chunk plus a manifest, and pyarrow would be a new ~100 MB dependency.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from ..localizations import Localizations
from .errors import SMLMFileError
from .formats import _common as c
from .formats.picasso import (
    _PICASSO_3D, _PICASSO_CORE, _PICASSO_FILLED_KEY, _PICASSO_INT_FIELDS, COLUMNS, _from_nm, picasso_yaml_path,
    provenance_entry,
)
from .safe import atomic_path

__all__ = ["LocStreamWriter", "StreamProgress", "partial_path", "read_progress"]

log = logging.getLogger(__name__)

SR_DATASET = "napari_smlm_sr"
_ATTR_RUN = "napari_smlm_run"


def partial_path(path: str | os.PathLike) -> Path:
    """Where a run writing ``path`` keeps its in-progress file: ``<stem>.partial<suffix>``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.partial{p.suffix}")


class StreamProgress(dict):
    """Progress record of a streamed file: ``start``, ``stop``, ``last_frame_done``, ``n_rows``, ``run``."""

    @property
    def complete(self) -> bool:
        return int(self["last_frame_done"]) >= int(self["stop"])


def read_progress(path: str | os.PathLike) -> StreamProgress | None:
    """The progress record of a streamed HDF5 (``None`` when ``path`` is not one).

    Returns
    -------
    StreamProgress or None
        ``start``/``stop`` (frame range of the run, exclusive stop), ``last_frame_done`` (the next
        frame to process, absolute), ``n_rows`` (localizations of the completed frames) and ``run``
        (the run's parameters as a dict).
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with h5py.File(p, "r") as f:
            a = f.attrs
            if "last_frame_done" not in a:
                return None
            return StreamProgress(
                start=int(a["start"]), stop=int(a["stop"]), last_frame_done=int(a["last_frame_done"]),
                n_rows=int(a["n_rows"]), run=json.loads(a.get(_ATTR_RUN, "{}")),
            )
    except (OSError, ValueError, KeyError) as exc:
        raise SMLMFileError(p, f"cannot read the progress of this streamed file: {exc}") from exc


def _schema(columns: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Picasso fields for a table with ``columns`` (fixed for the whole run) and the placeholder fields."""
    have = set(columns)
    filled = [f for f in ("photons", "bg") if COLUMNS[f][0] not in have]
    if not ({"psf_sigma_x_nm", "psf_sigma_nm"} & have):
        filled.append("sx")
    if not ({"psf_sigma_y_nm", "psf_sigma_nm"} & have):
        filled.append("sy")
    if not ({"sigma_x_nm", "sigma_y_nm"} & have):
        filled += ["lpx", "lpy"]
    fields = list(_PICASSO_CORE)
    for field, dtype in _PICASSO_3D:  # z and lpz (nm), as the one-shot writer
        if COLUMNS[field][0] in have:
            fields.append((field, dtype))
    consumed = {"frame", "psf_sigma_nm"} | {ours for ours, _ in COLUMNS.values()}
    taken = {f for f, _ in fields}
    for col in columns:
        if col in consumed:
            continue
        name = c.unique(str(col), taken)
        fields.append((name, _PICASSO_INT_FIELDS.get(name, "<f4")))
    return fields, filled


def _records(locs: Localizations, fields: list[tuple[str, str]], px: float) -> np.ndarray:
    """``locs`` as a Picasso record array with exactly ``fields`` (same conversions as the writer)."""
    df = locs.df
    n = len(df)

    def get(col: str) -> np.ndarray | None:
        return df[col].to_numpy(dtype=np.float64) if col in df else None

    nm = {f: get(ours) for f, (ours, _) in COLUMNS.items()}
    nm["photons"] = nm["photons"] if nm["photons"] is not None else np.zeros(n)
    nm["bg"] = nm["bg"] if nm["bg"] is not None else np.zeros(n)
    sn = get("psf_sigma_nm")
    for k in ("sx", "sy"):
        nm[k] = nm[k] if nm[k] is not None else sn if sn is not None else np.full(n, px)
    if nm["lpx"] is None:
        nm["lpx"] = nm["lpy"]
    if nm["lpy"] is None:
        nm["lpy"] = nm["lpx"]
    if nm["lpx"] is None:
        scale = 1.0 / np.sqrt(np.maximum(nm["photons"], 1.0)) if "photons" in df else 0.1
        nm["lpx"], nm["lpy"] = nm["sx"] * scale, nm["sy"] * scale
    rec = np.empty(n, dtype=fields)
    rec["frame"] = df["frame"].to_numpy()
    core = {f for f, _ in _PICASSO_CORE} | {f for f, _ in _PICASSO_3D}
    for name, _ in fields:
        if name == "frame":
            continue
        if name in core:
            rec[name] = _from_nm(nm[name], COLUMNS[name][1], px)
        else:
            rec[name] = df[name].to_numpy()
    return rec


class LocStreamWriter:
    """Append localizations chunk by chunk to a Picasso HDF5; resumable after a crash.

    Parameters
    ----------
    path : path
        The final ``.hdf5`` (Picasso: ``*_locs.hdf5``). Work goes to :func:`partial_path` until
        :meth:`close`.
    columns : list of str
        Columns of every chunk (the model's output columns; fixes the HDF5 table's fields).
    pixel_size_nm : float
        Camera pixel size (nm).
    image_shape : (int, int)
        (Height, Width) of the movie, camera px.
    n_frames : int
        Movie length (frames).
    start, stop : int
        Frame range this run localizes (absolute, exclusive stop).
    run : dict, optional
        JSON-able run parameters (model, threshold, movie ...): a resume with different ones is refused.
    sr_shape : (int, int), optional
        Shape of the running super-resolved image, stored in ``/napari_smlm_sr``.
    sr_pixel_size_nm : float, optional
    resume : bool
        Continue the partial file (or an incomplete final file) left by an earlier run.
    source : str, optional
        The movie file (the YAML's ``Source``).
    pixel_size_source : str, optional
        Where ``pixel_size_nm`` came from (:func:`~napari_smlm.core.io.pixel_size.run_pixel_size`); the
        YAML says so when it was assumed.

    Attributes
    ----------
    frames_done : int
        The next frame to process (absolute).
    n_rows : int
        Localizations written.
    sr_image : np.ndarray or None
        Running super-resolved image (restored on resume).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        columns: list[str],
        pixel_size_nm: float,
        image_shape: tuple[int, int],
        n_frames: int,
        start: int = 0,
        stop: int | None = None,
        run: dict | None = None,
        sr_shape: tuple[int, int] | None = None,
        sr_pixel_size_nm: float | None = None,
        resume: bool = False,
        source: str | None = None,
        pixel_size_source: str | None = None,
    ):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.px = float(pixel_size_nm)
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.n_frames = int(n_frames)
        self.start = int(start)
        self.stop = self.n_frames if stop is None else int(stop)
        self.run = json.loads(json.dumps(run or {}, default=str))
        self.fields, self.filled = _schema(list(columns))
        self.source = source
        self.pixel_size_source = pixel_size_source
        self.sr_pixel_size_nm = sr_pixel_size_nm
        self.sr_image: np.ndarray | None = np.zeros(sr_shape, np.float32) if sr_shape is not None else None
        self.frames_done = self.start
        self.n_rows = 0
        self.closed = False
        if resume and self._resume():
            return
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.partial) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("locs", shape=(0,), maxshape=(None,), dtype=self.fields, chunks=(16384,))
                if self.sr_image is not None:
                    d = f.create_dataset(SR_DATASET, data=self.sr_image)
                    d.attrs["pixel_size_nm"] = float(sr_pixel_size_nm or 0.0)
                f.attrs.update(start=self.start, stop=self.stop, n_frames=self.n_frames, last_frame_done=self.start,
                               n_rows=0, **{_ATTR_RUN: json.dumps(self.run)})
        self._write_yaml()

    # ------------------------------------------------------------------ resume
    def _resume(self) -> bool:
        src = self.partial if self.partial.exists() else self.path if self.path.exists() else None
        if src is None:
            log.info("--resume: nothing to resume at %s; starting from frame %d", self.partial, self.start)
            return False
        prog = read_progress(src)
        if prog is None:
            raise SMLMFileError(src, "cannot resume: not a file written by a streamed localize run (no progress record)")
        for key, mine in (("start", self.start), ("stop", self.stop)):
            if prog[key] != mine:
                raise SMLMFileError(src, f"cannot resume: it covers frames {prog['start']}:{prog['stop']}, this run {self.start}:{self.stop}")
        diff = sorted(k for k in set(prog["run"]) | set(self.run) if prog["run"].get(k) != self.run.get(k))
        if diff:
            raise SMLMFileError(src, f"cannot resume: it was made with other parameters ({', '.join(diff)} differ)")
        if src == self.path:  # an incomplete (cancelled) final file: continue it under the partial name
            os.replace(self.path, self.partial)
            y = picasso_yaml_path(self.path)
            if y.exists():
                os.replace(y, picasso_yaml_path(self.partial))
        with h5py.File(self.partial, "a") as f:
            ds = f["locs"]
            if ds.dtype != np.dtype(self.fields):
                raise SMLMFileError(src, f"cannot resume: its table has fields {ds.dtype.names}, this model writes {np.dtype(self.fields).names}")
            if ds.shape[0] > prog["n_rows"]:  # a chunk written but not recorded: redo it
                log.info("%s: dropping %d rows of an unrecorded chunk", self.partial, ds.shape[0] - prog["n_rows"])
                ds.resize((prog["n_rows"],))
            if self.sr_image is not None and SR_DATASET in f:
                self.sr_image = f[SR_DATASET][()].astype(np.float32)
        self.frames_done, self.n_rows = prog["last_frame_done"], prog["n_rows"]
        log.info("resuming %s at frame %d (%d localizations kept)", self.partial, self.frames_done, self.n_rows)
        self._write_yaml()
        return True

    # ------------------------------------------------------------------ writing
    def append(self, locs: Localizations, frames_done: int, sr_image: np.ndarray | None = None) -> None:
        """Append one chunk: the localizations of frames ``self.frames_done .. frames_done``.

        Parameters
        ----------
        locs : Localizations
            This chunk's table (frames within the chunk).
        frames_done : int
            Next frame to process after this chunk (absolute, exclusive).
        sr_image : np.ndarray, optional
            This chunk's super-resolved image (added to the running one).
        """
        if self.closed:
            raise RuntimeError("LocStreamWriter is closed")
        if frames_done < self.frames_done:
            raise ValueError(f"chunks must come in frame order: got frames up to {frames_done} after {self.frames_done}")
        rec = _records(locs, self.fields, self.px)
        if sr_image is not None and self.sr_image is not None:
            self.sr_image += sr_image
        try:
            # no HDF5 file lock: a viewer that has the partial file open must not stop the run
            with h5py.File(self.partial, "a", locking=False) as f:
                ds = f["locs"]
                n = ds.shape[0]
                if n != self.n_rows:
                    ds.resize((self.n_rows,))
                    n = self.n_rows
                if len(rec):
                    ds.resize((n + len(rec),))
                    ds[n:] = rec
                if self.sr_image is not None:
                    f[SR_DATASET][...] = self.sr_image
                f.flush()  # rows on disk before the record that claims them
                f.attrs["last_frame_done"] = int(frames_done)
                f.attrs["n_rows"] = int(n + len(rec))
        except OSError as exc:
            raise SMLMFileError(self.partial, f"cannot append localizations: {exc}") from exc
        self.frames_done = int(frames_done)
        self.n_rows = n + len(rec)
        self._write_yaml()

    def _write_yaml(self, path: Path | None = None) -> None:
        info: dict[str, Any] = {
            "Byte Order": "<",
            "Data Type": "uint16",
            "Frames": self.n_frames,
            "Height": self.image_shape[0],
            "Width": self.image_shape[1],
            "Pixelsize": self.px,
            "Generated by": f"napari-smlm {c.package_version()}",
            "napari-smlm frames done": [self.start, self.frames_done],
            "napari-smlm complete": self.frames_done >= self.stop,
        }
        if self.source:
            info["Source"] = self.source
        if self.filled:
            info[_PICASSO_FILLED_KEY] = list(self.filled)
        # model, camera, threshold ...; where the pixel size came from (said in words when it was assumed)
        info.update(provenance_entry({**self.run, "pixel_size_nm": self.px, "pixel_size_source": self.pixel_size_source}))
        with atomic_path(picasso_yaml_path(path or self.partial)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            yaml.safe_dump_all([info], fh, default_flow_style=False, sort_keys=False, allow_unicode=True)

    def close(self) -> Path:
        """Give the file its final name (complete or not: its progress record tells). Returns the path."""
        if self.closed:
            return self.path
        self._write_yaml()
        os.replace(picasso_yaml_path(self.partial), picasso_yaml_path(self.path))
        os.replace(self.partial, self.path)
        self.closed = True
        log.info("wrote %d localizations (frames %d-%d of %d) to %s", self.n_rows, self.start, self.frames_done - 1,
                 self.stop, self.path)
        return self.path

    @property
    def complete(self) -> bool:
        return self.frames_done >= self.stop
