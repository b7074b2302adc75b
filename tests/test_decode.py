"""Tests of the level decoder (bmdqct.labeling.decode_levels): each cue alone and in conflict.

The chains are exact small inputs: body centres 30 mm apart, network votes as
one-hot shares, ribs as what the detector reports per side.
"""

import pytest

from bmdqct.labeling import (
    MIN_LEVEL_PROBABILITY,
    BodyCues,
    decode_levels,
    level_sequence,
)

T7_T12, L1_L2, T1_T6 = (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)
LONG, NONE, SHORT = ("long", "long"), ("none", "none"), ("short", "short")


def chain(votes, ribs, pitch=30.0, gaps=()):
    z, out = 400.0, []
    for i, (v, r) in enumerate(zip(votes, ribs)):
        out.append(BodyCues(z, v, r))
        z -= pitch * (2 if i in gaps else 1)
    return out


def test_ribs_alone_name_t12_and_l1():
    # without the first rib in view a 13th pair stays possible, which leaves T12's name in doubt
    # but not L1's (the first body without ribs is L1 with 11, 12 or 13 pairs)
    d = decode_levels(chain([None] * 4, [LONG, LONG, NONE, NONE]))
    assert d.names == ("T11", "T12", "L1", "L2")
    assert d.probabilities[2] >= MIN_LEVEL_PROBABILITY and d.probabilities[3] >= MIN_LEVEL_PROBABILITY


def test_network_alone_is_never_certain():
    d = decode_levels(chain([T7_T12, T7_T12, L1_L2, L1_L2], [(None, None)] * 4))
    assert d.names == ("T11", "T12", "L1", "L2")      # the network's boundary, as the best guess
    assert max(d.probabilities) < MIN_LEVEL_PROBABILITY


def test_network_and_ribs_agree():
    d = decode_levels(chain([T7_T12, T7_T12, L1_L2, L1_L2], [LONG, LONG, NONE, NONE]))
    assert d.names == ("T11", "T12", "L1", "L2") and not d.transitional
    assert d.probabilities[2] > 0.95


def test_ribs_against_a_network_boundary_one_level_low_need_a_second_anchor():
    # ts_abdomen_3mm: the network calls the real L1 "T7-T12"; no rib beside it. Ribs alone
    # against the network: the ribs' naming, but uncertain (the twelfth rib may be missed)
    d = decode_levels(chain([T7_T12, T7_T12, L1_L2, L1_L2], [LONG, NONE, NONE, SHORT], pitch=33.0))
    assert d.names == ("T12", "L1", "L2", "L3")
    assert max(d.probabilities) < MIN_LEVEL_PROBABILITY
    # the sacrum three levels below the last body settles it
    cues = chain([T7_T12, T7_T12, L1_L2, L1_L2], [LONG, NONE, NONE, SHORT], pitch=33.0)
    d = decode_levels(cues + [BodyCues(cues[-1].z_mm - 3 * 33.0, sacrum=True)])
    assert d.names == ("T12", "L1", "L2", "L3", "S1")
    assert min(d.probabilities[1:]) >= MIN_LEVEL_PROBABILITY


def test_a_missed_twelfth_rib_against_a_right_network_is_uncertain_not_wrong():
    # truth T10-L2; the detector misses T12's short floating ribs; the network is right
    d = decode_levels(chain([T7_T12, T7_T12, T7_T12, L1_L2, L1_L2], [LONG, LONG, NONE, NONE, NONE]))
    assert max(d.probabilities) < MIN_LEVEL_PROBABILITY


def test_ribs_outweigh_a_network_boundary_one_level_high():
    d = decode_levels(chain([T7_T12, L1_L2, L1_L2, L1_L2], [LONG, LONG, NONE, NONE]))
    assert d.names == ("T11", "T12", "L1", "L2")


def test_a_single_side_seen_still_counts():
    d = decode_levels(chain([None] * 3, [("long", None), (None, "none"), NONE]))
    assert d.names == ("T12", "L1", "L2")


def test_missed_body_is_bridged_by_the_distance():
    d = decode_levels(chain([None] * 4, [LONG, LONG, NONE, NONE], gaps=(0,)))
    assert d.names == ("T10", "T12", "L1", "L2")


def test_sacrum_anchors_a_lumbar_chain_without_ribs():
    cues = chain([L1_L2] * 3, [NONE] * 3, pitch=35.0) + [BodyCues(400.0 - 3 * 35.0 - 5.0, sacrum=True)]
    d = decode_levels(cues)
    assert d.names == ("L3", "L4", "L5", "S1")
    assert min(d.probabilities) >= MIN_LEVEL_PROBABILITY


def test_sacrum_and_ribs_together_count_the_lumbar_spine():
    # T12 with ribs, five lumbar bodies, the sacrum: normal anatomy, certain
    cues = chain([None] * 6, [LONG] + [NONE] * 5) + [BodyCues(400.0 - 6 * 30.0, sacrum=True)]
    d = decode_levels(cues)
    assert d.names == ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
    assert min(d.probabilities) >= MIN_LEVEL_PROBABILITY


def test_thirteen_rib_bearing_vertebrae_counted_from_c7():
    ribs = [NONE] + [LONG] * 13 + [NONE, NONE]
    d = decode_levels(chain([None] * 16, ribs, pitch=25.0))
    assert d.transitional and d.rib_bearing_count == 13
    assert d.names[:2] == ("C7", "T1") and d.names[13:15] == ("T13", "L1")


def test_no_anchor_at_all_is_uncertain():
    d = decode_levels(chain([None] * 3, [(None, None)] * 3))
    assert max(d.probabilities) < 0.2


def test_a_chain_must_be_ordered_top_first():
    with pytest.raises(ValueError, match="ordered top first"):
        decode_levels([BodyCues(0.0), BodyCues(30.0)])
    with pytest.raises(ValueError, match="at least one body"):
        decode_levels([])


def test_level_sequences():
    assert len(level_sequence(12)) == 7 + 12 + 5 + 1
    assert "T12" not in level_sequence(11) and "T13" in level_sequence(13)
