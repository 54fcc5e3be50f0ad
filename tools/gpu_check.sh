#!/usr/bin/env bash
# Every entry point end to end on a CUDA machine, one line per step ("ok STEP (N s)" or "FAIL STEP: last words").
#
#   RESNET_CIFAR_DATA=/path/to/cifar-10-batches-bin bash tools/gpu_check.sh [OUT_DIR]
#
# Runs from source (no venv needed: PyTorch with CUDA, numpy, pillow, matplotlib, safetensors, pyyaml, tqdm, pytest
# and onnx are enough). Exits non-zero if any step failed. DEVICE=cpu runs the same steps on a CPU (to check the
# script itself where no GPU is at hand).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
py="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
failed=0

step() {  # step NAME COMMAND...: run it, log to OUT/NAME.log, print one line
  local name=$1; shift
  local started=$SECONDS
  if "$@" >"$out/$name.log" 2>&1; then
    echo "ok   $name ($((SECONDS - started)) s)"
  else
    echo "FAIL $name (exit $?): $(tail -n 2 "$out/$name.log" | tr '\n' ' ')"
    failed=1
  fi
}

rc() { "$py" -m resnet_cifar "$@"; }

interrupted_then_resumed() {  # SIGINT mid-run (after the first epoch's line), then --resume to the end
  "$py" -m resnet_cifar train --config configs/default.yaml --device "$device" --name resumed --output-dir "$out/runs" --progress lines \
    --no-plots &
  local pid=$!  # Python itself (not a subshell running a function), so that it gets the signal
  for _ in $(seq 1 600); do  # metrics.csv gains its first row when epoch 1 ends
    [ "$(cat "$out/runs/resumed/metrics.csv" 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.2
  done
  kill -INT "$pid"
  wait "$pid"
  local code=$?
  [ "$code" -eq 130 ] || { echo "expected exit 130 after SIGINT, got $code"; return 1; }
  rc train --resume "$out/runs/resumed" | tee /dev/stderr | tail -n 1 | grep -q '^test_accuracy='
}

"$py" -c "from PIL import Image; Image.new('RGB', (64, 48), (30, 90, 200)).save('$out/blue.png')"

if [ "$device" = cuda ]; then
  step cuda-present "$py" -c "import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))"
fi
step runtime "$py" -c "from resnet_cifar.runtime import choose_runtime; r = choose_runtime('$device'); \
print(r.describe())"
step train-default rc train --config configs/default.yaml --device "$device" --output-dir "$out/runs" --name default
step resume-after-sigint interrupted_then_resumed
for level in 0 1 2; do
  step "evaluate-tta$level" rc evaluate "$out/runs/default" --tta "$level"
done
step evaluate-reproduces bash -c "diff <(tail -n 1 '$out/train-default.log') <(tail -n 1 '$out/evaluate-tta1.log')"
step plot rc plot "$out/runs/default"
step predict-json rc predict "$out/blue.png" "$out/runs/default/inference.png" --json --weights "$out/runs/default"
step predict-shipped rc predict "$out/blue.png" --json
step export-onnx rc export --format onnx --weights "$out/runs/default" --output "$out/model.onnx"
step export-torchscript rc export --format torchscript --device "$device" --weights "$out/runs/default" \
  --output "$out/model.pt"
step cuda-tests "$py" -m pytest -q -p no:cacheprovider tests/test_models.py tests/test_machine_kinds.py \
  tests/test_inference.py -k "cuda or CUDA or kinds or gpu"

echo "logs in $out"
exit $failed
