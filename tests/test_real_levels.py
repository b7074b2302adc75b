"""Level identity on real CT (../shared/data/real, read by path, never copied).

* ribs found beside TotalSegmentator's vertebral bodies of ``ts_abdomen_3mm``
  agree with its rib labels (rib_left/right_11 and _12 attach to T11 and T12;
  L1 and L2 bear none), per side;
* the shipped model alone names L1 and L2 of ``ts_abdomen_3mm`` right (the VOI
  centre sits on the TotalSegmentator vertebra of the same name) and each VOI
  mean lies within 10 HU of the VOI the TotalSegmentator labels give; before the
  level decoder the model's names were one level low.
"""

from pathlib import Path

import numpy as np
import pytest

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
TS = REAL / "ts_abdomen_3mm"

pytestmark = pytest.mark.skipif(not TS.exists(), reason="../shared/data/real is not beside the project")

# TotalSegmentator v2 ids of the twelfth ribs (rib_left_12, rib_right_12)
RIB_LEFT_12, RIB_RIGHT_12 = 103, 115


@pytest.fixture(scope="module")
def ts_scan():
    from bmdqct.io import load_ct, load_labels

    ct = load_ct(TS / "ct.nii.gz")
    labels = load_labels(TS / "totalseg_labels.nii.gz", like=ct, scheme="totalsegmentator")
    raw = load_labels(TS / "totalseg_labels.nii.gz", like=ct)
    return ct, labels, np.asarray(raw.labels)


def test_rib_detector_agrees_with_the_rib_labels(ts_scan):
    from bmdqct.labeling import vertebra_labels_from_map

    ct, labels, raw = ts_scan
    assert (raw == RIB_LEFT_12).any() and (raw == RIB_RIGHT_12).any()   # the reference: T12 bears ribs
    vl = vertebra_labels_from_map(ct, labels)
    rib = vl.rib_check
    assert dict(rib.rib_bearing) == {"T12": True, "L1": False, "L2": False}
    right, left = rib.reach_mm["T12"]
    assert right > 32.0 and left > 32.0                 # one rib on each side, as labelled
    for name in ("L1", "L2"):                           # transverse processes, not ribs
        assert max(rib.reach_mm[name]) < 20.0
    # the decoder names the map's bodies as the map does: no disagreement
    assert "level_disagreement" not in [f.code for f in vl.flags]


def test_shipped_model_names_l1_l2_right_on_real_abdomen(ts_scan):
    pytest.importorskip("tensorflow")
    from bmdqct import measure
    from bmdqct.levels import level_name

    ct, labels, _ = ts_scan
    res = measure(ct)
    reference = measure(ct, labels=labels)
    ref_ids = np.asarray(labels.labels)
    names = {v: k for k, v in labels.names.items()}
    for level in ("L1", "L2"):
        m = res.levels[level]
        assert m.status == "measured", m.reason
        ijk = np.rint(ct.world_to_index(np.asarray(m.center_mm))).astype(int)
        under = names.get(int(ref_ids[tuple(ijk)]))
        assert under == level, f"{level} VOI centre sits on {under}"
        assert abs(m.mean_hu - reference.levels[level].mean_hu) < 10.0
        assert res.labels.levels[level].probability >= 0.9
    assert level_name(res.labels.levels["L1"].label_id) == "L1"
    assert res.levels_used == ("L1", "L2")
