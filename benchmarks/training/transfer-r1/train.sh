#!/bin/sh
# Fine-tune cpu-fast for transfer to real CT (round 1); rerun this same command to resume.
exec "$(dirname "$0")/../_train.sh" transfer-r1 --init bmdqct/segment/weights/cpu-fast.keras \
    --generator transfer --transfer-augment --synthetic 60 --synthetic-seed-start 20000 \
    --validation 4 --data /tmp/work/real_cases/totalsegmentator=totalsegmentator \
    --data /tmp/work/real_cases/verse=verse --data-fraction 0.2 \
    --epochs 40 --steps-per-epoch 50 --learning-rate 5e-5 --seed 11
