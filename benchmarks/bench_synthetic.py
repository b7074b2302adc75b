"""Time and peak memory of the synthetic LDCT generator.

Run:  python benchmarks/bench_synthetic.py [--slices 350] [--repeat 2] [--coarse 5] [--training 10]

Renders one 512 x 512 x 350 scan (``synthesize_ldct(seed, n_slices=350)``: C7-L2
range, 1-mm slices, labels included) in a fresh process per repeat and prints the
wall time and the process's peak resident memory (issue 3's bar: <= 15 s and
<= 3 GB on the project machine), then the mean time of coarse training-style scans
(192 x 192, 2-mm pixels and slices; bar: < 1.5 s), the same with every appearance
option at a heavy setting, and the mean time of scans drawn by
``random_training_options`` (bar: < 3 s). The machine is shared: wall times grow
with its load average (printed); CPU time shows the cost on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

_CHILD = r"""
import resource, sys, time
t0 = time.perf_counter()
from bmdqct.synthetic import synthesize_ldct
t1 = time.perf_counter()
vol, truth = synthesize_ldct(int(sys.argv[1]), n_slices=int(sys.argv[2]))
t2 = time.perf_counter()
use = resource.getrusage(resource.RUSAGE_SELF)
peak = use.ru_maxrss / 1024.0
print(f"{vol.shape} {vol.spacing[1]:.3f} mm {t1 - t0:.2f} {t2 - t1:.2f} {peak:.0f} {use.ru_utime + use.ru_stime:.2f}")
"""

_COARSE = r"""
import sys, time
from bmdqct.synthetic import synthesize_ldct
synthesize_ldct(0, shape=64, pixel_mm=6.0, slice_mm=6.0)  # warm-up (imports, caches)
heavy = dict(cortical_mg_cm3=300.0, cortical_variation=1.0, endplate_mm=1.8, endplate_sclerosis=0.3,
             texture_mg_cm3=50.0, texture_scale_mm=3.0, marrow_mg_cm3=30.0, fat_islands=1.0,
             shape_irregularity=1.0, osteophytes=0.5, disc_height_sd=0.2, vacuum_disc_rate=0.2,
             fat_planes=1.0, soft_texture_hu=10.0)
for extra in ({}, heavy):
    times = []
    cpu = []
    for seed in range(int(sys.argv[1])):
        t, c = time.perf_counter(), time.process_time()
        synthesize_ldct(seed, shape=(192, 192), pixel_mm=2.0, slice_mm=2.0, **extra)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(" ".join(f"{t:.3f}" for t in times))
    print(" ".join(f"{t:.3f}" for t in cpu))
"""

_TRAINING = r"""
import sys, time
import numpy as np
from bmdqct.synthetic import random_training_options, synthesize_ldct
synthesize_ldct(0, shape=64, pixel_mm=6.0, slice_mm=6.0)  # warm-up (imports, caches)
times, cpu, voxels = [], [], []
for seed in range(int(sys.argv[1])):
    opts = random_training_options(np.random.default_rng([seed, 3]))
    t, c = time.perf_counter(), time.process_time()
    vol, _ = synthesize_ldct(seed, **opts)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
    voxels.append(vol.hu.size / 1e6)
print(" ".join(f"{t:.3f}" for t in times))
print(" ".join(f"{t:.3f}" for t in cpu))
print(" ".join(f"{t:.2f}" for t in voxels))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--slices", type=int, default=350)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--coarse", type=int, default=5, help="number of coarse scans to time")
    parser.add_argument("--training", type=int, default=10,
                        help="number of random_training_options scans to time")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for seed in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(seed), str(args.slices)],
                             capture_output=True, text=True, check=True).stdout.split()
        shape, pixel, t_import, t_run, peak, cpu = " ".join(out[:3]), out[3], out[5], out[6], out[7], out[8]
        print(f"full scan seed {seed}: shape {shape}, pixel {pixel} mm: {float(t_run):.2f} s wall "
              f"(+{float(t_import):.2f} s import; process CPU time {float(cpu):.2f} s incl. import), "
              f"peak memory {float(peak):.0f} MB")
    if args.coarse:
        lines = subprocess.run([sys.executable, "-c", _COARSE, str(args.coarse)], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        for what, (t_line, c_line) in zip(("classic", "heavy appearance"), (lines[-4:-2], lines[-2:])):
            times, cpu = ([float(t) for t in line.split()] for line in (t_line, c_line))
            print(f"coarse 192x192 2-mm scans, {what}: mean {sum(times) / len(times):.2f} s wall "
                  f"(min {min(times):.2f}, max {max(times):.2f}), mean CPU time {sum(cpu) / len(cpu):.2f} s, "
                  f"over {len(times)}")
    if args.training:
        lines = subprocess.run([sys.executable, "-c", _TRAINING, str(args.training)], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        times, cpu, voxels = ([float(t) for t in line.split()] for line in lines[-3:])
        print(f"random_training_options scans: mean {sum(times) / len(times):.2f} s wall "
              f"(min {min(times):.2f}, max {max(times):.2f}), mean CPU time {sum(cpu) / len(cpu):.2f} s, "
              f"mean {sum(voxels) / len(voxels):.1f} M voxels (max {max(voxels):.1f}), over {len(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
