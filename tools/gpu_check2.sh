#!/usr/bin/env bash
# Second GPU check: the sequential-offload traceback and low-VRAM figures (view batch 4).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
python3 -c "
from pathlib import Path
from demofusion_app.models.synthetic import save_tiny_model
save_tiny_model(Path('/tmp/tiny'), 'sdxl', 16)"
timeout 60 python3 -m demofusion_app --verbose bench --model /tmp/tiny --memory sequential-offload --width 256 --height 256 --steps 2 --dtype float16
python3 -c "
import torch
from demofusion_app.models.synthetic import build_sdxl_shaped_pipeline
build_sdxl_shaped_pipeline('cuda', torch.float16).save_pretrained('/tmp/sdxl-random')"
for mode in none model-offload; do
  timeout 100 python3 -m demofusion_app bench --model /tmp/sdxl-random --memory $mode --width 2048 --height 2048 --steps 10 --view-batch-size 4 --dtype float16
done
timeout 100 python3 -m demofusion_app --verbose bench --model /tmp/sdxl-random --memory sequential-offload --width 1024 --height 1024 --steps 2 --view-batch-size 4 --dtype float16
} 2>&1 | grep -v -i "torchvision\|Writing model" | tee "$OUT/log2.txt"
