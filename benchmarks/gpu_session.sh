#!/usr/bin/env bash
# Everything this project checks on a CUDA machine, in one run that ends by DEADLINE_S seconds
# (default 540; sized for a lent H100/H200 session with 15 minutes of device time, start included):
#   1. DDP smoke test: torch.distributed.run (NCCL, 1 process) trains the tiny config for one epoch
#   2. benchmarks/gpu_precision.py: CUDA fp32/bf16/fp16 against CPU fp32 (shipped weights, val split)
#   3. benchmarks/bench_model.py --device cuda --batch 1 32, with irsam detect end to end on a clip
#   4. trainings side by side on the one GPU, in the time left (epochs sized by a 2-epoch probe of each):
#        ft512       fine-tune the shipped weights at the paper's 512 crops, lr 1e-4
#        scratch512  from scratch at 512 crops, lr 5e-4 (no MobileSAM weights offline)
#        scratch512h from scratch at 512 crops, lr 1e-3
#      (RUNS="cont512 scratch512s1 ..." picks others: cont512 restarts the shipped weights' schedule at
#      lr 2e-4, scratch512sN is scratch512 with seed N, scratch512esN the same keeping a moving average
#      of the weights (--ema-decay 0.995), scratch512dN the same with all 8 orientations of the crops
#      (--orientations dihedral), scratch512wN the dN run with a wider scale jitter; VAL_EVERY=2 validates
#      every other epoch; BATCH=16 trains every run at
#      batch 16 instead of 8, for one long run alone: RUNS=scratch512d0 BATCH=16 VAL_EVERY=5)
#   5. the best checkpoints in float16 under $OUT: the 3 runs with the highest validation IoU, as 8 files
#      come back; then, in the time left, their validation split (none and flips, refined) as
#      benchmarks/eval_sirst.py prints it; the test split is scored later, on the run chosen by validation
# Runs are written to $WORK (default /tmp/irsam_gpu_work); $OUT (default runs/gpu) gets logs.tgz
# (rewritten after every step) and each best checkpoint in float16, split into 15 MB parts (cat them
# back together).
#
#   DATA=device_data/nuaa-sirst CLIP=device_data/IR_DRONE_156 OUT=runs/gpu bash benchmarks/gpu_session.sh
# EPOCH_COST=8.3,75 skips the probe, which leaves about 90 s more for training (seconds per epoch, and
# seconds once per run for start-up, the first validation's kernel choices and the threshold sweep).
# Measured: three runs sharing an H200, 8.3,75 (session 6); three sharing an H100, 8.6 s an epoch, 45
# epochs in DEADLINE_S=560 (session 8); four with VAL_EVERY=2 on an H100, 9.2 s, 40 epochs with
# EPOCH_COST=9.5,80 (session 9); one alone at BATCH=16 on an H100, 2.5-2.7 s an epoch without
# validation (session 9), so EPOCH_COST=3.2,60 with VAL_EVERY=5 is a first guess for the long run.
# SKIP_CHECKS=1 leaves out steps 1-3, SKIP_BENCH=1 step 3, SKIP_TRAIN=1 steps 4-5; DEVICE=cpu
# CONFIG=tiny CROP=128 PY=.venv/bin/python rehearses the flow on a CPU; WORKERS (default 4) sets the
# trainings' data loader workers. DATA and CLIP default to ../shared/data/nuaa-sirst and
# ../shared/data/sequences/IR_DRONE_156; the device gets the checkout only: copy the data into a
# git-ignored folder (device_data/) and carry it.
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
WORKERS=${WORKERS:-4}
SPLITS=$DATA/splits/idx_427
LOGS=$WORK/logs
mkdir -p "$LOGS" "$OUT"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
stamp() { echo "[$(elapsed) s] $*" | tee -a "$LOGS/session.log"; }
# logs may change while tar reads them (trainings running): keep what it wrote
pack() { tar -czf "$OUT/logs.tgz.tmp" -C "$WORK" logs 2>/dev/null; [ -s "$OUT/logs.tgz.tmp" ] && mv "$OUT/logs.tgz.tmp" "$OUT/logs.tgz"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$LOGS/gpu.txt"

train() {  # name epochs extra-args...
  local name=$1 epochs=$2; shift 2
  $PY -m app.cli train --data "$DATA" --split-train "$SPLITS/train.txt" --split-val "$SPLITS/val.txt" \
    --config "$CONFIG" --batch-size "${BATCH:-8}" --crop "$CROP" --device "$DEVICE" --precision bf16 --workers "$WORKERS" \
    --epochs "$epochs" --val-every "${VAL_EVERY:-1}" --out "$WORK/$name" "$@"
}
read -r -a RUNS <<< "${RUNS:-ft512 scratch512 scratch512h}"
# the shipped weights are a paper network: another CONFIG (the tiny rehearsal) starts these runs from scratch
SHIPPED_INIT=$([ "$CONFIG" = paper ] && echo "--init resources/weights/irsam_paper_sirst.pt")
run_args() {
  case $1 in
    ft512) echo $SHIPPED_INIT --lr 1e-4 ;;
    cont512) echo $SHIPPED_INIT --lr 2e-4 ;;  # the shipped weights, schedule restarted
    scratch512) echo --lr 5e-4 ;;
    scratch512s*) echo --lr 5e-4 --seed "${1#scratch512s}" ;;  # scratch512s1, s2, ...: other seeds
    scratch512es*) echo --lr 5e-4 --ema-decay 0.995 --seed "${1#scratch512es}" ;;  # weight average kept (seed N)
    scratch512d*) echo --lr 5e-4 --orientations dihedral --seed "${1#scratch512d}" ;;  # all 8 orientations (seed N)
    # scratch512wN: scratch512dN with a wider scale jitter (SCALE_RANGE, default 0.7 2.2; the paper's 0.8 1.5),
    # more extended targets seen (seed N)
    scratch512w*) echo --lr 5e-4 --orientations dihedral --scale-range ${SCALE_RANGE:-0.7 2.2} --seed "${1#scratch512w}" ;;
    scratch512h) echo --lr 1e-3 ;;
    *) echo "unknown run $1" >&2; return 1 ;;
  esac
}

if [ -z "${SKIP_CHECKS:-}" ]; then
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
fi

if [ -n "${SKIP_TRAIN:-}" ]; then stamp "done (training skipped)"; pack; exit 0; fi
if [ -n "${EPOCH_COST:-}" ]; then
  stamp "4. no probe: EPOCH_COST=$EPOCH_COST (seconds per epoch, seconds once per run)"
else
  stamp "4. probe: two epochs of each run, side by side"
  PROBE_T0=$(date +%s)
  for name in "${RUNS[@]}"; do
    train "probe_$name" 2 $(run_args "$name") > "$LOGS/probe_$name.log" 2>&1 &
  done
  wait; PROBE_S=$(( $(date +%s) - PROBE_T0 ))
fi
# what is left, less about 60 s for the checkpoint conversions after training
TRAIN_S=$(( DEADLINE_S - $(elapsed) - 60 ))
if [ "$TRAIN_S" -lt 60 ]; then stamp "   no time left to train"; pack; exit 0; fi
LIMIT=$($PY -c "print(round(($TRAIN_S - 15) / 60, 2))")
for name in "${RUNS[@]}"; do
  # epoch 2 (kernels chosen, validation shapes seen) gives the cost of an epoch; the rest of the
  # probe's wall time is start-up and threshold calibration, paid once more by the real run
  EPOCHS=$($PY -c "
import json
if '${EPOCH_COST:-}':
    per, once = map(float, '${EPOCH_COST:-}'.split(','))
else:
    r = [json.loads(l) for l in open('$WORK/probe_$name/metrics.jsonl')]
    once = ${PROBE_S:-0} - sum(x['seconds'] + x.get('val_seconds', 0) for x in r)
    per = r[1]['seconds'] + r[1].get('val_seconds', 0) + 0.5
print(max(1, int(0.95 * ($TRAIN_S - once - 10) / per)))" 2>/dev/null || echo 0)
  stamp "   $name: ${TRAIN_S} s left -> ${EPOCHS} epochs $([ -z "${EPOCH_COST:-}" ] && tail -n 1 "$WORK/probe_$name/metrics.jsonl" | head -c 300)"
  [ "$EPOCHS" -gt 0 ] && train "$name" "$EPOCHS" $(run_args "$name") --max-minutes "$LIMIT" > "$LOGS/$name.log" 2>&1 &
done
pack
( while sleep 60; do pack; done ) &  # so a call cut short still brings the epochs back
PACKER=$!
wait $(jobs -p | grep -v "^$PACKER$")
kill "$PACKER" 2>/dev/null
for name in "${RUNS[@]}"; do
  cp "$WORK/$name/metrics.jsonl" "$LOGS/$name.metrics.jsonl" 2>/dev/null
  stamp "   $name: $(grep -E 'decision threshold|stopping' "$LOGS/$name.log" | tail -2 | tr '\n' ' ')"
done
pack

# the runs whose best validation IoU is highest, at most 3 (two 15 MB parts each, and logs.tgz)
read -r -a BACK <<< "$($PY -c "
import json, sys
best = {}
for name in sys.argv[1:]:
    try:
        best[name] = max(json.loads(l).get('val_iou') or -1 for l in open('$WORK/' + name + '/metrics.jsonl'))
    except (OSError, ValueError):
        pass
print(' '.join(sorted(best, key=best.get, reverse=True)[:3]))" "${RUNS[@]}")"
stamp "5. best checkpoints in float16: ${BACK[*]}"
for name in "${BACK[@]}"; do
  [ -f "$WORK/$name/best.pt" ] || continue
  $PY -c "
from model.checkpoint import load_checkpoint, save_checkpoint; import torch
m, c, meta = load_checkpoint('$WORK/$name/best.pt'); save_checkpoint('$WORK/${name}_best16.pt', m, c, meta, dtype=torch.float16)"
  split -b 15000000 -d "$WORK/${name}_best16.pt" "$OUT/${name}_best16.pt.part"
done
pack
for name in "${BACK[@]}"; do
  LEFT=$(( DEADLINE_S - $(elapsed) - 5 ))
  [ -f "$WORK/${name}_best16.pt" ] && [ "$LEFT" -gt 20 ] || continue
  timeout "$LEFT" $PY benchmarks/eval_sirst.py --weights "$WORK/${name}_best16.pt" --data "$DATA" --split val --methods \
    --device "$DEVICE" --tta none flips --json "$LOGS/val_$name.json" > "$LOGS/val_$name.txt" 2>&1
  stamp "   $name validation: $(grep '^| irsam' "$LOGS/val_$name.txt" | tr '\n' ' ')"
  pack
done
stamp "done"
pack
