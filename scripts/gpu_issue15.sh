#!/usr/bin/env bash
# Prepared GPU run for issue 15 (decode at high density), for a session that is lent a GPU (`device`).
# No GPU has been lent to this project in 13 sessions; the run is prepared so that the first session that has
# one spends its device minutes training, not setting up. The device machine's python3 has torch, numpy, scipy,
# tifffile, scikit-image, pandas, h5py and pyyaml; training needs nothing else (checked on CPU with dask, napari
# and Qt made unimportable). From the repository root, through the device tool:
#
#     run(command="bash scripts/gpu_issue15.sh", timeout_s=600)
#
# It fine-tunes the shipped decode.pt with the session-8 recipe (default microscope at 0.1-10 /um2 with
# filaments and clusters, plus randomised microscopes, cosine learning rate), scaled up: 30 % randomised
# batches, batch 64, MINUTES (default 8) of training, and validation on the default microscope only. It writes
# $OUT/decode_gpu.pt, $OUT/decode_gpu_history.json and $OUT/log.txt. The candidate is then judged on CPU, with
# the decision rule written in docs/weights.md ("Prepared: a GPU run for issue 15") before any result is seen.
#
# CPU smoke test (what tests/test_decode_training_options.py runs, a few steps):
#     DEVICE=cpu MINUTES=0.1 BATCH=4 OUT=/tmp/out bash scripts/gpu_issue15.sh
set -euo pipefail
OUT=${OUT:-/tmp/out}
MINUTES=${MINUTES:-8}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-64}
MAX_STEPS=${MAX_STEPS:-1000000}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$OUT/log.txt"
"$PY" scripts/train_decode.py --device "$DEVICE" --init decode --randomize --default-fraction 0.7 --train-adapt auto \
    --density-range 0.1 10 --p-filaments 0.4 --p-clusters 0.15 --batch "$BATCH" --lr 3e-4 --schedule cosine \
    --min-lr 1e-6 --warmup-steps 200 --grad-clip 5 --minutes "$MINUTES" --max-steps "$MAX_STEPS" \
    --steps-per-epoch 500 --val-batches 16 --val-density-range 0.5 8 --seed 15 --threads 8 \
    --out "$OUT/decode_gpu.pt" --history "$OUT/decode_gpu_history.json" --no-eval 2>&1 | tee -a "$OUT/log.txt"
