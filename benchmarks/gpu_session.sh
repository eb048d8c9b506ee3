#!/usr/bin/env bash
# Everything this project checks on a CUDA machine, in one run that ends by DEADLINE_S seconds (sized
# for a lent H100/H200 session with 15 minutes of device time, start included):
#   1. DDP smoke test: torch.distributed.run (NCCL, 1 process) trains the tiny config for one epoch
#   2. benchmarks/gpu_precision.py: CUDA fp32/bf16/fp16 against CPU fp32 (shipped weights, val split)
#   3. benchmarks/bench_model.py --device cuda --batch 1 32, with irsam detect end to end on a clip
#   4. two trainings side by side on the one GPU, in the time left (epochs sized by a 1-epoch probe):
#        ft512   fine-tune the shipped weights at the paper's 512 crops, lr 1e-4
#        scratch from scratch at 512 crops, lr 5e-4 (no MobileSAM weights offline)
#   5. each run's best checkpoint on the test split (none and flips), as benchmarks/eval_sirst.py prints it
# Runs are written to $WORK; $OUT gets logs.tgz (rewritten after every step) and each best checkpoint in
# float16, split into 15 MB parts (cat them back together).
#
#   DATA=device_data/nuaa-sirst CLIP=device_data/IR_DRONE_156 OUT=runs/gpu bash benchmarks/gpu_session.sh
# SKIP_BENCH=1 leaves out step 3, SKIP_TRAIN=1 steps 4-5; DEVICE=cpu CONFIG=tiny CROP=128 PY=.venv/bin/python
# rehearses the flow on a CPU. The device gets the checkout only: copy the data into a git-ignored
# folder (device_data/) and carry it.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}
DATA=${DATA:-../shared/data/nuaa-sirst}
CLIP=${CLIP:-../shared/data/sequences/IR_DRONE_156}
OUT=${OUT:-runs/gpu}
WORK=${WORK:-/tmp/irsam_gpu_work}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-paper}
CROP=${CROP:-512}
DEADLINE_S=${DEADLINE_S:-540}
SPLITS=$DATA/splits/idx_427
LOGS=$WORK/logs
mkdir -p "$LOGS" "$OUT"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
stamp() { echo "[$(elapsed) s] $*" | tee -a "$LOGS/session.log"; }
pack() { tar -czf "$OUT/logs.tgz.tmp" -C "$WORK" logs && mv "$OUT/logs.tgz.tmp" "$OUT/logs.tgz"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$LOGS/gpu.txt"

train() {  # name epochs extra-args...
  local name=$1 epochs=$2; shift 2
  $PY -m app.cli train --data "$DATA" --split-train "$SPLITS/train.txt" --split-val "$SPLITS/val.txt" \
    --config "$CONFIG" --batch-size 8 --crop "$CROP" --device "$DEVICE" --precision bf16 --workers 6 \
    --epochs "$epochs" --out "$WORK/$name" "$@"
}
FT=(--init resources/weights/irsam_paper_sirst.pt --lr 1e-4)
SCRATCH=(--lr 5e-4)

stamp "1. DDP smoke test (torch.distributed.run, 1 process)"
timeout 100 $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m app.cli train --data "$DATA" \
  --split-train "$SPLITS/train.txt" --split-val "$SPLITS/val.txt" --config tiny --epochs 1 --batch-size 8 \
  --crop 128 --device "$DEVICE" --out "$WORK/ddp_tiny" > "$LOGS/ddp_tiny.log" 2>&1
stamp "   exit $?: $(grep -oE 'training .*|epoch 1 \| .*' "$LOGS/ddp_tiny.log" | tr '\n' ' ' | cut -c1-400)"
stamp "   DDP rank checksums: $(grep -o '"param_checksums": \[[^]]*\]' "$WORK/ddp_tiny/metrics.jsonl" 2>/dev/null)"
pack

stamp "2. CUDA precision against CPU fp32"
timeout 100 $PY benchmarks/gpu_precision.py --data "$DATA" --json "$LOGS/gpu_precision.json" > "$LOGS/gpu_precision.txt" 2>&1
stamp "   exit $?"; cat "$LOGS/gpu_precision.txt"
pack

stamp "3. model speed"
[ -n "${SKIP_BENCH:-}" ] || timeout 150 $PY benchmarks/bench_model.py --device "$DEVICE" --batch 1 32 --repeats 20 --threads 8 --clip "$CLIP" \
  --frames 60 --json "$LOGS/bench_model_cuda.json" > "$LOGS/bench_model_cuda.txt" 2>&1
stamp "   exit $?"; cat "$LOGS/bench_model_cuda.txt"
pack

if [ -n "${SKIP_TRAIN:-}" ]; then stamp "done (training skipped)"; pack; exit 0; fi
stamp "4. probe: one epoch of each run, side by side"
train probe_ft 1 "${FT[@]}" > "$LOGS/probe_ft.log" 2>&1 &
train probe_scratch 1 "${SCRATCH[@]}" > "$LOGS/probe_scratch.log" 2>&1 &
PROBE_T0=$(date +%s); wait; PROBE_S=$(( $(date +%s) - PROBE_T0 ))
EPOCH_S=$($PY -c "import json; print(max(json.loads(open('$WORK/'+n+'/metrics.jsonl').readline())['seconds'] for n in ('probe_ft','probe_scratch')))")
# what is left, less about 100 s for the test evaluations and checkpoint conversions after training
TRAIN_S=$(( DEADLINE_S - $(elapsed) - 100 ))
# the probe's wall time = start-up + one epoch + validation, saving and threshold calibration
EPOCHS=$($PY -c "e=$EPOCH_S; w=$PROBE_S; per=e+max(2.0,(w-e)*0.25); print(max(1,int(($TRAIN_S-20)/per)))")
stamp "   probe wall ${PROBE_S} s, training epoch ${EPOCH_S} s; ${TRAIN_S} s left for training -> ${EPOCHS} epochs per run"
pack

if [ "$TRAIN_S" -lt 60 ]; then stamp "   no time left to train"; pack; exit 0; fi
LIMIT=$($PY -c "print(round(($TRAIN_S - 15) / 60, 2))")
train ft512 "$EPOCHS" "${FT[@]}" --max-minutes "$LIMIT" > "$LOGS/ft512.log" 2>&1 &
train scratch "$EPOCHS" "${SCRATCH[@]}" --max-minutes "$LIMIT" > "$LOGS/scratch.log" 2>&1 &
wait
for name in ft512 scratch; do
  cp "$WORK/$name/metrics.jsonl" "$LOGS/$name.metrics.jsonl" 2>/dev/null
  stamp "   $name: $(grep -E 'decision threshold|stopping' "$LOGS/$name.log" | tail -2 | tr '\n' ' ')"
done
pack

stamp "5. test split"
for name in ft512 scratch; do
  [ -f "$WORK/$name/best.pt" ] || continue
  timeout 60 $PY benchmarks/eval_sirst.py --weights "$WORK/$name/best.pt" --data "$DATA" --split test --methods \
    --device "$DEVICE" --tta none flips --json "$LOGS/test_$name.json" > "$LOGS/test_$name.txt" 2>&1
  stamp "   $name: $(grep '^| irsam' "$LOGS/test_$name.txt" | tr '\n' ' ')"
  $PY -c "
from model.checkpoint import load_checkpoint, save_checkpoint; import torch
m, c, meta = load_checkpoint('$WORK/$name/best.pt'); save_checkpoint('$WORK/${name}_best16.pt', m, c, meta, dtype=torch.float16)"
  split -b 15000000 -d "$WORK/${name}_best16.pt" "$OUT/${name}_best16.pt.part"
  pack
done
stamp "done"
pack
