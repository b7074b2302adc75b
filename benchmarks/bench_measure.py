"""Time and peak memory of the whole measurement pipeline on a 512 x 512 x 350 chest CT.

Run:  python benchmarks/bench_measure.py [--slices 350] [--model PATH] [--labels truth]

The scan (synthetic, 0.75 mm pixels, 1 mm slices, C7 to L3) is written as
NIfTI, then measured in a fresh process exactly as a user would
(``bmdqct.measure(path, calibration=...)``: reading, segmentation, labelling,
rib check, VOIs, calibration, classification), twice: the first call includes
TensorFlow's start-up and graph tracing. Prints the wall time of each stage and
the measuring process's peak resident memory (its own high-water mark, VmHWM:
``ru_maxrss`` would report at least this script's resident size when it
started the process, about 1.5 GB with the synthesized scan in memory). Issue
5's bar: <= 30 s and <= 4 GB on the project machine.

``--labels truth`` measures everything after the segmentation: the scan's true
4-class map is written as NIfTI too and given as ``labels=`` (as
``bmdqct measure --labels ... --label-scheme classes`` does), so no model is
loaded; add the segmentation's own time and memory (benchmarks/bench_segment.py)
to compare with the bar.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from bmdqct.calibration import Calibration
from bmdqct.measure import measure
labels = None if sys.argv[3] == "-" else sys.argv[3]
model = None
if labels is None:
    from bmdqct.segment import load_model
    model = load_model(None if sys.argv[2] == "-" else sys.argv[2])
t_import = time.perf_counter() - t0
cal = Calibration(slope=1 / 1.424, intercept=0.4 / 1.424)
runs = []
for attempt in range(2):
    t = time.perf_counter()
    res = measure(sys.argv[1], calibration=cal, model=model, labels=labels,
                  label_scheme=None if labels is None else "classes")
    runs.append({"wall_s": time.perf_counter() - t, "stages_s": dict(res.provenance["timings_s"]),
                 "levels_used": list(res.levels_used), "bmd": res.bmd_l1_l2_mg_cm3,
                 "flags": [str(f) for f in res.flags]})
# VmHWM: this process's own high-water mark. ru_maxrss is not: Linux carries the parent's
# resident size at fork into the child's ru_maxrss (here the synthesized scan and its truth).
try:
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024 ** 2
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print(json.dumps({"import_and_model_s": t_import, "runs": runs, "peak_rss_gb": peak}))
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=350)
    parser.add_argument("--model", default=None, help="model file (default: shipped weights)")
    parser.add_argument("--seed", type=int, default=50002)
    parser.add_argument("--labels", choices=["model", "truth"], default="model",
                        help="segment with the model (default), or give the true 4-class map as labels")
    args = parser.parse_args(argv)

    from bmdqct.io import write_nifti
    from bmdqct.synthetic import synthesize_ldct

    t0 = time.perf_counter()
    ct, truth = synthesize_ldct(args.seed, shape=(512, 512), pixel_mm=0.75, slice_mm=1.0,
                                cranial="C7", caudal="L3", n_slices=args.slices)
    print(f"CT {ct!r} ({ct.hu.nbytes / 1e9:.2f} GB float32), synthesized in {time.perf_counter() - t0:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_nifti(ct, Path(tmp) / "bench.nii.gz")
        labels = "-"
        if args.labels == "truth":
            labels = str(write_nifti(truth.classes, Path(tmp) / "bench_classes.nii.gz"))
        del ct
        out = subprocess.run([sys.executable, "-c", _CHILD, str(path), args.model or "-", labels],
                             check=True, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"import{' + model load' if args.labels == 'model' else ''}: {report['import_and_model_s']:.1f} s"
          + ("" if args.labels == "model" else " (labels: the true 4-class map; no segmentation)"))
    for i, run in enumerate(report["runs"], start=1):
        stages = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in run["stages_s"].items() if k != "total_s")
        print(f"measure, call {i}: {run['wall_s']:.1f} s ({stages})")
    last = report["runs"][-1]
    print(f"levels used {last['levels_used']}, BMD {last['bmd']}, flags {last['flags']}")
    truth_l1l2 = (truth.density_mg_cm3.get("L1", float("nan")) + truth.density_mg_cm3.get("L2", float("nan"))) / 2
    print(f"true L1-L2 density {truth_l1l2:.1f} mg/cm3")
    print(f"peak resident memory of the measuring process: {report['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
