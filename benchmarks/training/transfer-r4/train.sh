#!/bin/sh
# Fine-tune cpu-fast on real bodies (round 4); rerun this same command to resume.
# Round 3 (real scans in half the draws, 40 synthetic scans) fitted the real bodies but
# lost synthetic variety; this round keeps stage 2's 200 synthetic scans, draws the real
# scans in a quarter of the samples, at the same constant rate. Every epoch's model goes
# to /tmp/work/epochs-transfer-r4 for weight averaging (average_weights.py).
exec "$(dirname "$0")/../_train.sh" transfer-r4 --init bmdqct/segment/weights/cpu-fast.keras \
    --generator training --synthetic 200 --synthetic-seed-start 10000 \
    --validation 4 --data /tmp/work/real_cases/totalsegmentator=totalsegmentator \
    --data /tmp/work/real_cases/verse=verse --data-fraction 0.25 \
    --epochs 20 --steps-per-epoch 50 --learning-rate 5e-5 --lr-patience 99 --seed 14
