"""Time and peak memory of the synthetic LDCT generator.

Run:  python benchmarks/bench_synthetic.py [--slices 350] [--repeat 2] [--coarse 5]

Renders one 512 x 512 x 350 scan (``synthesize_ldct(seed, n_slices=350)``: C7-L2
range, 1-mm slices, labels included) in a fresh process per repeat and prints the
wall time and the process's peak resident memory (issue 3's bar: <= 15 s and
<= 3 GB on the project machine), then the mean time of coarse training-style scans
(192 x 192, 2-mm pixels and slices; bar: < 1 s). The machine is shared: wall times
grow with its load average (printed); CPU time shows the cost on an idle machine.
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
times = []
cpu = []
for seed in range(int(sys.argv[1])):
    t, c = time.perf_counter(), time.process_time()
    synthesize_ldct(seed, shape=(192, 192), pixel_mm=2.0, slice_mm=2.0)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(" ".join(f"{t:.3f}" for t in times))
print(" ".join(f"{t:.3f}" for t in cpu))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--slices", type=int, default=350)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--coarse", type=int, default=5, help="number of coarse scans to time")
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
        times, cpu = ([float(t) for t in line.split()] for line in lines[-2:])
        print(f"coarse 192x192 2-mm scans: mean {sum(times) / len(times):.2f} s wall "
              f"(min {min(times):.2f}, max {max(times):.2f}), mean CPU time {sum(cpu) / len(cpu):.2f} s, "
              f"over {len(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
