"""Accuracy and speed of bmdqct.calibration on synthetic scans; prints the figures.

1. Phantom calibration: the true scanner line (a, b) against the line recovered
   from synthetic phantom scans, per phantom model and noise level.
2. Internal (phantomless, experimental) calibration: equivalent densities from
   reference subjects scanned with the phantom's scanner line, applied to other
   subjects; difference from the phantom calibration at 50, 100 and 200 HU.
   Also with the scanner line changed after the reference scans, which the
   tissues of the synthetic physics do not follow (tissue HU depend on kVp only).

Run: ``python benchmarks/bench_calibration.py [--quick]`` (about a minute; --quick
for a few seconds).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bmdqct.calibration import build_internal_reference, calibrate_phantom, find_reference_tissues, internal_calibration
from bmdqct.synthetic import synthesize_ldct, synthesize_phantom_scan

HU_POINTS = np.array([50.0, 100.0, 200.0])


def phantom_accuracy(seeds, noises) -> None:
    print("1. phantom calibration: recovery of the scanner line HU = a + b * rho (a = -30 HU, b = 1.25 HU per mg/cm3)")
    print(f"   {'phantom':<20} {'noise HU':>8} {'max |db/b| %':>13} {'max |da| HU':>12} {'max |dBMD| @80/120':>19} "
          f"{'s per scan':>10}")
    a_true, b_true = -30.0, 1.25
    for phantom in ("mindways-model3-ct", "mindways-model3-qa", "qrm-bdc-3", "qrm-bdc-6", "esp", "generic-rods"):
        for noise in noises:
            db, da, dbmd, seconds = [], [], [], []
            for seed in seeds:
                volume, truth = synthesize_phantom_scan(phantom, seed, a_true, b_true, noise_hu=noise)
                start = time.perf_counter()
                cal = calibrate_phantom(volume, truth.certificate)
                seconds.append(time.perf_counter() - start)
                if cal.mineral == "HA":
                    cal = cal.to_mineral("K2HPO4", method="faulkner1993")
                b, a = 1.0 / cal.slope, -cal.intercept / cal.slope
                db.append(abs(b / b_true - 1.0) * 100.0)
                da.append(abs(a - a_true))
                dbmd.append(max(abs(cal.apply(a_true + b_true * rho) - rho) for rho in (80.0, 120.0)))
            print(f"   {phantom:<20} {noise:8.0f} {max(db):13.3f} {max(da):12.2f} {max(dbmd):19.2f} "
                  f"{np.median(seconds):10.3f}")


def internal_accuracy(n_reference: int, patients, grid: dict) -> None:
    print("\n2. internal calibration (experimental) vs phantom calibration, same scanner, 120 kV")
    phantom, truth = synthesize_phantom_scan("mindways-model3-ct", 0)
    phantom_cal = calibrate_phantom(phantom, truth.certificate)
    start = time.perf_counter()
    tissues = [find_reference_tissues(synthesize_ldct(100 + i, **grid)[0]) for i in range(n_reference)]
    reference = build_internal_reference(tissues, phantom_cal)
    print(f"   reference from {n_reference} subjects ({time.perf_counter() - start:.1f} s): "
          + ", ".join(f"{t} {v:.1f}" for t, v in reference.equivalent_mg_cm3.items()) + " mg/cm3")
    for label, line in (("same line", None), ("scanner line changed (a +4 HU, b +3 %)", (-0.4 + 4.0, 1.424 * 1.03))):
        differences, seconds = [], []
        options = dict(grid) if line is None else {**grid, "a_hu": line[0], "b_hu_per_mg_cm3": line[1]}
        for seed in patients:
            patient, _ = synthesize_ldct(seed, **options)
            start = time.perf_counter()
            cal = internal_calibration(patient, reference)
            seconds.append(time.perf_counter() - start)
            target = phantom_cal if line is None else _line_calibration(*line)
            differences.append(cal.apply(HU_POINTS) - target.apply(HU_POINTS))
        d = np.array(differences)
        print(f"   {label}: {len(patients)} subjects, internal - phantom at {HU_POINTS.astype(int).tolist()} HU: "
              f"mean {np.round(d.mean(axis=0), 2).tolist()}, max |.| {np.round(np.abs(d).max(axis=0), 2).tolist()} "
              f"mg/cm3; {np.median(seconds):.2f} s per scan")


def _line_calibration(a_hu, b):
    from bmdqct.calibration import Calibration

    return Calibration(slope=1.0 / b, intercept=-a_hu / b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and subjects")
    args = parser.parse_args()
    seeds = range(2) if args.quick else range(5)
    grid = {"shape": (192, 192), "slice_mm": 3.0, "cranial": "T5", "caudal": "T11", "noise_hu": 25.0}
    phantom_accuracy(seeds, (12.0,) if args.quick else (12.0, 40.0))
    internal_accuracy(1 if args.quick else 3, range(2) if args.quick else range(8), grid)


if __name__ == "__main__":
    main()
