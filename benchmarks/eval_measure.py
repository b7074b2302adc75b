"""Accuracy of the whole pipeline on held-out synthetic subjects (issue 5's bars).

Run:  python benchmarks/eval_measure.py [--n 24] [--seed-start 50000] [--model PATH] [--csv OUT.csv]

Each subject is a synthetic low-dose chest CT (``synthesize_ldct``) with a
randomised field of view, grid, kVp, dose, density, rib count and anomalies,
seeded from 50000 on: the segmentation model trains on seeds 10000+ and
validates on 900+, so these subjects are unseen. Every kVp is calibrated from
a synthetic phantom scan of the same scanner (asynchronous calibration, as in
practice). The measurement uses the shipped model only: the synthetic truth is
used to score, never to measure.

Reported (issue 5 bars in brackets):

* T12/L1/L2 named correctly: of the truth bodies of these levels that the scan
  holds whole, the share whose labelled body of that name overlaps the true
  body best (Dice > 0.5) [>= 97.5 %];
* BMD mean absolute error of the measured levels against the true density
  [<= 3 mg/cm3], and of the L1-L2 value against the true L1-L2 mean;
* ACR category agreement with the category of the true L1-L2 density
  [>= 95 %], over all subjects (no category, or a failure, counts as a
  disagreement).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import numpy as np

LEVELS = ("T12", "L1", "L2")


def subject_options(seed: int) -> dict:
    """Randomised scan of one held-out subject (mirrors the spread of real screening scans)."""
    rng = np.random.default_rng([seed, 5])
    pixel = float(rng.uniform(0.6, 1.0))
    options = dict(
        cranial=str(rng.choice(["C7", "T1", "T2", "T3"])),
        caudal=str(rng.choice(["L2", "L3", "L3", "L4"])),
        pixel_mm=pixel, shape=(int(round(360 / pixel)),) * 2,
        slice_mm=float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5])),
        kvp=float(rng.choice([100.0, 120.0, 120.0])),
        noise_hu=float(rng.uniform(20, 50)),
        density_mg_cm3=float(rng.uniform(40, 220)),
        n_rib_pairs=int(rng.choice([12] * 10 + [11, 13])),
    )
    if rng.random() < 0.1:
        options["fracture"] = str(rng.choice(["T12", "L1", "L2"]))
    if rng.random() < 0.1:
        options["sclerotic"] = str(rng.choice(["T12", "L1", "L2"]))
    if rng.random() < 0.2:
        options["scoliosis_deg"] = float(rng.uniform(3, 10))
    return options


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="number of subjects (>= 20)")
    parser.add_argument("--seed-start", type=int, default=50000)
    parser.add_argument("--model", default=None)
    parser.add_argument("--csv", default=None, help="write per-subject rows to this CSV")
    parser.add_argument("--truth-classes", action="store_true",
                        help="diagnostic only, not the bar: use the true 4-class map instead of the model "
                             "(the error left when segmentation is perfect)")
    args = parser.parse_args(argv)

    from bmdqct.calibration import calibrate_phantom
    from bmdqct.classify import classify_bmd
    from bmdqct.measure import measure
    from bmdqct.segment import load_model
    from bmdqct.synthetic import synthesize_ldct, synthesize_phantom_scan

    model = None if args.truth_classes else load_model(args.model)
    calibrations = {}
    named = total_named = 0
    abs_err, abs_err_dx, agree, n_dx, n_categorised = [], [], 0, 0, 0
    rows = []
    t_start = time.perf_counter()
    for i in range(args.n):
        seed = args.seed_start + i
        options = subject_options(seed)
        kvp = options["kvp"]
        if kvp not in calibrations:
            scan, ptruth = synthesize_phantom_scan("mindways-model3-ct", 40000 + int(kvp), kvp=kvp)
            calibrations[kvp] = calibrate_phantom(scan, ptruth.certificate)
        t0 = time.perf_counter()
        ct, truth = synthesize_ldct(seed, **options)
        try:
            labels = truth.classes if args.truth_classes else None
            res = measure(ct, calibration=calibrations[kvp], model=model, labels=labels, case=f"seed{seed}")
        except Exception as err:  # noqa: BLE001 - a failure counts against the bars
            print(f"seed {seed}: FAILED {type(err).__name__}: {err}")
            rows.append({"seed": seed, "error": f"{type(err).__name__}: {err}"})
            n_dx += 1
            for name in LEVELS:     # the same bodies as a measured subject's count against the naming bar
                if name in truth.levels.names:
                    true_mask = truth.levels.mask(name)
                    total_named += bool(true_mask.any() and not _cut(true_mask))
            continue
        seconds = time.perf_counter() - t0
        row = {"seed": seed, **{k: v for k, v in options.items() if k != "shape"}, "seconds": round(seconds, 1)}
        labels = np.asarray(res.labels.labels.labels)
        for name in LEVELS:
            if name not in truth.levels.names:
                continue
            true_mask = truth.levels.mask(name)
            if not true_mask.any() or _cut(true_mask):
                continue
            total_named += 1
            ok = False
            if name in res.labels.levels:
                got = labels == res.labels.levels[name].label_id
                ok = 2 * np.sum(got & true_mask) / (got.sum() + true_mask.sum()) > 0.5
            named += ok
            row[f"{name}_named"] = ok
            m = res.levels.get(name)
            if m is not None and m.status == "measured" and m.bmd_mg_cm3 is not None:
                err = m.bmd_mg_cm3 - truth.density_mg_cm3[name]
                abs_err.append(abs(err))
                row[f"{name}_bmd_error"] = round(err, 2)
        true_dx = np.mean([truth.density_mg_cm3[n] for n in ("L1", "L2")])
        row.update(true_l1_l2=round(float(true_dx), 2), bmd_l1_l2=res.bmd_l1_l2_mg_cm3,
                   levels_used="+".join(res.levels_used), category=None if res.category is None else
                   res.category.value, flags=";".join(str(f) for f in res.flags))
        true_cat = classify_bmd(true_dx)
        row["true_category"] = true_cat.value
        n_dx += 1                       # a subject without a category counts as a disagreement
        if res.category is not None:
            n_categorised += 1
            agree += res.category is true_cat
            abs_err_dx.append(abs(res.bmd_l1_l2_mg_cm3 - true_dx))
        rows.append(row)
        print(f"seed {seed}: {seconds:5.1f} s  used {row['levels_used']:<8} BMD {res.bmd_l1_l2_mg_cm3}  "
              f"true {true_dx:.1f}  {row.get('category')} / {row.get('true_category')}  {row['flags']}")
        sys.stdout.flush()

    naming = 100.0 * named / max(total_named, 1)
    mae = float(np.mean(abs_err)) if abs_err else float("nan")
    mae_dx = float(np.mean(abs_err_dx)) if abs_err_dx else float("nan")
    agreement = 100.0 * agree / max(n_dx, 1)
    print()
    source = "TRUE 4-class maps (diagnostic, not the bar)" if args.truth_classes else "the segmentation model"
    print(f"labels from {source}")
    print(f"subjects: {args.n} (seeds {args.seed_start}-{args.seed_start + args.n - 1}), "
          f"{time.perf_counter() - t_start:.0f} s")
    print(f"T12/L1/L2 named correctly: {named}/{total_named} = {naming:.1f} %   [bar >= 97.5 %]")
    print(f"BMD MAE per level: {mae:.2f} mg/cm3 over {len(abs_err)} levels   [bar <= 3 mg/cm3]")
    print(f"BMD MAE of the L1-L2 value: {mae_dx:.2f} mg/cm3 over {len(abs_err_dx)} subjects")
    print(f"ACR category agreement: {agree}/{n_dx} = {agreement:.1f} %   [bar >= 95 %] "
          f"({n_categorised} subjects got a category)")
    if args.csv:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "seed", k))
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    return 0


def _cut(mask: np.ndarray) -> bool:
    """True if a truth body touches the scan's first or last slice."""
    return bool(mask[0].any() or mask[-1].any())


if __name__ == "__main__":
    sys.exit(main())
