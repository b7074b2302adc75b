#!/bin/sh
# Fine-tune cpu-fast on real bodies (round 3); rerun this same command to resume.
# Round 2 drew the real scans in 40 % of samples at 2e-5, and the synthetic validation's
# plateau rule halved the rate to 2.5e-6 by epoch 12: it never fitted the real bodies.
# This round draws them in half the samples at 5e-5 and keeps the rate (patience 99);
# every epoch's weights are kept outside the repository and judged on real bodies and
# on the held-out synthetic configuration, not on the synthetic validation Dice alone.
exec "$(dirname "$0")/../_train.sh" transfer-r3 --init bmdqct/segment/weights/cpu-fast.keras \
    --generator training --synthetic 40 --synthetic-seed-start 10000 \
    --validation 4 --data /tmp/work/real_cases/totalsegmentator=totalsegmentator \
    --data /tmp/work/real_cases/verse=verse --data-fraction 0.5 \
    --epochs 30 --steps-per-epoch 50 --learning-rate 5e-5 --lr-patience 99 --seed 13
