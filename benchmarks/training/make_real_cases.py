"""Build the real fine-tuning cases (outside the repository) from ``../shared/data/real``.

    python benchmarks/training/make_real_cases.py /tmp/work/real_cases

Writes ``OUT/ts_abdomen_3mm/{ct.nii.gz,seg.nii.gz}`` (TotalSegmentator vertebra ids kept
only inside TotalSegmentator's vertebral-body mask, organs dropped) and
``OUT/verse_lumbar_crop/{ct.nii.gz,seg.nii.gz}`` (VerSe ids inside sub-regions 49/50,
the body cortex and interior). Train with ``--data OUT/...`` and the matching
``--label-scheme``. Never copy these into the repository.
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def main(out):
    out = Path(out)
    ts = REAL / "ts_abdomen_3mm"
    d = out / "totalsegmentator" / "ts_abdomen_3mm"
    d.mkdir(parents=True, exist_ok=True)
    ct = nib.load(ts / "ct.nii.gz")
    nib.save(ct, d / "ct.nii.gz")
    lab = nib.load(ts / "totalseg_labels.nii.gz")
    body = np.asarray(nib.load(ts / "totalseg_vertebrae_body.nii.gz").dataobj) == 1
    ids = np.asarray(lab.dataobj).astype(np.int16)
    keep = (ids >= 26) & (ids <= 50) & body
    nib.save(nib.Nifti1Image(np.where(keep, ids, 0).astype(np.int16), lab.affine), d / "seg.nii.gz")
    vs = REAL / "verse_lumbar_crop"
    d = out / "verse" / "verse_lumbar_crop"
    d.mkdir(parents=True, exist_ok=True)
    nib.save(nib.load(vs / "sub-ct_label-22_ct.nii.gz"), d / "ct.nii.gz")
    vert = nib.load(vs / "sub-ct_seg-vert_label-22_msk.nii.gz")
    sub = np.asarray(nib.load(vs / "sub-ct_seg-subreg_label-22_msk.nii.gz").dataobj)
    ids = np.asarray(vert.dataobj).astype(np.int16)
    nib.save(nib.Nifti1Image(np.where(np.isin(sub, (49, 50)), ids, 0).astype(np.int16), vert.affine),
             d / "seg.nii.gz")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/work/real_cases")
