"""Every real scan in ../shared/data/real through the whole pipeline, shipped model alone.

Run:  python benchmarks/eval_real.py [--out DIR] [--model PATH] [--only NAME ...]

Per scan it prints the bodies the labelling named (top down) with the decoder's
probability, whether ribs were seen beside each, which are ``level_uncertain``,
and the flags; per measured level the VOI mean HU and, where the scan has
reference labels, the reference vertebra under the VOI centre:

* ``ts_abdomen_3mm`` — TotalSegmentator labels: the vertebra under each VOI
  centre (as ``../shared/tools/real_check.py`` does) and the VOI mean that the
  TotalSegmentator labels give for the same level (``measure(..., labels=...)``);
  the bar is the same vertebra and a mean within 10 HU;
* ``verse_lumbar_crop`` — VerSe labels (L2 partial, L3, L4 partial): the vertebra
  under each VOI centre;
* ``lidc_0314_chest``, ``ricord_chest`` (thoracic, no labels): every labelled body
  must lie on the column, one per level (look at the picture), names
  consistent with the ribs;
* ``ts_siemens_j2k_dicom`` (20 slices): must end without a wrong number.

"WRONG" marks a measured level (a BMD/HU would be reported) whose VOI centre
sits on another vertebra — the failure this library must never show. The QC
picture of each scan (``DIR/<scan>.png``) and its result JSON are written to
`--out` (default ``/tmp/bmdqct-eval-real``); look at every picture.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

SCANS = {
    "ts_abdomen_3mm": ("ts_abdomen_3mm/ct.nii.gz", "ts_abdomen_3mm/totalseg_labels.nii.gz", "totalsegmentator"),
    "verse_lumbar_crop": ("verse_lumbar_crop/sub-ct_label-22_ct.nii.gz",
                          "verse_lumbar_crop/sub-ct_seg-vert_label-22_msk.nii.gz", "verse"),
    "lidc_0314_chest": ("lidc_0314_chest/dicom", None, None),
    "ricord_chest": ("ricord_chest/ct.nii.gz", None, None),
    "ts_siemens_j2k_dicom": ("ts_siemens_j2k_dicom", None, None),
}


def reference_at(volume, reference, centre_mm) -> str:
    """Name of the reference vertebra under a point given in patient LPS mm."""
    from bmdqct.levels import level_name

    ijk = np.rint(volume.world_to_index(np.asarray(centre_mm, float))).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.asarray(volume.shape)):
        return "outside the scan"
    lid = int(np.asarray(reference.labels)[tuple(ijk)])
    names = {v: k for k, v in reference.names.items()}
    if lid in names:
        return names[lid]
    try:
        return level_name(lid)
    except KeyError:
        return "no vertebra"


def evaluate(name, model, out_dir: Path) -> dict:
    from bmdqct import measure
    from bmdqct.io import load_ct, load_labels
    from bmdqct.plotting.qc import plot_qc

    ct_path, ref_path, scheme = SCANS[name]
    volume = load_ct(REAL / ct_path)
    t0 = time.perf_counter()
    res = measure(volume, model=model, case=name)
    seconds = time.perf_counter() - t0
    res.to_json(out_dir / f"{name}.json")
    fig = plot_qc(res, volume)
    fig.savefig(out_dir / f"{name}.png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    reference = load_labels(REAL / ref_path, like=volume, scheme=scheme) if ref_path else None
    ref_result = measure(volume, labels=reference, case=name + "-reference") if scheme == "totalsegmentator" else None
    print(f"\n== {name}: {volume.shape} {tuple(round(s, 2) for s in volume.spacing)} mm, {seconds:.0f} s")
    vl = res.labels
    uncertain = {f.level for f in vl.flags if f.code == "level_uncertain"}
    chain = sorted(vl.levels.values(), key=lambda i: -i.centroid_mm[2])
    for info in chain:
        ribs = {True: "ribs", False: "no ribs", None: "ribs ?"}[info.rib_bearing]
        print(f"   {info.level:4s} p={info.probability:.2f} {ribs:8s}"
              f"{' uncertain' if info.level in uncertain else ''}{' partial' if info.partial else ''}")
    print("   flags:", ", ".join(sorted({str(f) for f in res.flags})))
    wrong = 0
    rows = {}
    for level, m in res.levels.items():
        row = {"status": m.status, "mean_hu": m.mean_hu}
        line = f"   {level}: {m.status}"
        if m.mean_hu is not None:
            line += f", {m.mean_hu:.1f} HU"
        voi = res.vois.get(level)
        if voi is not None and reference is not None:
            under = reference_at(volume, reference, voi.center_mm)
            row["reference_under_voi"] = under
            line += f", VOI centre on {under}"
            if m.status == "measured" and under != level:
                wrong += 1
                line += "  <-- WRONG LEVEL"
            if ref_result is not None and ref_result.levels[level].mean_hu is not None and m.mean_hu is not None:
                diff = m.mean_hu - ref_result.levels[level].mean_hu
                row["reference_hu_mean"] = ref_result.levels[level].mean_hu
                line += f"; reference labels give {ref_result.levels[level].mean_hu:.1f} HU ({diff:+.1f})"
        rows[level] = row
        print(line)
    used = res.levels_used
    print(f"   L1-L2 HU: {res.mean_hu_l1_l2 if res.mean_hu_l1_l2 is None else round(res.mean_hu_l1_l2, 1)} from {list(used)}")
    return {"levels": rows, "named": [i.level for i in chain], "uncertain": sorted(uncertain),
            "wrong_measured": wrong, "seconds": round(seconds, 1),
            "flags": sorted({str(f) for f in res.flags})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/bmdqct-eval-real")
    parser.add_argument("--model", default=None, help="model .keras (default: shipped)")
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(SCANS))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name in args.only or SCANS:
        try:
            summary[name] = evaluate(name, args.model, out_dir)
        except Exception as err:          # a scan that fails is a finding, not the end of the run
            print(f"\n== {name}: FAILED: {type(err).__name__}: {err}")
            summary[name] = {"error": f"{type(err).__name__}: {err}"}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    wrong = sum(s.get("wrong_measured", 0) for s in summary.values())
    print(f"\nmeasured levels on a wrong vertebra: {wrong}; pictures and JSON in {out_dir}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
