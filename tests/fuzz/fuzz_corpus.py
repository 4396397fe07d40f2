"""A seeded corpus of bad inputs and faults, and the harness that classifies what each one does.

Every case is made on the fly in a fresh folder from a few small seeded fixtures (a 12-frame
32×32 simulated movie, its ground truth, a localization table, the shipped decode checkpoint)
and run against one surface:

* ``cli``: ``python -m napari_smlm.cli ...`` in a subprocess, with a timeout (and optionally a
  signal sent while it runs);
* ``api``: a Python call;
* ``reader``: the napari reader's ``get_reader`` + reader functions (no viewer needed).

Each run is classified (:data:`CLASSES`); only ``valid`` and ``clear error`` pass. Every file
that existed before a case is hashed before and after: a change the case did not allow is
``data loss`` whatever the exit status.

Used by ``tests/fuzz/test_fuzz.py`` and ``scripts/fuzz_report.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = (
    "valid",  # did what it should (or stopped cleanly on a signal, results kept)
    "clear error",  # refused with a one-line message (CLI: exit 1/2/130 and "error:"; API: ValueError family)
    "traceback",  # a Python traceback / an exception of an unexpected type / a crash
    "hang",  # ran past its timeout
    "silent acceptance",  # invalid input accepted without an error
    "refused valid input",  # a valid input rejected
    "data loss",  # a pre-existing file changed or vanished, or a temporary file was left
)
PASSING = ("valid", "clear error")

#: Exception types a clear API error may have (ValueError covers SMLMFileError,
#: CheckpointError, ParameterError, OutputExistsError).
CLEAR_EXCEPTIONS = (ValueError, FileNotFoundError)
#: Messages that are errors but do not say what is wrong.
CRYPTIC = ("range() arg", "need at least one array", "could not convert", "index out of", "NoneType", "has no attribute")

SEED = 20261130

#: CLI cases in the default (quick) run: each fails before torch is imported (about 1 s each);
#: the rest of the CLI corpus (10-60 s each on a loaded 2-core machine) is marked slow.
QUICK_CLI = {
    "localize-o-existing-gt", "localize-render-onto-movie", "render-onto-its-input", "render-existing-png",
    "evaluate-json-onto-gt", "localize-folder-without-tiffs", "render-outlier-cli",
}


@dataclass
class Case:
    """One fuzz case.

    ``make(tmp)`` builds the inputs in ``tmp`` (fixtures are already copied there) and returns
    the CLI arguments (list of str), the API callable, or the path for the reader.
    ``expect`` is ``"valid"`` or ``"error"``; ``check(tmp, result)`` returns a problem string
    for a run that exited 0 but did not do the right thing (e.g. localizations outside the
    field of view), or None. ``may_change`` lists files (relative) the case may rewrite.
    """

    id: str
    surface: str
    category: str
    expect: str
    make: Callable[[Path], Any]
    quick: bool = False
    may_change: tuple[str, ...] = ()
    check: Callable[[Path, Any], str | None] | None = None
    signal: tuple[int, ...] = ()  # signals sent, in order, while the command runs
    signal_after: Callable[[Path], bool] | float | str = 8.0  # seconds, a readiness test, or text awaited on stderr
    timeout: float = 180.0
    fsize_limit: int | None = None  # RLIMIT_FSIZE for the subprocess (a "full disk")


@dataclass
class Result:
    cls: str
    detail: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# =========================================================================== fixtures
def make_fixtures(folder: Path) -> Path:
    """The small seeded inputs every case starts from (made once, copied into each case)."""
    from napari_smlm.core.checkpoint import shipped_checkpoint_path
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io import write_movie, write_thunderstorm_csv
    from napari_smlm.core.simulate import simulate

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "ready").exists():
        return folder
    cfg = SimulationConfig(n_frames=12, height=32, width=32, density=1.5, seed=SEED % 1000)
    frames, gt = simulate(cfg)
    write_movie(folder / "movie.tif", frames, pixel_size_nm=cfg.pixel_size_nm)
    gt.meta.update(pixel_size_nm=cfg.pixel_size_nm, image_shape=(32, 32))
    write_thunderstorm_csv(folder / "gt.csv", gt)
    write_thunderstorm_csv(folder / "locs.csv", gt)
    shutil.copy(shipped_checkpoint_path("decode"), folder / "model.pt")
    (folder / "ready").write_text("1")
    return folder


def _src_dir() -> str:
    import napari_smlm

    return str(Path(napari_smlm.__file__).resolve().parents[1])


def _hash_tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


# =========================================================================== running
def run_case(case: Case, tmp: Path, fixtures: Path) -> Result:
    """Run ``case`` in the empty folder ``tmp`` and classify it."""
    for f in fixtures.iterdir():
        if f.name != "ready":
            shutil.copy(f, tmp / f.name)
    made = case.make(tmp)
    before = _hash_tree(tmp)
    t0 = time.perf_counter()
    if case.surface == "cli":
        res = _run_cli(case, tmp, made)
    elif case.surface == "api":
        res = _run_api(case, tmp, made)
    elif case.surface == "reader":
        res = _run_reader(case, tmp, made)
    else:
        raise ValueError(case.surface)
    res.seconds = time.perf_counter() - t0
    after = _hash_tree(tmp)
    changed = [k for k, h in before.items() if after.get(k) != h and k not in case.may_change]
    leftovers = [k for k in after if ".part" in k]
    if changed or leftovers:
        return Result("data loss", f"changed/removed {changed}, temporary files left {leftovers}; {res.detail}", res.returncode, res.seconds)
    if res.cls == "valid" and case.check is not None:
        problem = case.check(tmp, res)
        if problem:
            return Result("silent acceptance" if case.expect == "error" else "refused valid input", problem, res.returncode, res.seconds)
    return res


def _limit_fsize(limit: int):
    def pre():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def _run_cli(case: Case, tmp: Path, argv: list[str]) -> Result:
    env = {**os.environ, "PYTHONPATH": _src_dir(), "OMP_NUM_THREADS": "1", "NAPARI_SMLM_MAX_RENDER_GB": "1"}
    cmd = [sys.executable, "-m", "napari_smlm.cli", *argv]
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_limit_fsize(case.fsize_limit) if case.fsize_limit else None,
    )
    chunks: dict[str, list[str]] = {"out": [], "err": []}
    readers = [
        threading.Thread(target=lambda s=stream, k=key: chunks[k].extend(iter(s.readline, "")), daemon=True)
        for key, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for t in readers:
        t.start()
    t_start = time.perf_counter()
    if case.signal:
        ready = case.signal_after
        while proc.poll() is None and time.perf_counter() - t_start < case.timeout:
            if isinstance(ready, str) and ready in "".join(chunks["err"]):
                break
            if callable(ready) and ready(tmp):
                break
            if isinstance(ready, (int, float)) and time.perf_counter() - t_start >= ready:
                break
            time.sleep(0.1)
        for sig in case.signal:
            if proc.poll() is None:
                proc.send_signal(sig)
                time.sleep(0.3)
    try:
        proc.wait(timeout=max(1.0, case.timeout - (time.perf_counter() - t_start)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for t in readers:
            t.join(5)
        return Result("hang", f"no exit after {case.timeout:.0f} s; stderr: {''.join(chunks['err'])[-300:]}", None)
    for t in readers:
        t.join(5)
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    rc = proc.returncode
    tail = (err.strip().splitlines() or [""])[-1]
    if "Traceback (most recent call last)" in err:
        return Result("traceback", err[-600:], rc)
    if rc == 0 or (case.signal and rc == 130):
        if case.expect == "error" and not case.signal:
            return Result("silent acceptance", f"exit 0; stdout: {out[-300:]}", rc)
        return Result("valid", out[-200:], rc, extra={"stderr": err})
    if rc in (1, 2, 130) and "error" in err:
        if case.expect == "valid" or case.signal:
            return Result("refused valid input", tail, rc)
        return Result("clear error", tail, rc)
    return Result("traceback", f"exit {rc}: {err[-400:]}", rc)


def _classify_exception(case: Case, exc: BaseException) -> Result:
    msg = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, CLEAR_EXCEPTIONS) and str(exc) and not any(c in str(exc) for c in CRYPTIC):
        if case.expect == "valid":
            return Result("refused valid input", msg)
        return Result("clear error", msg)
    return Result("traceback", msg)


def _run_api(case: Case, tmp: Path, fn: Callable[[], Any]) -> Result:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fn()
    except Exception as exc:  # noqa: BLE001 - classified
        return _classify_exception(case, exc)
    if case.expect == "error":
        return Result("silent acceptance", f"returned {type(value).__name__}", extra={"value": value})
    return Result("valid", "", extra={"value": value})


def _run_reader(case: Case, tmp: Path, path: Any) -> Result:
    from napari_smlm._reader import get_localization_reader, get_movie_reader

    try:
        reader = get_movie_reader(path) or get_localization_reader(path)
        if reader is None:
            # napari then says only "no reader": fine for files that are not ours at all
            if case.expect == "decline":
                return Result("valid", "declined")
            return Result("silent acceptance" if case.expect == "error" else "refused valid input", "reader declined")
        layers = reader(path)
        for data, *_ in layers:
            if hasattr(data, "compute") and getattr(data, "ndim", 0) == 3:
                np.asarray(data[0])  # the first frame is what napari shows
    except Exception as exc:  # noqa: BLE001 - classified
        return _classify_exception(case, exc)
    if case.expect in ("error", "decline"):
        return Result("silent acceptance", f"opened as {len(layers)} layer(s)")
    return Result("valid", "", extra={"value": layers})


# =========================================================================== file makers
def _rng(tag: str) -> np.random.Generator:
    return np.random.default_rng([SEED, int.from_bytes(hashlib.sha1(tag.encode()).digest()[:4], "little")])


def _w(tmp: Path, name: str, data: bytes | str) -> Path:
    p = tmp / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def _tiff(tmp: Path, name: str, arr: np.ndarray, **kw) -> Path:
    import tifffile

    if arr.ndim == 3 and "photometric" not in kw and not kw.get("imagej"):
        kw["photometric"] = "minisblack"  # (3|4, H, W) would otherwise be written as RGB(A) planes
    tifffile.imwrite(tmp / name, arr, **kw)
    return tmp / name


def _truncated_tiff(tmp: Path) -> Path:
    data = (tmp / "movie.tif").read_bytes()
    return _w(tmp, "trunc.tif", data[: len(data) // 3])


def _csv_rows(tmp: Path, name: str, header: str, rows: list[str]) -> Path:
    return _w(tmp, name, header + "\n" + "\n".join(rows) + "\n")


TS = '"id","frame","x [nm]","y [nm]","intensity [photon]"'


def _ts(tmp: Path, name: str, cells: list[tuple]) -> Path:
    return _csv_rows(tmp, name, TS, [",".join(str(c) for c in r) for r in cells])


def _good_rows(n: int = 20, tag: str = "rows") -> list[tuple]:
    r = _rng(tag)
    return [(i + 1, int(r.integers(1, 5)), f"{r.uniform(100, 3000):.2f}", f"{r.uniform(100, 3000):.2f}", 1000) for i in range(n)]


class _Evil:
    """A pickle payload that would create a file if it were ever executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(tmp: Path) -> Path:
    p = tmp / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"format": "napari-smlm-checkpoint", "x": _Evil(str(tmp / "PWNED"))}, fh)
    return p


def _torch_evil_checkpoint(tmp: Path) -> Path:
    import torch

    p = tmp / "evil_torch.pt"
    torch.save({"format": "napari-smlm-checkpoint", "model": "decode", "x": _Evil(str(tmp / "PWNED"))}, p)
    return p


def _mutated_checkpoint(tmp: Path, name: str, config: dict | None = None, nan: bool = False) -> Path:
    import torch

    payload = torch.load(tmp / "model.pt", map_location="cpu", weights_only=True)
    if config:
        payload["model_config"] = {**payload["model_config"], **config}
    if nan:
        k = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
        payload["state_dict"][k] = payload["state_dict"][k].clone().fill_(float("nan"))
    torch.save(payload, tmp / name)
    return tmp / name


def _no_pwned(tmp: Path, res: Result) -> str | None:
    return "payload executed" if (tmp / "PWNED").exists() else None


# =========================================================================== checks
def _csv_ok(name: str, min_rows: int = 0, fov_nm: float | None = None):
    def check(tmp: Path, res: Result) -> str | None:
        from napari_smlm.core.io import read_localizations

        p = tmp / name
        if not p.is_file():
            return f"{name} not written"
        try:
            locs = read_localizations(p)
        except Exception as exc:  # noqa: BLE001
            return f"{name} unreadable: {exc}"
        if len(locs) < min_rows:
            return f"{name} has {len(locs)} rows < {min_rows}"
        if fov_nm is not None and len(locs):
            x, y = locs["x_nm"], locs["y_nm"]
            out = int(np.count_nonzero((x < 0) | (y < 0) | (x >= fov_nm) | (y >= fov_nm) | ~np.isfinite(x) | ~np.isfinite(y)))
            if out:
                return f"{out} of {len(locs)} localizations outside the {fov_nm:g} nm field of view"
        return None

    return check


def _movie_ok(folder: str, min_frames: int = 1):
    def check(tmp: Path, res: Result) -> str | None:
        from napari_smlm.core.io import open_movie, read_localizations

        try:
            m = open_movie(tmp / folder / "movie.tif")
            gt = read_localizations(tmp / folder / "ground_truth.csv")
        except Exception as exc:  # noqa: BLE001
            return f"unreadable result: {exc}"
        if m.shape[0] < min_frames:
            return f"{m.shape[0]} frames"
        if len(gt) and gt["frame"].max() >= m.shape[0]:
            return "ground truth beyond the frames written"
        return None

    return check


def _ckpt_ok(name: str):
    def check(tmp: Path, res: Result) -> str | None:
        from napari_smlm.core.checkpoint import load_checkpoint

        try:
            load_checkpoint(tmp / name)
        except Exception as exc:  # noqa: BLE001
            return f"{name}: {exc}"
        return None

    return check


def _all(*checks):
    def check(tmp: Path, res: Result) -> str | None:
        for c in checks:
            p = c(tmp, res)
            if p:
                return p
        return None

    return check


def _value_check(pred: Callable[[Any], str | None]):
    return lambda tmp, res: pred(res.extra.get("value"))


# =========================================================================== the corpus
def build_cases() -> list[Case]:
    """Every case, in a stable order (ids are unique)."""
    C: list[Case] = []

    def cli(id, category, expect, argv, quick=False, **kw):
        mk = argv if callable(argv) else (lambda tmp, a=argv: list(a))
        C.append(Case(id, "cli", category, expect, mk, quick=quick and id in QUICK_CLI, **kw))

    def api(id, category, expect, fn, quick=True, **kw):
        C.append(Case(id, "api", category, expect, fn, quick=quick, **kw))

    def reader(id, category, expect, mk, quick=True, **kw):
        C.append(Case(id, "reader", category, expect, mk, quick=quick, **kw))

    # ------------------------------------------------------------------ data loss (CLI)
    L = "data loss"
    cli("localize-o-existing-gt", L, "error", ["localize", "movie.tif", "-o", "gt.csv", "--device", "cpu"], quick=True)
    cli("localize-render-onto-movie", L, "error", ["localize", "movie.tif", "-o", "new.csv", "--render", "movie.tif"], quick=True)
    cli("localize-render-png-exists", L, "error", lambda t: (_w(t, "sr.png", b"png"), ["localize", "movie.tif", "-o", "n.csv", "--render", "sr.tif"])[1])
    cli("localize-output-equals-render", L, "error", ["localize", "movie.tif", "-o", "same.tif", "--render", "same.tif"])
    cli("render-onto-its-input", L, "error", ["render", "locs.csv", "-o", "locs.csv"], quick=True)
    cli("render-png-onto-input", L, "error", ["render", "locs.csv", "-o", "sr.tif", "--png", "locs.csv"])
    cli("render-existing-png", L, "error", lambda t: (_w(t, "sr.png", b"png"), ["render", "locs.csv", "-o", "sr.tif"])[1], quick=True)
    cli("evaluate-json-onto-gt", L, "error", ["evaluate", "gt.csv", "locs.csv", "--json", "gt.csv"], quick=True)
    cli("evaluate-json-existing", L, "error", lambda t: (_w(t, "m.json", "{}"), ["evaluate", "gt.csv", "locs.csv", "--json", "m.json"])[1])
    cli("train-o-movie", L, "error", ["train", "--model", "decode", "-o", "movie.tif", "--steps", "1"], quick=True)
    cli("train-o-equals-init", L, "error", ["train", "--model", "decode", "--init", "model.pt", "-o", "model.pt", "--steps", "1"])
    cli("train-o-onto-ground-truth", L, "error", ["train", "--model", "decode", "-o", "gt.csv", "--movie", "movie.tif", "--ground-truth", "gt.csv"])
    cli("simulate-existing-folder", L, "error",
        lambda t: ((t / "data").mkdir(), shutil.copy(t / "movie.tif", t / "data" / "movie.tif"), ["simulate", "-o", "data", "--frames", "3", "--size", "16", "16"])[2],
        quick=True)
    cli("simulate-existing-json-only", L, "error",
        lambda t: ((t / "data").mkdir(), _w(t / "data", "simulation.json", "{}"), ["simulate", "-o", "data", "--frames", "3", "--size", "16", "16"])[2])
    cli("simulate-config-is-output", L, "error",
        lambda t: ((t / "d").mkdir(), _w(t / "d", "simulation.json", "n_frames: 3\n"), ["simulate", "-o", "d", "--config", "d/simulation.json", "--overwrite"])[2])
    cli("demo-existing-folder", L, "error",
        lambda t: ((t / "demo").mkdir(), _w(t / "demo", "metrics.json", "{}"), ["demo", "-o", "demo", "--frames", "3"])[2])
    cli("localize-overwrite-allowed", L, "valid",
        lambda t: (_w(t, "old.csv", "x"), ["localize", "movie.tif", "-o", "old.csv", "--overwrite", "--device", "cpu"])[1],
        may_change=("old.csv",), check=_csv_ok("old.csv", 1))
    cli("simulate-overwrite-allowed", L, "valid",
        lambda t: ((t / "data").mkdir(), shutil.copy(t / "movie.tif", t / "data" / "movie.tif"),
                   ["simulate", "-o", "data", "--frames", "3", "--size", "16", "16", "--overwrite"])[2],
        may_change=("data/movie.tif",), check=_movie_ok("data", 3))
    cli("disk-full-localize-keeps-old-file", L, "error",
        lambda t: (shutil.copy(t / "locs.csv", t / "out.csv"),
                   ["localize", "movie.tif", "-o", "out.csv", "--overwrite", "--device", "cpu"])[1],
        fsize_limit=3000)
    cli("disk-full-train-keeps-old-checkpoint", L, "error",
        lambda t: (shutil.copy(t / "model.pt", t / "out.pt"),
                   ["train", "--model", "decode", "--init", "model.pt", "-o", "out.pt", "--overwrite", "--steps", "2",
                    "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "16", "--device", "cpu", "--threads", "1"])[1],
        fsize_limit=200_000)

    # ------------------------------------------------------------------ signals (CLI)
    S = "signal"
    long_movie = lambda t: _long_movie(t)  # noqa: E731
    cli("sigint-simulate-keeps-frames", S, "valid",
        ["simulate", "-o", "sim", "--frames", "200000", "--size", "32", "32", "--chunk", "64"],
        signal=(signal.SIGINT,), signal_after=lambda t: (t / "sim").is_dir(), check=_movie_ok("sim", 64))
    cli("sigterm-simulate-keeps-frames", S, "valid",
        ["simulate", "-o", "sim", "--frames", "200000", "--size", "32", "32", "--chunk", "64"],
        signal=(signal.SIGTERM,), signal_after=lambda t: (t / "sim").is_dir(), check=_movie_ok("sim", 64))
    cli("sigint-localize-keeps-locs", S, "valid",
        lambda t: (long_movie(t), ["-v", "localize", "long.tif", "-o", "l.csv", "--device", "cpu", "--threads", "1", "--batch-size", "4"])[1],
        signal=(signal.SIGINT,), signal_after="localizing", check=_csv_ok("l.csv", 1))
    cli("sigterm-localize-keeps-locs", S, "valid",
        lambda t: (long_movie(t), ["-v", "localize", "long.tif", "-o", "l.csv", "--device", "cpu", "--threads", "1", "--batch-size", "4"])[1],
        signal=(signal.SIGTERM,), signal_after="localizing", check=_csv_ok("l.csv", 1))
    cli("double-sigint-localize", S, "valid",
        lambda t: (long_movie(t), ["-v", "localize", "long.tif", "-o", "l.csv", "--device", "cpu", "--threads", "1", "--batch-size", "4"])[1],
        signal=(signal.SIGINT, signal.SIGINT), signal_after="localizing", check=_csv_ok("l.csv", 1))
    cli("sigint-train-keeps-checkpoint", S, "valid",
        ["train", "--model", "decode", "-o", "t.pt", "--steps", "1000000", "--steps-per-epoch", "2", "--batch-size", "2",
         "--crop", "16", "--device", "cpu", "--threads", "1"],
        signal=(signal.SIGINT,), signal_after=lambda t: (t / "t.pt").is_file(), check=_ckpt_ok("t.pt"), timeout=240)
    cli("sigterm-train-keeps-checkpoint", S, "valid",
        ["train", "--model", "decode", "-o", "t.pt", "--steps", "1000000", "--steps-per-epoch", "2", "--batch-size", "2",
         "--crop", "16", "--device", "cpu", "--threads", "1"],
        signal=(signal.SIGTERM,), signal_after=lambda t: (t / "t.pt").is_file(), check=_ckpt_ok("t.pt"), timeout=240)

    # ------------------------------------------------------------------ arguments (CLI)
    A = "arguments"
    for i, (argv, quick) in enumerate([
        (["localize", "movie.tif", "-o", "x.csv", "--device", "gpu"], True),
        (["localize", "movie.tif", "-o", "x.csv", "--em-gain", "0"], True),
        (["localize", "movie.tif", "-o", "x.csv", "--batch-size", "-1"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--render", "r.tif", "--render-pixel-size", "0"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--threshold", "-1"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--threshold", "5"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--threshold", "nan"], True),
        (["localize", "movie.tif", "-o", "x.csv", "--sensitivity", "-2"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--qe", "1.5"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--frames", "-5", "3"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--frames", "8", "2"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--pixel-size", "0"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--camera", "nonsense"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--model", "nonsense"], False),
        (["localize", "movie.tif", "-o", "x.csv", "--threads", "-3"], False),
        (["simulate", "-o", "s", "--chunk", "0"], True),
        (["simulate", "-o", "s", "--frames", "0"], False),
        (["simulate", "-o", "s", "--photons", "-5"], False),
        (["simulate", "-o", "s", "--bg", "-1"], False),
        (["simulate", "-o", "s", "--psf-sigma", "-3"], False),
        (["simulate", "-o", "s", "--t-on", "0"], False),
        (["simulate", "-o", "s", "--density", "inf"], False),
        (["simulate", "-o", "s", "--size", "0", "16"], False),
        (["simulate", "-o", "s", "--device", "gpu"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--steps-per-epoch", "0"], True),
        (["train", "--model", "decode", "-o", "t.pt", "--steps", "0"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--batch-size", "-1"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--lr", "-1"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--crop", "2"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--minutes", "-1"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--movie", "movie.tif", "--ground-truth", "gt.csv", "--val-fraction", "1.5"], False),
        (["train", "--model", "deep-storm", "-o", "t.pt", "--model-config", '{"width": 45}', "--steps", "1"], True),
        (["train", "--model", "decode", "-o", "t.pt", "--model-config", "{not json"], False),
        (["train", "--model", "decode", "-o", "t.pt", "--model-config", "5"], False),
        (["render", "locs.csv", "-o", "r.tif", "--pixel-size", "0"], False),
        (["render", "locs.csv", "-o", "r.tif", "--pixel-size", "0.01"], False),  # terabytes otherwise
        (["render", "locs.csv", "-o", "r.tif", "--sigma", "-1"], False),
        (["evaluate", "gt.csv", "locs.csv", "--tolerance", "0"], False),
        (["evaluate", "gt.csv", "locs.csv", "--frames", "9", "3"], False),
        (["demo", "-o", "d", "--frames", "0"], False),
    ]):
        cli(f"arg-{argv[0]}-{'-'.join(a.lstrip('-') for a in argv[-2:])}-{i}", A, "error", argv, quick=quick)
    cli("arg-camera-emccd", A, "valid", ["localize", "movie.tif", "-o", "x.csv", "--camera", "emccd", "--device", "cpu"], check=_csv_ok("x.csv", 1))
    cli("arg-simulate-camera-scmos", A, "valid", ["simulate", "-o", "s", "--frames", "2", "--size", "16", "16", "--camera", "scmos"], check=_movie_ok("s", 2))
    cli("localize-folder", A, "valid",
        lambda t: ((t / "mv").mkdir(), shutil.copy(t / "movie.tif", t / "mv" / "b.tif"), shutil.copy(t / "movie.tif", t / "mv" / "a.tif"),
                   ["localize", "mv", "-o", "f.csv", "--device", "cpu"])[3],
        check=_csv_ok("f.csv", 1), quick=True)
    cli("localize-quoted-glob", A, "valid",
        lambda t: ((t / "mv").mkdir(), shutil.copy(t / "movie.tif", t / "mv" / "m1.tif"), shutil.copy(t / "movie.tif", t / "mv" / "m2.tif"),
                   ["localize", "mv/m*.tif", "-o", "g.csv", "--device", "cpu"])[3],
        check=_csv_ok("g.csv", 1))
    cli("localize-folder-without-tiffs", A, "error",
        lambda t: ((t / "empty").mkdir(), _w(t / "empty", "notes.txt", "x"), ["localize", "empty", "-o", "e.csv"])[2], quick=True)
    cli("localize-glob-no-match", A, "error", ["localize", "nothing_*.tif", "-o", "e.csv"])

    # ------------------------------------------------------------------ configs and YAML
    Y = "configs"
    yamls = {
        "syntax": "n_frames: [1, 2\n",
        "python-tag": "n_frames: !!python/object/apply:os.system ['touch PWNED']\n",
        "negative-photons": "photons_mean: -5\n",
        "nan-bg": "bg_photons: .nan\n",
        "unknown-field": "n_frame: 5\n",
        "list-root": "- 1\n- 2\n",
        "string-frames": "n_frames: many\n",
        "camera-typo": "camera: emcdd\n",
        "bad-camera-gain": "camera: {em_gain: 0}\n",
    }
    for name, text in yamls.items():
        cli(f"yaml-{name}-cli", Y, "error",
            lambda t, text=text: (_w(t, "c.yaml", text), ["simulate", "-o", "s", "--config", "c.yaml"])[1],
            quick=name in ("syntax", "python-tag"), check=_no_pwned)

        def from_yaml(t=None, text=text):
            from napari_smlm.core.config import SimulationConfig

            return SimulationConfig.from_yaml(text if "\n" in text else text)

        api(f"yaml-{name}-api", Y, "error", lambda t, f=from_yaml: f)
    api("yaml-valid-roundtrip", Y, "valid", lambda t: _yaml_roundtrip(t))

    def cfg_case(id, expr_fn, expect="error"):
        api(id, Y, expect, lambda t, f=expr_fn: f)

    from_sim = lambda **kw: (lambda: __import__("napari_smlm.core.config", fromlist=["x"]).SimulationConfig(**kw))  # noqa: E731
    for kw in [dict(photons_mean=-1), dict(bg_photons=-1), dict(psf_sigma_nm=-5), dict(pixel_size_nm=math.nan),
               dict(density=math.inf), dict(n_frames=2.5), dict(t_on=0), dict(height="64"), dict(camera="gpu")]:
        cfg_case("sim-" + "-".join(f"{k}={v}" for k, v in kw.items()), from_sim(**kw))
    cfg_case("sim-camera-emccd-alias", from_sim(camera="emccd"), "valid")
    cfg_case("sim-camera-scmos-alias", from_sim(camera="SCMOS"), "valid")

    def train_cfg(**kw):
        def f():
            from napari_smlm.core.training import TrainConfig

            return TrainConfig(**kw)

        return f

    for kw in [dict(steps=0), dict(steps_per_epoch=0), dict(batch_size=-1), dict(lr=math.nan), dict(lr=0.0),
               dict(device="gpu"), dict(threads=-1), dict(max_minutes=-1)]:
        cfg_case("train-" + "-".join(f"{k}={v}" for k, v in kw.items()), train_cfg(**kw))
    cfg_case("train-device-cuda0-syntax", train_cfg(device="cuda:0"), "valid")

    def camera(**kw):
        def f():
            from napari_smlm.core.camera import Camera

            return Camera(**kw)

        return f

    for kw in [dict(em_gain=0), dict(sensitivity=-1), dict(qe=1.5), dict(qe=0), dict(read_noise=math.nan)]:
        cfg_case("camera-" + "-".join(f"{k}={v}" for k, v in kw.items()), camera(**kw))

    def val_fraction(t, v):
        def f():
            from napari_smlm.core.pairs import PairSampler
            from napari_smlm.core.training import TrainConfig, iter_train

            ps = PairSampler(t / "movie.tif", t / "gt.csv", camera="fit", crop=16)
            return next(iter(iter_train("decode", None, TrainConfig(steps=1, batch_size=2, val_batches=1, device="cpu"), pairs=ps, val_fraction=v)))

        return f

    api("api-train-val-fraction-1.5", Y, "error", lambda t: val_fraction(t, 1.5))

    # ------------------------------------------------------------------ checkpoints
    K = "checkpoints"

    def load(name_fn):
        def f(t):
            def call():
                from napari_smlm.core.checkpoint import load_checkpoint

                return load_checkpoint(name_fn(t))

            return call

        return f

    api("ckpt-pickle-os-system", K, "error", load(_evil_checkpoint), check=_no_pwned)
    api("ckpt-torch-save-os-system", K, "error", load(_torch_evil_checkpoint), check=_no_pwned)
    api("ckpt-random-bytes", K, "error", load(lambda t: _w(t, "r.pt", _rng("r").bytes(4000))))
    api("ckpt-empty-file", K, "error", load(lambda t: _w(t, "e.pt", b"")))
    api("ckpt-truncated", K, "error", load(lambda t: _w(t, "tr.pt", (t / "model.pt").read_bytes()[:5000])))
    api("ckpt-not-ours", K, "error", load(lambda t: (__import__("torch").save({"a": 1}, t / "o.pt"), t / "o.pt")[1]))
    api("ckpt-width-45", K, "error", load(lambda t: _mutated_checkpoint(t, "w.pt", HUGE_DECODE)))
    api("ckpt-nan-weights", K, "error", load(lambda t: _mutated_checkpoint(t, "nan.pt", nan=True)))
    api("ckpt-unknown-config-key", K, "error", load(lambda t: _mutated_checkpoint(t, "k.pt", {"no_such_key": 1})))
    api("ckpt-shipped-valid", K, "valid", load(lambda t: t / "model.pt"))
    cli("ckpt-cli-evil", K, "error", lambda t: (_evil_checkpoint(t), ["localize", "movie.tif", "-o", "x.csv", "--checkpoint", "evil.pt"])[1],
        quick=True, check=_no_pwned)
    cli("ckpt-cli-nan-weights", K, "error", lambda t: (_mutated_checkpoint(t, "nan.pt", nan=True), ["localize", "movie.tif", "-o", "x.csv", "--checkpoint", "nan.pt"])[1])
    cli("train-cli-huge-width", K, "error",
        ["train", "--model", "decode", "-o", "h.pt", "--steps", "1", "--model-config", json.dumps(HUGE_DECODE)], timeout=60)
    cli("ckpt-cli-huge-width", K, "error",
        lambda t: (_mutated_checkpoint(t, "w.pt", HUGE_DECODE),
                   ["localize", "movie.tif", "-o", "x.csv", "--checkpoint", "w.pt"])[1], timeout=60)

    # ------------------------------------------------------------------ movies (TIFF)
    M = "movies"
    tiffs: dict[str, tuple[Callable[[Path], Path], str]] = {
        "truncated": (_truncated_tiff, "error"),
        "random-bytes": (lambda t: _w(t, "rnd.tif", _rng("rnd").bytes(5000)), "error"),
        "zero-bytes": (lambda t: _w(t, "zero.tif", b""), "error"),
        "text": (lambda t: _w(t, "text.tif", "hello, not a tiff\n"), "error"),
        "5d-ome-tzyx": (lambda t: _tiff(t, "5d.ome.tif", np.zeros((5, 3, 16, 16), np.uint16), ome=True, metadata={"axes": "TZYX"}), "error"),
        "float-nan": (lambda t: _tiff(t, "fnan.tif", np.full((5, 16, 16), np.nan, np.float32)), "error"),
        "rgb": (lambda t: _tiff(t, "rgb.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb"), "error"),  # reader: napari's
        "complex": (lambda t: _tiff(t, "cx.tif", np.zeros((5, 8, 8), np.complex64)), "error"),
        "int64": (lambda t: _tiff(t, "i64.tif", np.zeros((5, 8, 8), np.int64)), "error"),
        "zero-size-frame": (lambda t: _tiff(t, "z.tif", np.zeros((5, 0, 8), np.uint16)), "error"),
        "uint16-valid": (lambda t: t / "movie.tif", "valid"),
        "ome-zyx-as-time": (lambda t: _tiff(t, "zyx.ome.tif", np.zeros((4, 16, 16), np.uint16), ome=True, metadata={"axes": "ZYX"}), "valid"),
        "imagej-stack": (lambda t: _tiff(t, "ij.tif", np.zeros((6, 16, 16), np.uint16), imagej=True), "valid"),
        "single-frame": (lambda t: _tiff(t, "one.tif", np.ones((16, 16), np.uint16)), "valid"),
    }
    for name, (mk, expect) in tiffs.items():
        def open_first(t, mk=mk):
            p = mk(t)

            def call():
                from napari_smlm.core.io import open_movie

                m = open_movie(p)
                return np.asarray(m[0])

            return call

        api(f"tiff-{name}-api", M, expect, open_first)
        reader(f"tiff-{name}-reader", M, "decline" if name == "rgb" else expect, mk)  # RGB: napari's own reader
    cli("tiff-truncated-cli", M, "error", lambda t: (_truncated_tiff(t), ["localize", "trunc.tif", "-o", "x.csv"])[1])
    cli("tiff-5d-cli", M, "error",
        lambda t: (_tiff(t, "5d.ome.tif", np.zeros((5, 3, 16, 16), np.uint16), ome=True, metadata={"axes": "TZYX"}), ["localize", "5d.ome.tif", "-o", "x.csv"])[1])
    cli("saturated-movie-in-fov", M, "valid",
        lambda t: (_tiff(t, "sat.tif", np.full((6, 32, 32), 65535, np.uint16)), ["localize", "sat.tif", "-o", "s.csv", "--pixel-size", "100", "--device", "cpu"])[1],
        check=_csv_ok("s.csv", 0, fov_nm=3200.0))
    cli("uint32-movie-in-fov", M, "valid",
        lambda t: (_tiff(t, "u32.tif", (_rng("u32").integers(0, 2**31, (6, 32, 32))).astype(np.uint32)),
                   ["localize", "u32.tif", "-o", "u.csv", "--pixel-size", "100", "--device", "cpu"])[1],
        check=_csv_ok("u.csv", 0, fov_nm=3200.0))

    def predict_arr(arr_fn, expect):
        def f(t):
            def call():
                from napari_smlm.core.inference import predict

                return predict(arr_fn(), str(t / "model.pt"), device="cpu", pixel_size_nm=100.0)

            return call

        return f

    api("predict-1d-array", M, "error", predict_arr(lambda: np.zeros(100, np.uint16), "error"))
    api("predict-4d-array", M, "error", predict_arr(lambda: np.zeros((2, 2, 16, 16), np.uint16), "error"))
    api("predict-nan-frames", M, "error", predict_arr(lambda: np.full((2, 16, 16), np.nan, np.float32), "error"))

    def predict_kw(**kw):
        def f(t):
            def call():
                from napari_smlm.core.inference import predict

                opts = dict(kw)
                dev = opts.pop("device_override", "cpu")
                return predict(np.zeros((3, 16, 16), np.uint16), str(t / "model.pt"), device=dev, **opts)

            return call

        return f

    api("predict-batch-size-0", M, "error", predict_kw(batch_size=0))
    api("predict-threshold-nan", M, "error", predict_kw(threshold=float("nan")))
    api("predict-device-gpu", M, "error", predict_kw(device_override="gpu"))

    def simulate_chunk(chunk):
        def call():
            from napari_smlm.core.config import SimulationConfig
            from napari_smlm.core.simulate import iter_simulate

            return list(iter_simulate(SimulationConfig(n_frames=3, height=16, width=16), chunk_frames=chunk))

        return call

    api("iter-simulate-chunk-0", A, "error", lambda t: simulate_chunk(0))
    api("iter-simulate-chunk-2-valid", A, "valid", lambda t: simulate_chunk(2))

    # ------------------------------------------------------------------ localization tables
    T = "tables"
    r = _good_rows()
    tables: dict[str, tuple[Callable[[Path], Path], str]] = {
        "missing-y": (lambda t: _csv_rows(t, "noy.csv", '"id","frame","x [nm]","intensity [photon]"', ["1,1,100,5"]), "error"),
        "renamed-y": (lambda t: _csv_rows(t, "why.csv", '"id","frame","x [nm]","why [nm]"', ["1,1,100,5"]), "error"),
        "abc-cell": (lambda t: _ts(t, "abc.csv", r[:3] + [(4, 1, "abc", 5, 1000)]), "error"),
        "na-cell": (lambda t: _ts(t, "na.csv", r[:3] + [(4, 1, "n/a", 5, 1000)]), "valid"),  # a missing value: row dropped
        "decimal-comma": (lambda t: _csv_rows(t, "comma.csv", TS, ['1,1,"12,5",100,1000']), "error"),
        "empty-file": (lambda t: _w(t, "empty.csv", ""), "error"),
        "binary-garbage": (lambda t: _w(t, "garb.csv", _rng("garb").bytes(3000)), "error"),
        "negative-frame": (lambda t: _ts(t, "negf.csv", r[:3] + [(4, -3, 100, 100, 1000)]), "error"),
        "valid-thunderstorm": (lambda t: t / "locs.csv", "valid"),
        "header-only": (lambda t: _csv_rows(t, "hdr.csv", TS, []), "valid"),
    }
    for name, (mk, expect) in tables.items():
        def read(t, mk=mk):
            p = mk(t)

            def call():
                from napari_smlm.core.io import read_localizations

                return read_localizations(p)

            return call

        api(f"csv-{name}-api", T, expect, read,
            check=_value_check(lambda v: f"{len(v)} rows, expected 3 (the n/a row dropped)" if len(v) != 3 else None)
            if name == "na-cell" else None)
        # a binary .csv gets a clear error from our reader rather than napari's bare "no reader"
        reader(f"csv-{name}-reader", T, expect if name != "empty-file" else "decline", mk)

    def nonfinite_read(t):
        p = _ts(t, "nan.csv", r[:5] + [(6, 1, "nan", 100, 1000), (7, 1, 100, "inf", 1000)])

        def call():
            from napari_smlm.core.io import read_localizations

            locs = read_localizations(p)
            bad = int(np.count_nonzero(~(np.isfinite(locs["x_nm"]) & np.isfinite(locs["y_nm"]))))
            if bad:
                raise AssertionError(f"{bad} non-finite coordinates kept")
            return locs

        return call

    api("csv-nonfinite-coordinates-dropped", T, "valid", nonfinite_read)

    # ------------------------------------------------------------------ render / evaluate
    R = "render & evaluate"

    def render_api(xy_fn, px, expect, check=None):
        def f(t):
            def call():
                from napari_smlm.core.render import render

                return render(np.asarray(xy_fn(), float), "gaussian", px)

            return call

        return f

    api("render-outlier-1e12", R, "error", render_api(lambda: [[100, 100], [1e12, 50]], 10.0, "error"))
    api("render-tiny-pixel", R, "error", render_api(lambda: [[100, 100], [3000, 3000]], 1e-6, "error"))
    api("render-327um-field", R, "error", render_api(lambda: [[100, 100], [327_000, 327_000]], 20.0, "valid"))
    api("render-nan-coordinates", R, "valid", render_api(lambda: [[100, 100], [np.nan, 5], [np.inf, 3]], 10.0, "valid"))
    api("render-negative-coordinates", R, "valid", render_api(lambda: [[100, 100], [-50, 5]], 10.0, "valid"))
    cli("render-outlier-cli", R, "error",
        lambda t: (_ts(t, "out.csv", r[:5] + [(6, 1, 1e12, 100, 1000)]), ["render", "out.csv", "-o", "o.tif"])[1], quick=True)
    cli("evaluate-empty-ground-truth", R, "error",
        lambda t: (_csv_rows(t, "h.csv", TS, []), ["evaluate", "h.csv", "locs.csv"])[1])
    cli("evaluate-empty-localizations", R, "valid",
        lambda t: (_csv_rows(t, "h.csv", TS, []), ["evaluate", "gt.csv", "h.csv"])[1])
    cli("evaluate-nan-coordinates", R, "valid",
        lambda t: (_ts(t, "n.csv", r[:5] + [(6, 1, "nan", 100, 1000)]), ["evaluate", "gt.csv", "n.csv"])[1])
    cli("evaluate-missing-file", R, "error", ["evaluate", "gt.csv", "nope.csv"])
    cli("nan-loss-message", R, "error",
        ["train", "--model", "decode", "-o", "n.pt", "--steps", "30", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "16",
         "--lr", "10", "--device", "cpu", "--threads", "1"], timeout=240)

    ids = [c.id for c in C]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return C


#: decode's feature widths × 45: billions of parameters (the "width 45" of the issue).
HUGE_DECODE = {"frame_features": [720, 1440], "context_features": [1080, 2160, 4320], "head_features": 1080}


def _yaml_roundtrip(t: Path):
    from napari_smlm.core.config import SimulationConfig

    def call():
        c = SimulationConfig(n_frames=7, camera="scmos", t_bleach=None)
        c.to_yaml(t / "ok.yaml")
        back = SimulationConfig.from_yaml(t / "ok.yaml")
        if back != c:
            raise AssertionError("YAML round trip changed the config")
        return back

    return call


def _long_movie(t: Path) -> Path:
    """A 3000-frame 32×32 movie (tiles of the fixture movie): long enough to interrupt."""
    from napari_smlm.core.io import open_movie, write_movie

    m = np.asarray(open_movie(t / "movie.tif")[:])
    write_movie(t / "long.tif", np.tile(m, (250, 1, 1)), pixel_size_nm=100.0)
    return t / "long.tif"
