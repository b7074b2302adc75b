"""Anatomical order of the segmentation classes along the spine.

The network decides each voxel's class from a window of about 13 cm; it cannot
count vertebrae. Far from the cues it sees (ribs end at T12, the lumbar bodies
are larger), the class of a body can be ambiguous: T6 against T7, L2 against
L3, a partial body at the edge of the scan. The spine itself is a sequence with
a fixed count: (cervical) → six bodies T1–T6 → six bodies T7–T12 → two bodies
L1–L2 → (L3 and below), counted from the top (7 cervical, 12 thoracic
vertebrae; transitional anatomy changes the ribs, not the count).

:func:`enforce_anatomical_order` finds the bodies in the network's output on
the straightened model grid, scores every body for every block of that
sequence with the network's mean class probability, and chooses the
assignment that maximises the summed log-probability subject to the order,
with a penalty for every body too many or too few in a block whose both ends
are in view. Bodies whose best block differs from the network's class are
relabelled (their voxels' probabilities are moved to the chosen class).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..levels import CLASS_BACKGROUND, CLASS_L1_L2, CLASS_T1_T6, CLASS_T7_T12

__all__ = ["BLOCKS", "SequenceReport", "find_bodies", "decode_blocks", "enforce_anatomical_order"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Block:
    name: str
    segmentation_class: int
    length: int | None  # bodies in the block when both its ends are in view; None: any number


#: The spine from top to bottom, as the decoder sees it.
BLOCKS = (
    # the end blocks hold whatever lies beyond the counted spine (cervical bodies,
    # skull base, L3 and below, sacrum, pelvic fragments): not counted
    _Block("cervical", CLASS_BACKGROUND, None),
    _Block("T1-T6", CLASS_T1_T6, 6),
    _Block("T7-T12", CLASS_T7_T12, 6),
    _Block("L1-L2", CLASS_L1_L2, 2),
    _Block("L3 and below", CLASS_BACKGROUND, None),
)


@dataclass(frozen=True)
class SequenceReport:
    """What the decoder did.

    Attributes
    ----------
    network_classes : tuple of int
        Class the network gave each body, top to bottom.
    decoded_classes : tuple of int
        Class after decoding (0 for bodies above T1 or below L2).
    changed : int
        Bodies whose class changed.
    """

    network_classes: tuple[int, ...]
    decoded_classes: tuple[int, ...]

    @property
    def changed(self) -> int:
        return sum(a != b for a, b in zip(self.network_classes, self.decoded_classes))


def find_bodies(foreground: np.ndarray, spacing_mm, *, min_volume_mm3: float = 400.0,
                min_height_mm: float = 8.0) -> tuple[np.ndarray, int]:
    """Vertebral bodies in a foreground mask, stacked along axis 0.

    Connected components (face connectivity), small ones dropped; a component
    holding several bodies is cut at the slices where its cross-section narrows
    to less than half of the bodies on both sides (the discs).

    Returns
    -------
    bodies : int32 ndarray
        0 outside, 1..n inside, numbered from the top (highest axis-0 index) down.
    n : int

    Examples
    --------
    >>> fg = np.zeros((30, 6, 6), bool)
    >>> fg[2:12, 1:5, 1:5] = fg[15:27, 1:5, 1:5] = True
    >>> fg[12:15, 2:4, 2:4] = True                 # a thin bridge across the disc
    >>> bodies, n = find_bodies(fg, (2.0, 2.0, 2.0), min_volume_mm3=50.0)
    >>> n, int(bodies[20, 2, 2]), int(bodies[5, 2, 2])
    (2, 1, 2)
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    voxel_mm3 = float(np.prod(spacing))
    components, n = ndimage.label(foreground)
    pieces = []  # (top z, mask slice box, piece id array)
    out = np.zeros(foreground.shape, dtype=np.int32)
    next_id = 1
    min_slices = max(2, int(round(min_height_mm / spacing[0])))
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == index
        if mask.sum() * voxel_mm3 < min_volume_mm3:
            continue
        area = mask.sum(axis=(1, 2)).astype(np.float64)
        cuts = _disc_cuts(area, min_slices)
        edges = [0, *cuts, len(area)]
        for a, b in zip(edges[:-1], edges[1:]):
            part = np.zeros_like(mask)
            part[a:b] = mask[a:b]
            if part.sum() * voxel_mm3 < min_volume_mm3:
                continue
            pieces.append((box[0].start + (a + b) / 2.0, box, part, next_id))
            out[box][part] = next_id
            next_id += 1
    # renumber from the top (axis 0 points superior)
    order = sorted(pieces, key=lambda p: -p[0])
    renumbered = np.zeros_like(out)
    for new_id, (_, box, part, _) in enumerate(order, start=1):
        renumbered[box][part] = new_id
    return renumbered, len(order)


def _disc_cuts(area: np.ndarray, min_slices: int) -> list[int]:
    """Slices where a stacked profile narrows below half of both neighbouring peaks."""
    smooth = ndimage.uniform_filter1d(area, 3, mode="nearest") if len(area) > 3 else area
    cuts = []
    start = 0
    for z in range(min_slices, len(smooth) - min_slices):
        if smooth[z] > smooth[z - 1] or smooth[z] > smooth[z + 1]:
            continue
        left = smooth[start:z].max(initial=0.0)
        right = smooth[z + 1:].max(initial=0.0)
        if smooth[z] < 0.5 * min(left, right) and z - start >= min_slices:
            cuts.append(z)
            start = z
    return cuts


def decode_blocks(log_scores: np.ndarray, *, count_penalty: float = 6.0) -> list[int]:
    """Best block (index into :data:`BLOCKS`) for each body, top to bottom.

    Parameters
    ----------
    log_scores : (n_bodies, len(BLOCKS)) ndarray
        Log-probability of each body belonging to each block.
    count_penalty : float
        Cost, in nats, of every body beyond a block's length, and of every body
        missing from a block whose both ends lie within the scan. The blocks
        above T1 and below L2 take any number of bodies.

    Examples
    --------
    Nine bodies that the network called three T7-T12 then six L1-L2: the counts
    make the last four "L3 and below"... unless the evidence is overwhelming.

    >>> p = np.full((9, 5), np.log(0.02))
    >>> p[:3, 2] = np.log(0.9); p[3:, 3] = np.log(0.6); p[3:, 4] = np.log(0.3)
    >>> decode_blocks(p)
    [2, 2, 2, 3, 3, 4, 4, 4, 4]
    """
    n = len(log_scores)
    if n == 0:
        return []
    expected = [n if b.length is None else b.length for b in BLOCKS]
    # a missed disc or an extra body is allowed, and penalised
    max_len = [n if b.length is None else b.length + 2 for b in BLOCKS]
    # state: (block, count, full) -> (score, back pointer)
    layers: list[dict] = [{}]
    for b in range(len(BLOCKS)):
        layers[0][(b, 1, False)] = (log_scores[0, b], None)
    for i in range(1, n):
        layer: dict = {}
        for (b, k, full), (score, _) in layers[-1].items():
            moves = []
            if k < max_len[b]:  # a block never holds more than its length: penalise each extra
                extra = count_penalty if k + 1 > expected[b] else 0.0
                moves.append(((b, k + 1, full), score - extra))
            if b + 1 < len(BLOCKS):  # too few only counts if the block's top is in view
                missing = count_penalty * max(expected[b] - k, 0) if full else 0.0
                moves.append(((b + 1, 1, True), score - missing))
            for state, value in moves:
                value = value + log_scores[i, state[0]]
                if state not in layer or value > layer[state][0]:
                    layer[state] = (value, (b, k, full))
        layers.append(layer)
    state = max(layers[-1], key=lambda s: layers[-1][s][0])
    path = []
    for i in range(n - 1, -1, -1):
        path.append(state[0])
        state = layers[i][state][1]
    return path[::-1]


def enforce_anatomical_order(probabilities: np.ndarray, spacing_mm, *,
                             count_penalty: float = 6.0) -> tuple[np.ndarray, SequenceReport]:
    """Relabel bodies whose class contradicts the spine's order and counts.

    Parameters
    ----------
    probabilities : (Z, H, W, 4) ndarray
        Network output on the straightened crop (axis 0 inferior to superior).
    spacing_mm : (3,) sequence of float
        Model-grid spacing.

    Returns
    -------
    probabilities : ndarray
        A new array (the input is not modified) with the relabelled bodies'
        foreground probability moved to their decoded class (to background for
        bodies above T1 or below L2).
    report : SequenceReport
    """
    labels = np.argmax(probabilities, axis=-1)
    bodies, n = find_bodies(labels > 0, spacing_mm)
    if n == 0:
        return probabilities, SequenceReport((), ())
    index = np.arange(1, n + 1)
    means = np.stack([ndimage.mean(probabilities[..., c], bodies, index) for c in range(4)], axis=1)
    block_class = np.array([b.segmentation_class for b in BLOCKS])
    log_scores = np.log(means[:, block_class] + 1e-3)
    blocks = decode_blocks(log_scores, count_penalty=count_penalty)
    network = tuple(int(np.argmax(m[1:]) + 1) for m in means)
    decoded = tuple(int(block_class[b]) for b in blocks)
    out = probabilities
    for body_id, (old, new) in enumerate(zip(network, decoded), start=1):
        if old == new:
            continue
        if out is probabilities:
            out = probabilities.copy()
        inside = bodies == body_id
        voxels = out[inside]
        foreground = voxels[:, 1:].sum(axis=1)
        moved = np.zeros_like(voxels)
        if new == CLASS_BACKGROUND:
            moved[:, 0] = voxels[:, 0] + foreground
        else:
            moved[:, 0] = voxels[:, 0]
            moved[:, new] = foreground
        out[inside] = moved
    report = SequenceReport(network, decoded)
    if report.changed:
        logger.info("anatomical order: relabelled %d of %d bodies (network %s -> %s)",
                    report.changed, n, network, decoded)
    return out, report
