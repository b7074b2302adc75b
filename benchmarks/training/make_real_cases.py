"""Build the real fine-tuning cases (outside the repository) from ``../shared/data/real``.

    python benchmarks/training/make_real_cases.py /tmp/work/real_cases

Writes ``OUT/ts_abdomen_3mm/{ct.nii.gz,seg.nii.gz}`` (TotalSegmentator vertebra ids kept
only inside TotalSegmentator's vertebral-body mask, organs dropped) and
``OUT/verse_lumbar_crop/{ct.nii.gz,seg.nii.gz}`` (VerSe ids inside sub-regions 49/50,
the body cortex and interior). Train with ``--data OUT/...`` and the matching
``--label-scheme``. Never copy these into the repository.

Voxels of one vertebra that touch (26-neighbourhood) another vertebra's voxels are
dropped from both (``separate_bodies``): at 3 mm TotalSegmentator's T12 and L1 touch
across a thin disc, and a network taught that gap-free contact bridges the disc, after
which the labelling sees one body where there are two (round 3, first start).
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def separate_bodies(ids: np.ndarray) -> np.ndarray:
    """`ids` without the voxels that touch a voxel of another non-zero id (a new array).

    >>> a = np.zeros((1, 1, 6), np.int16); a[0, 0, :3] = 1; a[0, 0, 3:] = 2
    >>> separate_bodies(a)[0, 0].tolist()
    [1, 1, 0, 0, 2, 2]
    """
    cube = np.ones((3, 3, 3), bool)
    higher = ndimage.maximum_filter(ids, footprint=cube, mode="constant", cval=0) > ids
    lower = ndimage.minimum_filter(np.where(ids > 0, ids, np.iinfo(ids.dtype).max), footprint=cube,
                                   mode="constant", cval=np.iinfo(ids.dtype).max) < ids
    return np.where((ids > 0) & (higher | lower), 0, ids).astype(ids.dtype)


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
    ids = separate_bodies(np.where(keep, ids, 0).astype(np.int16))
    nib.save(nib.Nifti1Image(ids, lab.affine), d / "seg.nii.gz")
    vs = REAL / "verse_lumbar_crop"
    d = out / "verse" / "verse_lumbar_crop"
    d.mkdir(parents=True, exist_ok=True)
    nib.save(nib.load(vs / "sub-ct_label-22_ct.nii.gz"), d / "ct.nii.gz")
    vert = nib.load(vs / "sub-ct_seg-vert_label-22_msk.nii.gz")
    sub = np.asarray(nib.load(vs / "sub-ct_seg-subreg_label-22_msk.nii.gz").dataobj)
    ids = np.asarray(vert.dataobj).astype(np.int16)
    ids = separate_bodies(np.where(np.isin(sub, (49, 50)), ids, 0).astype(np.int16))
    nib.save(nib.Nifti1Image(ids, vert.affine), d / "seg.nii.gz")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/work/real_cases")
