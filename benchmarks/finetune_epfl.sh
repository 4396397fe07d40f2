#!/usr/bin/env bash
# Fine-tune the shipped DECODE-like weights for the camera / PSF / density of the EPFL 2013
# Bundled Tubes movie, on SIMULATED data only (benchmarks/epfl_sim.yaml, read off the movie's
# statistics; the movie itself is never trained on). This is the user's "fine-tune for my
# microscope" path (Training widget / `napari-smlm train --init`), on 1 CPU thread.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-12}
OUT=${OUT:-benchmarks/checkpoints/decode_epfl_finetune.pt}
mkdir -p "$(dirname "$OUT")"
.venv/bin/napari-smlm train --model decode --init decode -o "$OUT" \
  --config benchmarks/epfl_sim.yaml --crop 40 --batch-size 16 --steps 1000000 --steps-per-epoch 200 \
  --lr 5e-4 --seed 2 --threads 1 --minutes "$MINUTES" \
  --model-config '{"input_offset": 10.5, "input_scale": 100.0, "density_range": [0.5, 8.0]}'
