"""CPU speed of every model: whole-process ``napari-smlm localize`` and in-process ``predict``.

    python benchmarks/speed.py                          # every shipped model, fp32 and auto, 5 runs
    python benchmarks/speed.py --models decode --runs 7
    python benchmarks/speed.py --threads 2 --precisions auto --md docs/benchmarks.md

One seeded 1000-frame 64×64 movie (1 emitter/µm², the default sCMOS-like simulator) is written
to a temporary TIFF. For each model and precision:

* **whole process**: wall time of ``python -m napari_smlm.cli localize movie.tif --model M
  --device cpu --precision P -o out.csv`` (interpreter and torch start-up, checkpoint load, TIFF
  read, inference, CSV write), ``--runs`` times; median and min–max in frames/s, the same in
  frames per CPU-second of the child process, the frames/s that the CLI prints itself (the frames
  read from the TIFF -> the table on disk) and the seconds the CLI's figure leaves out (start-up
  and exit); with ``--baseline-src DIR`` the same for another source tree (e.g. main's), runs
  interleaved with this tree's so that a change of load hits both alike (``--baseline-runs`` of
  them; a tree whose CLI has no ``--precision``, e.g. the code of issue 16's filing, 67ada6d, runs
  without it, i.e. in float32, and its row says so);
* ``--checkpoint LABEL=FILE`` (repeatable): a checkpoint file run like a model under the name LABEL
  (``localize --checkpoint FILE``, ``predict(movie, FILE)``), this tree only — e.g. a model's
  weights with another config (srcnn with ``symmetrize: true``, two passes);
* **in process**: ``predict(open_movie(tif), M, precision=P)`` after one warm-up call,
  ``--runs`` times; median and min–max. With ``--baseline-src`` the other tree does the same in a
  child process (``--baseline-runs`` times; without ``precision`` when its CLI has no ``--precision``).

Oracle-tuned Picasso (identify + MLE fit, ``benchmarks/picasso_ref.py``) runs in process on the
same movie when ``picassosr`` is installed, otherwise the table says so. The header prints the
CPU, its vector flags, torch's thread count and the load average before and after: on a shared
machine the figures are low and noisy, so rerun on a quiet one (``uptime`` near 0) before
quoting them. With ``--md FILE`` the table replaces the "CPU speed" section of FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SECTION = "## CPU speed"


def _stats(v: list[float]) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=float)
    return float(np.median(a)), float(a.min()), float(a.max())


def _one_cli_run(tif: Path, model: str, precision: str, env: dict, batch: int | None, out: Path, extra: list[str] = ()):
    """One ``napari-smlm localize`` process: (frames, wall s, child CPU s, frames/s the CLI printed)."""
    import resource

    cmd = [sys.executable, "-m", "napari_smlm.cli", "localize", str(tif), *_model_args(model), "--device", "cpu",
           *(["--precision", precision] if precision else []), "-o", str(out), *extra]
    if batch:
        cmd += ["--batch-size", str(batch)]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    dcpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    m = re.search(r"\((\d+) in (\d+) frames, ([\d.]+) frames/s", r.stdout)
    if not m:
        raise RuntimeError(f"{' '.join(cmd)}: no rate in its output:\n{r.stdout[-2000:]}")
    out.unlink(missing_ok=True)
    out.with_name(f"{out.stem}_localize.json").unlink(missing_ok=True)  # the run record beside a .csv
    return int(m.group(2)), dt, dcpu, float(m.group(3))


def _model_args(model: str) -> list[str]:
    """``localize`` arguments for a model name, or for a checkpoint file (``--checkpoint``)."""
    return ["--checkpoint", model] if Path(model).suffix in (".pt", ".pth", ".ckpt") else ["--model", model]


def cli_options(env: dict) -> set[str]:
    """The long options of ``napari-smlm localize`` in the source tree that ``env`` points at (its ``--help``)."""
    r = subprocess.run([sys.executable, "-m", "napari_smlm.cli", "localize", "--help"], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"`napari_smlm.cli localize --help` failed with PYTHONPATH={env.get('PYTHONPATH')}:\n{r.stderr[-2000:]}")
    return set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", r.stdout))


def interleaved(runs: dict[str, int]) -> list[tuple[int, str]]:
    """The order of ``(run index, label)`` for ``runs[label]`` runs of each version.

    Round k starts with version ``k % len(runs)`` and goes round the others, skipping a version
    whose runs are done, so that a change of load hits every version alike while all have runs left.
    """
    labels = list(runs)
    order = []
    for k in range(max(runs.values(), default=0)):
        for j in range(len(labels)):
            label = labels[(k + j) % len(labels)]
            if k < runs[label]:
                order.append((k, label))
    return order


def whole_process(tif: Path, model: str, precision: str, runs: int | dict[str, int], envs: dict[str, dict], batch: int | None,
                  tmp: Path, extra: dict[str, list[str]] | None = None, precisions: dict[str, str | None] | None = None):
    """``runs`` CLI runs per code version in ``envs`` (``{label: environment}``), interleaved.

    ``runs`` is one count for every version or ``{label: count}``; the order is :func:`interleaved`.
    ``precisions`` overrides ``precision`` per label (``None``: no ``--precision``, for a CLI without
    it). Returns ``{label: {"wall": [...], "printed": [...], "cpu": [...],
    "overhead": [...]}}``: frames/s of the whole process (wall clock), the frames/s that the CLI
    printed (frames read from the TIFF -> table on disk), frames per CPU-second of the child
    (user + system, all its threads, ``getrusage(RUSAGE_CHILDREN)``: unlike wall time it does not
    count the time other jobs on a busy machine take from it), and the seconds outside the CLI's
    own figure (interpreter and imports, checkpoint, domain check, exit).
    """
    labels = list(envs)
    counts = runs if isinstance(runs, dict) else {k: runs for k in labels}
    res = {k: {"wall": [], "printed": [], "cpu": [], "overhead": []} for k in labels}
    for k, label in interleaved({k: counts[k] for k in labels}):
        out = tmp / f"{Path(model).stem}_{precision}_{k}_{labels.index(label)}_{time.monotonic_ns()}.csv"
        prec = (precisions or {}).get(label, precision)
        n, dt, dcpu, printed = _one_cli_run(tif, model, prec, envs[label], batch, out, (extra or {}).get(label, []))
        r = res[label]
        r["wall"].append(n / dt)
        r["printed"].append(printed)
        r["cpu"].append(n / dcpu)
        r["overhead"].append(dt - n / printed)
    return res


def in_process(tif: Path, model: str, precision: str | None, runs: int, batch: int | None, parallel: str | None = None):
    """Frames/s (wall) and frames per CPU-second of ``runs`` in-process runs, and the localization count."""
    from napari_smlm.core.inference import predict
    from napari_smlm.core.io import open_movie

    kw = {"device": "cpu"}
    if precision:  # None: an old predict() without the option (in_process_elsewhere)
        kw["precision"] = precision
    if parallel:
        kw["parallel"] = parallel
    if batch:
        kw["batch_size"] = batch
    movie = open_movie(tif)
    predict(movie, model, stop=32, **kw)  # warm-up: oneDNN primitives, page cache
    rates, cpu_rates, n_locs = [], [], 0
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        res = predict(movie, model, **kw)
        rates.append(len(movie) / (time.perf_counter() - t))
        cpu_rates.append(len(movie) / (time.process_time() - c))
        n_locs = len(res.localizations)
    return rates, cpu_rates, n_locs


#: :func:`in_process` run by another source tree (``--baseline-src``): this file is loaded in a child process whose
#: PYTHONPATH starts with that tree, so its lazy ``napari_smlm`` imports are the other tree's. argv = this file, tif,
#: model, runs, precision ('' = none: an old ``predict`` without it), batch ('' = default). Prints one JSON line.
_INPROC_PROGRAM = r"""
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("speed_child", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
tif, model, runs, prec, batch = sys.argv[2:7]
rates, cpu_rates, n = mod.in_process(Path(tif), model, prec or None, int(runs), int(batch) if batch else None)
print(json.dumps({"rates": rates, "cpu_rates": cpu_rates, "n_locs": n}))
"""


def in_process_elsewhere(tif: Path, model: str, precision: str | None, runs: int, batch: int | None, env: dict):
    """:func:`in_process` run by another source tree (``env``'s PYTHONPATH) in a child process: same warm-up and timing."""
    out = subprocess.run([sys.executable, "-c", _INPROC_PROGRAM, str(Path(__file__).resolve()), str(tif), model, str(runs),
                          precision or "", str(batch or "")], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"--baseline-src in process, {model}: the child failed:\n{out.stderr[-2000:]}")
    lines = out.stdout.strip().splitlines()
    try:
        r = json.loads(lines[-1])
        return r["rates"], r["cpu_rates"], r["n_locs"]
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--baseline-src in process, {model}: the child printed no result line "
                         f"({exc!r}); its output ended with:\n{out.stdout[-500:]}{out.stderr[-1500:]}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated (default: every shipped model; '' for none, e.g. with --checkpoint)")
    p.add_argument("--precisions", default="fp32,auto", help="comma-separated: fp32, auto, bf16")
    p.add_argument("--runs", type=int, default=5, help="repeats of each measurement (median, min–max)")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="OMP/torch threads (default: torch's own choice)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the CLI's / InferenceConfig's default")
    p.add_argument("--skip-cli", action="store_true", help="in-process figures only")
    p.add_argument("--no-picasso", action="store_true")
    p.add_argument("--md", type=Path, default=None, help="replace the '## CPU speed' section of this Markdown file")
    p.add_argument("--baseline-src", type=Path, default=None,
                   help="also run the CLI with this source tree (e.g. main's src/ exported to a temporary folder), "
                   "interleaved with this one's: a 'before' row per model (whole process; in process too, in a child "
                   "process, unless --skip-inproc)")
    p.add_argument("--baseline-runs", type=int, default=None, help="runs of --baseline-src (default: --runs)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=FILE",
                   help="also a checkpoint file, run like a model under LABEL (this tree only; repeatable)")
    p.add_argument("--skip-inproc", action="store_true", help="whole-process (CLI) figures only")
    p.add_argument("--parallel", default=None, choices=["auto", "batches", "ops"],
                   help="this tree's `localize --parallel` / predict(parallel=...) (default: its own default; "
                   "never passed to --baseline-src)")
    p.add_argument("--tta", type=int, default=None, choices=[1, 2, 4],
                   help="this tree's `localize --tta` (test-time views, whole process only: use with --skip-inproc; "
                   "never passed to --baseline-src)")
    a = p.parse_args(argv)
    if a.tta and not a.skip_inproc:
        raise SystemExit("--tta times the whole process only: add --skip-inproc")
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from bench_foundation import machine
    from napari_smlm.core.checkpoint import shipped_models
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.device import cpu_flags_summary, cpu_has_fast_bf16
    from napari_smlm.core.io import write_movie
    from napari_smlm.core.simulate import simulate

    models = [m for m in a.models.split(",") if m] if a.models is not None else sorted(shipped_models())
    files = parse_checkpoints(a.checkpoint, models)
    for opt, n in (("--runs", a.runs), ("--baseline-runs", a.baseline_runs)):
        if n is not None and n < 1:
            raise SystemExit(f"{opt} {n}: expected at least 1 run")
    precisions = a.precisions.split(",")
    mach = machine()
    load0 = os.getloadavg()
    head = [
        f"Machine: {mach['cpu']}, {mach['cores']} CPUs; flags: {cpu_flags_summary()} (native bf16: {cpu_has_fast_bf16()}); "
        f"torch {mach['torch']}, {torch.get_num_threads()} threads; {a.runs} runs each"
        f"{f' ({a.baseline_runs} of --baseline-src)' if a.baseline_src and a.baseline_runs else ''}; "
        f"batch {a.batch_size or 'default'}; parallel {a.parallel or 'default'}; tta {a.tta or 1}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
    ]
    print(head[0], flush=True)
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    cfg = SimulationConfig(n_frames=a.frames, height=64, width=64, density=1.0, seed=5)
    frames, gt = simulate(cfg)
    rows = []
    def env_for(src: Path) -> dict:
        env = dict(os.environ)
        # like an installed package: modules compiled once (src/**/__pycache__, git-ignored), not at every start
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        return env

    envs = {"": env_for(Path(__file__).resolve().parents[1] / "src")}
    base_prec = {}
    if a.baseline_src:
        envs["before"] = env_for(a.baseline_src.resolve())
        if "--precision" not in cli_options(envs["before"]):
            base_prec["before"] = None  # an old CLI: float32, no option
            print("--baseline-src: its CLI has no --precision (float32)", flush=True)
    runs = {"": a.runs, "before": a.baseline_runs or a.runs}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tif = write_movie(tmp / "speed.tif", frames, pixel_size_nm=100.0)
        for model in [*models, *files]:
            ref = files.get(model, model)
            for prec in precisions:
                row = {"model": f"{model}, tta {a.tta}" if a.tta else model, "precision": prec}
                before = None
                if not a.skip_cli:
                    env_m = envs if model not in files else {"": envs[""]}
                    res = whole_process(tif, ref, prec, {k: runs[k] for k in env_m}, env_m, a.batch_size, tmp,
                                        {"": [*(["--parallel", a.parallel] if a.parallel else []),
                                              *(["--tta", str(a.tta)] if a.tta else [])]}, base_prec)
                    for label, r in res.items():
                        dst = row if not label else {
                            "model": f"{model} ({label})",
                            "precision": prec if base_prec.get(label, prec) else "fp32 (no --precision)"}
                        dst["wall"], dst["printed"], dst["wall_cpu"] = _stats(r["wall"]), _stats(r["printed"]), _stats(r["cpu"])
                        dst["overhead"] = _stats(r["overhead"])
                        if label:
                            before = dst
                if not a.skip_inproc:
                    ip, ipc, n_locs = in_process(tif, ref, prec, a.runs, a.batch_size, a.parallel)
                    row["inproc"], row["inproc_cpu"], row["locs"] = _stats(ip), _stats(ipc), n_locs
                    if "before" in envs and model not in files:  # the baseline tree in process too (a child process)
                        if before is None:
                            before = {"model": f"{model} (before)",
                                      "precision": prec if base_prec.get("before", prec) else "fp32 (no --precision)"}
                        bp = prec if base_prec.get("before", prec) else None
                        ip, ipc, n_locs = in_process_elsewhere(tif, ref, bp, runs["before"], a.batch_size, envs["before"])
                        before["inproc"], before["inproc_cpu"], before["locs"] = _stats(ip), _stats(ipc), n_locs
                row["load"] = os.getloadavg()[0]
                for r in (before, row):
                    if r is not None:
                        r["load"] = row["load"]
                        rows.append(r)
                        print(_row_md(r), flush=True)
        picasso = None
        if not a.no_picasso:
            from picasso_ref import oracle_tuned_picasso, picasso_available

            if picasso_available():
                rates = []
                for _ in range(a.runs):
                    r = oracle_tuned_picasso(frames, gt, cfg.camera, 100.0)
                    rates.append(r["frames_per_s"])
                picasso = _stats(rates)
    load1 = os.getloadavg()
    lines = [
        SECTION, "",
        f"Generated by `python benchmarks/speed.py` (a {a.frames}-frame 64×64 movie at 1 emitter/µm², TIFF on disk). "
        "frames/s as median (min–max) of the runs. *Whole process* = wall time of `napari-smlm localize` "
        "from starting Python to its exit; *CLI printed* = the rate the CLI prints: the frames read from the "
        "TIFF -> the table on disk (network build, inference, post-processing, CSV write); *outside it* = "
        "the seconds of the whole process that the CLI's figure leaves out (interpreter, imports, checkpoint, "
        "domain check, exit); *in process* = `predict()` on the open movie after a warm-up. `auto` = bfloat16 on CPUs "
        "with native bf16, float32 elsewhere (accuracy: `benchmarks/precision_guard.py`). *per CPU-s* = "
        "frames per second of process CPU time (user + system, all threads; for the whole process, the "
        "child's own): less sensitive to other jobs than wall time, and equal to frames/s × threads only "
        "when every thread is kept busy. On a loaded machine (see the load column) quote the per CPU-s "
        "columns; wall-clock columns then measure the load more than the code.",
        "", head[0],
        f"Load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at end "
        f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}.", "",
        "| model | precision | whole process | whole process, per CPU-s | CLI printed | outside it (s) | in process | in process, per CPU-s | localizations | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[_row_md(r) for r in rows],
    ]
    if picasso:
        lines.append(f"| picasso (oracle-tuned MLE, in process) | fp64 | – | – | – | – | {_fmt(picasso)} | – | – | {load1[0]:.1f} |")
    else:
        lines += ["", "Picasso (`picassosr`) is not installed here: no classical reference in this table "
                  "(`pip install 'napari-smlm[bench]'`)."]
    md = "\n".join(lines)
    print()
    print(md)
    if a.md:
        _replace_section(a.md, md)
    return 0


def parse_checkpoints(items: list[str], models: list[str] | tuple = ()) -> dict[str, str]:
    """``["LABEL=FILE", ...]`` -> ``{LABEL: FILE}``; a clear error for a bad item or a missing file.

    A label used twice, or equal to one of ``models`` (the models measured by name), is refused:
    rows are keyed by it, so the other file or the shipped model would silently not be measured.
    """
    out = {}
    for item in items:
        label, sep, file = item.partition("=")
        if not sep or not label or not file:
            raise SystemExit(f"--checkpoint {item!r}: expected LABEL=FILE")
        if label in out:
            raise SystemExit(f"--checkpoint {item!r}: label {label!r} given twice")
        if label in models:
            raise SystemExit(f"--checkpoint {item!r}: label {label!r} is also a model measured by name (--models); "
                             "pick another label")
        if not Path(file).is_file():
            raise SystemExit(f"--checkpoint {item!r}: no such file: {file}")
        if Path(file).suffix not in (".pt", ".pth", ".ckpt"):
            raise SystemExit(f"--checkpoint {item!r}: {file} is not a .pt/.pth/.ckpt checkpoint")
        out[label] = str(Path(file).resolve())
    return out


def _fmt(s, digits: int = 1) -> str:
    return "–" if s is None else f"{s[0]:.{digits}f} ({s[1]:.{digits}f}–{s[2]:.{digits}f})"


def _row_md(r: dict) -> str:
    return (f"| {r['model']} | {r['precision']} | {_fmt(r.get('wall'))} | {_fmt(r.get('wall_cpu'))} | "
            f"{_fmt(r.get('printed'))} | {_fmt(r.get('overhead'), 2)} | {_fmt(r.get('inproc'))} | {_fmt(r.get('inproc_cpu'))} | "
            f"{r.get('locs', '–')} | {r['load']:.1f} |")


BEGIN, END = "<!-- speed.py: begin -->", "<!-- speed.py: end -->"


def _replace_section(path: Path, md: str) -> None:
    """Put the table in a Markdown file.

    Between ``<!-- speed.py: begin -->`` and ``<!-- speed.py: end -->`` when the file has them
    (the rest of its "CPU speed" section is kept), else in place of the ``## CPU speed`` section
    (up to the next ``## ``), else appended.
    """
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
        body = md.split("\n", 1)[1].lstrip("\n") if md.startswith(SECTION) else md
        path.write_text(text[:a] + "\n### `benchmarks/speed.py` (latest run)\n\n" + body + "\n" + text[b:])
        return
    start = text.find(SECTION)
    if start < 0:
        new = text.rstrip("\n") + "\n\n" + md + "\n"
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        new = text[:start] + md + "\n" + (text[nxt:] if nxt >= 0 else "")
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
