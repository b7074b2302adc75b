"""
Agreement study: bmdqct against a simulated QCT reference
=========================================================

Reproduces the evaluation of Pan et al. (Eur Radiol 2020) on a synthetic low-dose CT
screening cohort of 374 subjects (:func:`bmdqct.synthetic.synthesize_cohort`): each
subject has a true trabecular BMD per level and a simulated asynchronous-QCT reference
value with realistic error. bmdqct measures the subjects by actually rendering each
scan (on a small 128 × 128 grid, T11–L3) and running :func:`bmdqct.measure.measure` on
it, with the true level labels (segmentation is not what this study tests) and the
asynchronous phantom calibration of the subject's scanner and kVp. ``bmdqct agreement``
then writes the report: Table 1 (regression and Bland–Altman per level), Table 2
(ROC/AUC, sensitivity, specificity, PPV, NPV with n/N, overall and by sex), the
three-class ACR table, and the figures (regression, Bland–Altman and ROC curves).

Rendering and measuring one subject takes about 0.5 s, so the default measures the
first 40 subjects of the cohort to stay under a minute; ``--n 374`` runs the full study
(about 3–4 minutes). Outputs go to ``--output`` (default ``agreement_study/``).
"""

# %%
# Setup: options and the cohort. Its reference values (all 374 subjects) are written in
# the CSV layout that ``bmdqct agreement --reference`` reads.
import argparse
import math
import os
import time
from pathlib import Path

import pandas as pd

import bmdqct.calibration as bqc
from bmdqct.cli import main as bmdqct_command
from bmdqct.measure import measure
from bmdqct.synthetic import example_certificate, synthesize_cohort, synthesize_phantom_scan

QUICK = os.environ.get("BMDQCT_EXAMPLE_QUICK") == "1"      # set by the test suite

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument("--n", type=int, default=24 if QUICK else 40,
                    help="subjects whose scans are rendered and measured (at most --cohort-size)")
parser.add_argument("--cohort-size", type=int, default=374, help="subjects in the cohort (Pan et al.: 374)")
parser.add_argument("--seed", type=int, default=2020, help="cohort seed")
parser.add_argument("--output", default="agreement_study", help="output folder")
args = parser.parse_args()

out = Path(args.output)
out.mkdir(parents=True, exist_ok=True)
cohort = synthesize_cohort(args.cohort_size, seed=args.seed)
reference_csv = cohort.to_csv(out / "reference.csv")
n = min(args.n, len(cohort))
prevalence = cohort.prevalence(reference=True)
print(f"cohort: {len(cohort)} subjects, reference prevalence "
      + ", ".join(f"{k} {100 * v:.1f} %" for k, v in prevalence.items()) + f"; measuring {n}")

# %%
# Asynchronous calibration: one Mindways-style phantom QA scan per scanner and kVp,
# rendered with that scanner's bone line and calibrated by bmdqct.
certificate = example_certificate("mindways-model3-ct")
calibrations = {}
for subject in cohort.subjects[:n]:
    key = (subject.scanner["device_serial"], subject.kvp)
    if key not in calibrations:
        a_hu, b_hu = cohort.scanner_lines[key]
        phantom, _ = synthesize_phantom_scan("mindways-model3-ct", len(calibrations), a_hu, b_hu,
                                             kvp=subject.kvp, scanner=subject.scanner,
                                             study_date="2024-01-02")
        calibrations[key] = bqc.calibrate_phantom(phantom, certificate, phantom="mindways-model3-ct")
print(f"{len(calibrations)} phantom calibrations (scanner, kVp): {sorted(calibrations)}")

# %%
# Measure: render each subject's scan and run bmdqct on it; rows in the layout of
# ``bmdqct measure``'s results.csv.
LEVELS = ("T12", "L1", "L2")
rows, seconds = [], []
for subject in cohort.subjects[:n]:
    start = time.perf_counter()
    volume, truth = cohort.synthesize(subject.case, shape=128, slice_mm=2.0, cranial="T11", caudal="L3")
    result = measure(volume, labels=truth.levels, case=subject.case,
                     calibration=calibrations[(subject.scanner["device_serial"], subject.kvp)])
    seconds.append(time.perf_counter() - start)
    row = {"case": subject.case, "status": "ok", "error": "",
           "category": None if result.category is None else result.category.value,
           "bmd_l1_l2_mg_cm3": result.bmd_l1_l2_mg_cm3, "levels_used": "+".join(result.levels_used)}
    for level in LEVELS:
        m = result.levels[level]
        row[f"{level}_mean_hu"], row[f"{level}_bmd_mg_cm3"] = m.mean_hu, m.bmd_mg_cm3
    row["flags"] = ";".join(str(f) for f in result.flags)
    rows.append(row)
results_csv = out / "results.csv"
pd.DataFrame(rows).to_csv(results_csv, index=False)
per_subject = sum(seconds) / len(seconds)
print(f"measured {n} subjects: {per_subject:.2f} s per subject (render + measure), "
      f"{sum(seconds):.0f} s in all; the full cohort would take about {per_subject * len(cohort) / 60:.1f} min")

# %%
# The report: the same command a user runs on real data,
# ``bmdqct agreement --ours results.csv --reference reference.csv -o REPORT/``.
code = bmdqct_command(["agreement", "--ours", str(results_csv), "--reference", str(reference_csv),
                       "-o", str(out / "report"), "--title",
                       f"bmdqct vs simulated QCT: {n} of {len(cohort)} synthetic subjects"])
if code != 0:
    raise SystemExit(code)

# %%
# How close is the reference to the truth, and bmdqct to the truth? (Only a simulation
# can tell; a real study sees just the two methods.)
truth_table = cohort.table(truth=True).set_index("case")
measured = pd.DataFrame(rows).set_index("case")
reference = pd.read_csv(reference_csv).set_index("case")
for name, table in (("reference", reference.loc[measured.index]), ("bmdqct", measured)):
    error = table["L1_bmd_mg_cm3"] - truth_table.loc[measured.index, "L1_bmd_mg_cm3"]
    print(f"L1 error of {name:9s} against the truth: mean {error.mean():+.1f}, SD {error.std():.1f} mg/cm3"
          + ("" if math.isfinite(error.mean()) else " (no values)"))
print(f"report: {out / 'report' / 'report.md'}")
