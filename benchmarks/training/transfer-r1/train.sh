#!/bin/sh
# Fine-tune cpu-fast for transfer to real CT; rerun this same command to resume
# (from the repository root or anywhere). Real cases are rebuilt outside the repo.
cd "$(dirname "$0")/../../.."
ROOT=$(pwd)
[ -d /tmp/work/real_cases ] || .venv/bin/python benchmarks/training/make_real_cases.py /tmp/work/real_cases
export TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=2
# SRC: the package tree to run (default this checkout; set SRC=/path to run a snapshot)
export PYTHONPATH="${SRC:-$ROOT}"
exec .venv/bin/python -c "import sys; from bmdqct.cli import main; sys.exit(main())" train --init bmdqct/segment/weights/cpu-fast.keras \
    --generator transfer --transfer-augment --synthetic 60 --synthetic-seed-start 20000 \
    --validation 4 --data /tmp/work/real_cases/totalsegmentator=totalsegmentator \
    --data /tmp/work/real_cases/verse=verse --data-fraction 0.2 \
    --epochs 40 --steps-per-epoch 50 --learning-rate 5e-5 --seed 11 \
    -o benchmarks/training/transfer-r1/cpu-fast-transfer.keras \
    --checkpoint-dir benchmarks/training/transfer-r1/ckpt --cache-dir /tmp/work/cache-transfer-r1
