"""The anatomical-order decoder of segmentation classes."""

from __future__ import annotations

import numpy as np
import pytest

from bmdqct.segment.sequence import BLOCKS, decode_blocks, enforce_anatomical_order, find_bodies


def _scores(classes, confidence=0.9):
    """Log-scores for bodies whose network class is given (0 = background block)."""
    block_class = np.array([b.segmentation_class for b in BLOCKS])
    probs = np.full((len(classes), 4), (1 - confidence) / 3)
    probs[np.arange(len(classes)), classes] = confidence
    return np.log(probs[:, block_class] + 1e-3)


def test_counts_fix_an_ambiguous_t6_t7_border():
    # C7 visible, then the network calls 5 bodies T1-T6 and 7 bodies T7-T12 (T6 misread),
    # then L1, L2: with both ends of each block in view the counts are 6 and 6
    classes = [0] + [1] * 5 + [2] * 7 + [3, 3]
    scores = _scores(classes)
    scores[6] = np.log(np.array([0.02, 0.45, 0.55, 0.02, 0.02]) + 1e-3)  # the misread T6
    blocks = decode_blocks(scores)
    assert [BLOCKS[b].segmentation_class for b in blocks] == [0] + [1] * 6 + [2] * 6 + [3, 3]


def test_bodies_below_l2_become_background():
    # T11, T12, L1, L2, then L3 and a fragment at the scan's lower edge that the network
    # called L1-L2 and T7-T12, less surely than the bodies next to the ribs
    scores = _scores([2, 2, 3, 3, 3, 2])
    scores[4:] = _scores([3, 2], confidence=0.5)
    blocks = decode_blocks(scores)
    assert [BLOCKS[b].name for b in blocks][-2:] == ["L3 and below", "L3 and below"]
    assert [BLOCKS[b].segmentation_class for b in blocks][:4] == [2, 2, 3, 3]


def test_any_number_of_bodies_fit_below_l2():
    # an abdominal scan (ts_abdomen_3mm): T12, L1 called T7-T12, L2, L3 called L1-L2,
    # then L4, L5 and nine pelvic fragments that the network half-calls thoracic;
    # they all belong below L2 and must not push L2-L3 up into T7-T12
    scores = _scores([2, 2, 3, 3])
    tail = _scores([3] * 2 + [2] * 9, confidence=0.7)
    tail[:, 4] = np.log(0.25)  # background probability inside the predicted voxels
    blocks = decode_blocks(np.vstack([scores, tail]))
    assert [BLOCKS[b].segmentation_class for b in blocks][:4] == [2, 2, 3, 3]
    assert all(BLOCKS[b].name == "L3 and below" for b in blocks[4:])


def test_partial_blocks_at_the_scan_edges_are_not_penalised():
    # a scan from T9 to L1: three T7-T12 bodies and one L1-L2 body are consistent
    blocks = decode_blocks(_scores([2, 2, 2, 2, 3]))
    assert [BLOCKS[b].segmentation_class for b in blocks] == [2, 2, 2, 2, 3]


def test_confident_evidence_beats_one_count_penalty():
    # 13 thoracic bodies between C7 and L1 with every body certain: one count
    # penalty (6 nats) is cheaper than relabelling a certain body (log(0.999/0.001))
    classes = [0] + [1] * 6 + [2] * 7 + [3]
    blocks = decode_blocks(_scores(classes, confidence=0.999))
    assert sum(BLOCKS[b].segmentation_class == 2 for b in blocks) == 7


def _stack(classes, depth=10, gap=3, confidences=None):
    """Probability volume of bodies stacked from the top down with the given classes."""
    n = len(classes)
    confidences = confidences or [0.85] * n
    z_size = n * (depth + gap) + gap
    probs = np.zeros((z_size, 8, 8, 4), np.float32)
    probs[..., 0] = 1.0
    for i, c in enumerate(classes):
        top = z_size - gap - i * (depth + gap)
        body = (slice(top - depth, top), slice(2, 6), slice(2, 6))
        probs[body] = (1 - confidences[i]) / 3
        probs[body + (c,)] = confidences[i]
    return probs


def test_enforce_relabels_voxels_and_keeps_the_input():
    probs = _stack([2, 3, 3, 3], confidences=[0.85, 0.85, 0.85, 0.6])
    before = probs.copy()
    out, report = enforce_anatomical_order(probs, (2.0, 2.0, 2.0))
    np.testing.assert_array_equal(probs, before)  # input untouched
    assert report.network_classes == (2, 3, 3, 3)
    assert report.decoded_classes == (2, 3, 3, 0)
    assert report.changed == 1
    labels = np.argmax(out, axis=-1)
    lowest = labels[3:13, 2:6, 2:6]
    assert (lowest == 0).all()
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-6)


def test_enforce_without_bodies_returns_the_input():
    probs = np.zeros((10, 4, 4, 4), np.float32)
    probs[..., 0] = 1
    out, report = enforce_anatomical_order(probs, (2.0, 2.0, 2.0))
    assert out is probs and report.changed == 0


def test_find_bodies_drops_fragments():
    fg = np.zeros((20, 6, 6), bool)
    fg[2:12, 1:5, 1:5] = True
    fg[16, 0, 0] = True  # 8 mm3
    bodies, n = find_bodies(fg, (2.0, 2.0, 2.0))
    assert n == 1 and bodies[16, 0, 0] == 0
    with pytest.raises(TypeError):
        find_bodies(fg)  # spacing is required
