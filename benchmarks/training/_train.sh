#!/bin/sh
# Shared runner of the fine-tuning rounds: _train.sh RUN [bmdqct train options ...]
# writes benchmarks/training/RUN/{cpu-fast-transfer.keras,ckpt/}, every epoch's model to
# /tmp/work/epochs-RUN (to judge epochs on real scans), and keeps the prepared
# crops in /tmp/work/cache-RUN (real-scan crops: never in the repository). Rerunning the
# same round's train.sh resumes it. The real cases are rebuilt outside the repo if missing.
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
RUN=$1
shift
[ -d /tmp/work/real_cases ] || .venv/bin/python benchmarks/training/make_real_cases.py /tmp/work/real_cases
export TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=2
# SRC: the package tree to run (default this checkout; set SRC=/path to run a snapshot)
export PYTHONPATH="${SRC:-$ROOT}"
exec .venv/bin/python -c "import sys; from bmdqct.cli import main; sys.exit(main())" train "$@" \
    -o "benchmarks/training/$RUN/cpu-fast-transfer.keras" \
    --checkpoint-dir "benchmarks/training/$RUN/ckpt" --cache-dir "/tmp/work/cache-$RUN" \
    --snapshot-dir "/tmp/work/epochs-$RUN"
