#!/bin/bash
# torchrun: the same fit on NNODES machines of GPUS GPUs each, without a scheduler. Run this on every node:
#   NNODES=2 GPUS=8 MASTER_ADDR=node0.example.org bash configs/cluster/torchrun.sh [--more scarce fit options]
# torchrun starts one process per GPU and rendezvouses the nodes through c10d on MASTER_ADDR:MASTER_PORT (any node
# can be the host; ranks are assigned as nodes join). Lightning reads the ranks torchrun sets. A failed process
# ends the run on every node (no restarts: a resumed fit continues with --ckpt_path last, on any world size).
set -euo pipefail
: "${NNODES:?set NNODES (machines)}" "${GPUS:?set GPUS (GPUs per machine)}" "${MASTER_ADDR:?set MASTER_ADDR}"
CONFIG=${CONFIG:-configs/fcn8s_cityscapes.yaml}
TORCHRUN=${TORCHRUN:-torchrun}  # a stand-in for the tests: TORCHRUN=... bash configs/cluster/torchrun.sh
export OMP_NUM_THREADS=1
$TORCHRUN --nnodes "$NNODES" --nproc-per-node "$GPUS" --rdzv-backend c10d \
  --rdzv-endpoint "$MASTER_ADDR:${MASTER_PORT:-29500}" --rdzv-id "${RUN_ID:-scarce}" --max-restarts 0 \
  -m scarce fit --config "$CONFIG" \
  --config configs/trainer/gpu.yaml --config configs/trainer/ddp.yaml --config configs/trainer/bf16.yaml \
  --trainer.devices="$GPUS" --trainer.num_nodes="$NNODES" --ckpt_path last "$@"
