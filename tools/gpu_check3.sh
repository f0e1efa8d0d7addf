#!/usr/bin/env bash
# Third GPU check: sequential offload through the engine after the prompt-encoder fix (tiny model).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
python3 -c "
from pathlib import Path
from demofusion_app.models.synthetic import save_tiny_model
save_tiny_model(Path('/tmp/tiny'), 'sdxl', 16)"
for mode in sequential-offload none; do
  timeout 60 python3 -m demofusion_app --verbose bench --model /tmp/tiny --memory $mode --width 256 --height 256 --steps 2 --dtype float16 2>&1 | grep -v -i torchvision | tail -6
done
