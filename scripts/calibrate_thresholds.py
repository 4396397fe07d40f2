"""Choose the detection threshold of density-map checkpoints on simulated validation data.

    PYTHONPATH=src python scripts/calibrate_thresholds.py                     # print, change nothing
    PYTHONPATH=src python scripts/calibrate_thresholds.py --write             # re-save the shipped .pt files
    PYTHONPATH=src python scripts/calibrate_thresholds.py --models u-storm --json out.json

For each model: simulate :func:`~napari_smlm.core.models.validation.validation_configs` (six
movies around the microscope it was trained for, seeds 7000-7005), sweep the window-mass
threshold 0.20-2.00 in steps of 0.05, and keep the one with the best mean Jaccard among those
with precision >= 90 % on both sparse movies, at 95 % one-sided confidence
(:func:`~napari_smlm.core.models.validation.choose_threshold`).
``--write`` stores it as ``model_config["threshold"]`` and the sweep's summary as
``training["threshold_calibration"]``; the weights are copied unchanged and checked bit for bit
after the rewrite. It also records the model's training ranges
(:func:`napari_smlm.core.models.domain.training_ranges`) when the checkpoint has none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

import numpy as np
import torch

from napari_smlm.core.checkpoint import load_checkpoint, save_checkpoint, shipped_checkpoint_path, shipped_models
from napari_smlm.core.models import get_family
from napari_smlm.core.models.density import DensityFamily
from napari_smlm.core.models.validation import choose_threshold, sweep_thresholds, validation_configs

THRESHOLDS = np.round(np.arange(0.2, 2.0001, 0.05), 3)


def _density_models() -> list[str]:
    return [m for m in shipped_models() if isinstance(get_family(m), DensityFamily)]


def _weights_identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a
    )


def _write(path, ck, record: dict) -> None:
    """Re-save ``ck`` with the calibrated threshold; the weights must come back bit-identical."""
    from napari_smlm.core.models.domain import training_ranges

    training = {**ck.training, "threshold_calibration": record}  # replaces an earlier calibration
    training.setdefault("training_ranges", training_ranges(ck))
    config = {**ck.model_config, "threshold": float(record["threshold"])}
    new = dataclasses.replace(ck, model_config=config, training=training)
    save_checkpoint(path, new)
    back = load_checkpoint(path)
    if not _weights_identical(ck.state_dict, back.state_dict):
        raise SystemExit(f"{path}: weights changed on rewrite")
    print(f"  wrote {path} (weights bit-identical: {len(back.state_dict)} tensors compared)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--write", action="store_true", help="re-save the shipped checkpoints with the chosen threshold")
    ap.add_argument("--json", default=None, help="write the sweeps here")
    ap.add_argument("--from-json", default=None, help="take the records of an earlier run (no sweep) and --write them")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = {}
    earlier = json.load(open(a.from_json)) if a.from_json else {}
    for name in a.models or _density_models():
        t0 = time.perf_counter()
        path = shipped_checkpoint_path(name)
        ck = load_checkpoint(path)
        if name in earlier:
            record = out[name] = earlier[name]
            print(f"{name}: threshold {record['previous_threshold']:g} -> {record['threshold']:g} (from {a.from_json})")
            if a.write:
                _write(path, ck, record)
            continue
        # the threshold before any calibration (a re-run compares with the original, not itself)
        old = float((ck.training.get("threshold_calibration") or {}).get(
            "previous_threshold", get_family(name, ck.model_config).config["threshold"]))
        configs = validation_configs(ck.simulation_config)
        sw = sweep_thresholds(ck, configs, THRESHOLDS)
        thr = choose_threshold(sw)
        k0, k1 = int(np.argmin(abs(THRESHOLDS - old))), int(np.argmin(abs(THRESHOLDS - thr)))
        print(f"{name}: threshold {old:g} -> {thr:g}; mean JI {sw['jaccard'][:, k0].mean():.3f} -> "
              f"{sw['jaccard'][:, k1].mean():.3f} ({time.perf_counter() - t0:.0f} s)")
        rows = []
        for i, lab in enumerate(sw["labels"]):
            r = {"movie": lab, "n_true": int(sw["tp"][i, 0] + sw["fn"][i, 0])}
            for tag, k in (("before", k0), ("after", k1)):
                r[tag] = {q: round(float(sw[q][i, k]), 4) for q in ("precision", "recall", "jaccard")}
            rows.append(r)
            print(f"  {lab:<36} P {r['before']['precision']:.3f}->{r['after']['precision']:.3f}  "
                  f"R {r['before']['recall']:.3f}->{r['after']['recall']:.3f}  "
                  f"JI {r['before']['jaccard']:.3f}->{r['after']['jaccard']:.3f}  (n {r['n_true']})")
        record = {
            "threshold": thr,
            "previous_threshold": old,
            "criterion": "max mean Jaccard over the validation movies, precision >= 0.9 on the sparse ones "
                         "(95 % one-sided lower bound)",
            "matching": "hungarian, 250 nm",
            "seeds": [int(c.seed) for _, c in configs],
            "thresholds_swept": [float(THRESHOLDS[0]), float(THRESHOLDS[-1]), 0.05],
            "movies": rows,
            "mean_jaccard_curve": [round(float(v), 4) for v in sw["jaccard"].mean(axis=0)],
            "curves": {q: sw[q].astype(int).tolist() for q in ("tp", "fp", "fn")},
        }
        out[name] = record
        if a.write:
            _write(path, ck, record)
    if a.json:
        with open(a.json, "w") as f:  # one model per line
            f.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in out.items()))
            f.write("\n}\n")


if __name__ == "__main__":
    main()
