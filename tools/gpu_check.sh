#!/usr/bin/env bash
# One prepared GPU check (device tool): bench the sampler on a full-size SDXL architecture with random weights.
# Needs the wheels in .whl/ (diffusers, compel, platformdirs, importlib_metadata, lazy_importer); writes to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
run() { echo "== $*"; timeout "${T:-240}" python3 -m demofusion_app "$@"; echo "exit $?"; }
{
  T=200 run bench --width 2048 --height 2048 --steps 50 --dtype float16 --json "$OUT/b2048.json"
  T=200 run bench --width 4096 --height 4096 --steps 10 --dtype float16 --json "$OUT/b4096.json"
  # Memory modes: the same random SDXL-shaped model saved as a diffusers folder, loaded through the product's loader.
  python3 -c "
import torch
from demofusion_app.models.synthetic import build_sdxl_shaped_pipeline
build_sdxl_shaped_pipeline('cuda', torch.float16).save_pretrained('/tmp/sdxl-random')
print('saved')"
  for mode in none model-offload; do
    T=120 run bench --model /tmp/sdxl-random --memory "$mode" --width 2048 --height 2048 --steps 4 --dtype float16
  done
  T=150 run bench --model /tmp/sdxl-random --memory sequential-offload --width 2048 --height 2048 --steps 1 --dtype float16 --no-decode
  [ -f .whl/models7/gpu_adapters.py ] && timeout 120 python3 .whl/models7/gpu_adapters.py
} 2>&1 | grep -v -i "torchvision" | tee "$OUT/log.txt"
