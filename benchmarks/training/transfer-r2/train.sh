#!/bin/sh
# Fine-tune cpu-fast on real bodies (round 2); rerun this same command to resume.
# Round 1 drew heavy transfer augmentation on 70 % of crops and lost synthetic accuracy;
# this round keeps the shipped generator, no transfer augmentation, and draws the two
# real scans in 40 % of samples, at a lower learning rate.
exec "$(dirname "$0")/../_train.sh" transfer-r2 --init bmdqct/segment/weights/cpu-fast.keras \
    --generator training --synthetic 60 --synthetic-seed-start 10000 \
    --validation 4 --data /tmp/work/real_cases/totalsegmentator=totalsegmentator \
    --data /tmp/work/real_cases/verse=verse --data-fraction 0.4 \
    --epochs 24 --steps-per-epoch 50 --learning-rate 2e-5 --seed 12
