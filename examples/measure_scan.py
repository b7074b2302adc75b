"""
Measure a scan
==============

Measure the trabecular BMD of T12, L1 and L2 in a low-dose chest CT and read
the report. A synthetic screening scan and a synthetic phantom scan of the
same scanner stand in for real data: the phantom scan is calibrated
(asynchronous calibration), the subject scan is segmented by the shipped
model, the elliptical VOIs of Pan et al. (2020) are placed, and the L1-L2 mean
BMD is classified with the ACR thresholds. The QC picture is saved next to
the result.

Run:  python examples/measure_scan.py [--output DIR]
"""

# %%
# A phantom scan calibrates the scanner; a subject scan is measured with it.
import argparse
from pathlib import Path

from bmdqct.calibration import calibrate_phantom
from bmdqct.measure import measure
from bmdqct.plotting.qc import plot_qc
from bmdqct.synthetic import synthesize_ldct, synthesize_phantom_scan

parser = argparse.ArgumentParser(description="Measure a synthetic chest CT.")
parser.add_argument("--output", default=".", help="folder for the QC picture and result.json")
args = parser.parse_args()
out = Path(args.output)
out.mkdir(parents=True, exist_ok=True)

phantom_scan, phantom_truth = synthesize_phantom_scan("mindways-model3-ct", 7, kvp=120.0)
calibration = calibrate_phantom(phantom_scan, phantom_truth.certificate)
print(calibration.describe())

ct, truth = synthesize_ldct(2024, kvp=120.0, cranial="T7", caudal="L3", shape=(256, 256),
                            pixel_mm=1.4, slice_mm=2.0)
print(ct)

# %%
# Segment, label, place the VOIs, calibrate and classify: one call.
result = measure(ct, calibration=calibration, case="synthetic-subject")
print(result.report())

# %%
# Every number of the report is also a field of the result ...
for name, m in result.levels.items():
    if m.mean_hu is None:
        print(f"{name}: {m.status} ({m.reason})")
    else:
        bmd = "" if m.bmd_mg_cm3 is None else f" -> {m.bmd_mg_cm3:.1f} mg/cm3"
        print(f"{name}: {m.status}, {m.mean_hu:.1f} HU in {m.n_voxels} voxels ({m.volume_mm3:.0f} mm3){bmd}")
true_l1_l2 = (truth.density_mg_cm3["L1"] + truth.density_mg_cm3["L2"]) / 2
print(f"L1-L2: measured {result.bmd_l1_l2_mg_cm3}, true density of the synthetic subject {true_l1_l2:.1f} mg/cm3")

# %%
# ... and of its JSON form; the QC picture shows where the VOIs are.
result.to_json(out / "result.json")
fig = plot_qc(result, ct)
fig.savefig(out / "qc.png", dpi=110)
print(f"wrote {out / 'result.json'} and {out / 'qc.png'}")
