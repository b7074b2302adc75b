"""The level decoder of :mod:`bmdqct.labeling`: the most probable naming of a chain of bodies.

The bodies found along the vertebral column, ordered from the top of the scan
down, form a chain. A naming gives each body a level of the spine's sequence
``C1 … C7, T1 … T<t>, L1 … L5, S1`` for an anatomy variant with ``t`` = 11,
12 or 13 rib-bearing (thoracic) vertebrae. The naming is a hidden Markov
model over the chain:

* **state** — the level of a body;
* **transition** — from one body to the next the level advances by ``d >= 1``
  (``d - 1`` bodies were missed), with a probability set by the distance
  between the two bodies' centres relative to the local pitch (the median
  distance between neighbours within two places): Gaussian in ``distance / pitch - d`` with a
  standard deviation of ``0.2 * sqrt(d)``;
* **emissions** — independent cues of each body:

  - the *ribs* seen beside it, per side (:data:`RIB_TABLE`): the strongest
    cue, because a rib-bearing body is a thoracic one whatever its
    appearance; the lowest rib-bearing body is T12 (with 12 pairs) and the
    first marks T1;
  - the *segmentation network's class votes* (share of the body's voxels in
    T1–T6, T7–T12, L1–L2): deliberately weak (:data:`NET_FLOOR`,
    :data:`NET_GAIN`), because one class boundary in the wrong place shifts
    every name; it decides only what the anatomy leaves open;
  - whether the element *is the sacrum* (S1) seen below the chain.

Forward–backward gives, for every variant, the posterior of each body's level;
variants are weighted by their prior (:data:`VARIANT_PRIOR`) times their
evidence. The reported naming is the Viterbi path of the most probable
variant; each body's probability is the posterior (summed over variants) of
the name that path gives it. A name whose probability is below
:data:`MIN_LEVEL_PROBABILITY` is *uncertain*: reported, but not measured for a
category. A chain without any anchor (no ribs and no sacrum in view) therefore
stays uncertain, since the network's votes alone cannot reach that bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp as _logsumexp

__all__ = ["BodyCues", "LevelDecoding", "decode_levels", "MIN_LEVEL_PROBABILITY"]

#: A level whose name has a lower posterior probability is uncertain (not used for a category).
MIN_LEVEL_PROBABILITY = 0.9

#: Prior of the number of rib-bearing vertebrae (11 and 13 are transitional anatomy). 13
#: includes a rib on L1 (lumbar ribs are reported in several per cent of CT scans); 11 includes
#: a twelfth pair too small to see. Without the first rib in view either leaves some doubt on
#: T12's name (probability about 0.93 when all cues agree), little on L1's.
VARIANT_PRIOR = {11: 0.02, 12: 0.95, 13: 0.03}

#: Network vote likelihood: ``NET_FLOOR + NET_GAIN * share`` of the level's class
#: (at most 0.7 / 0.3, under one nat, per body).
NET_FLOOR = 0.3
NET_GAIN = 0.4

#: P(what is seen on one side | rib-bearing level) and (| level without ribs): a "long"
#: rib (reaching more than 32 mm beyond the body's wall), a "short" one (20-32 mm with
#: rib-head bone beside the body: a short twelfth rib, or a long transverse process of
#: L1-L3) or "none". The detector rarely misses a real rib and rarely sees a long one
#: beside a lumbar or cervical body.
RIB_SIDE = {True: {"long": 0.85, "short": 0.10, "none": 0.05},
            False: {"long": 0.02, "short": 0.18, "none": 0.80}}
#: The same for the lowest rib-bearing level (T12 in 12 pairs), whose floating rib is often
#: short or hypoplastic: a rib missed there is less telling.
RIB_SIDE_LOWEST = {"long": 0.70, "short": 0.18, "none": 0.12}
#: A thirteenth rib-bearing vertebra (T13, or L1 with a lumbar rib) mostly carries a short,
#: rudimentary rib: a long one makes the body more likely a T12.
RIB_SIDE_T13 = {"long": 0.30, "short": 0.50, "none": 0.20}
#: The two sides are not independent (one scan, one patient): their log-likelihoods are
#: summed with this weight when both are seen.
RIB_BOTH_SIDES_WEIGHT = 0.75

#: P(sacrum seen as this element | level): S1 and anything else.
SACRUM_HIT = 0.95
SACRUM_FALSE = 0.01

#: Relative prior weight of a chain starting at C1-C6 (the network segments T1-L2).
CERVICAL_START_WEIGHT = 0.05

#: Pitch (mm) assumed for a chain without two bodies.
DEFAULT_PITCH_MM = 28.0

#: Longest step between neighbouring bodies (3 bodies missed).
MAX_STEP = 4

_CERVICAL = tuple(f"C{n}" for n in range(1, 8))
_LUMBAR = tuple(f"L{n}" for n in range(1, 6))


@dataclass(frozen=True)
class BodyCues:
    """What one element of the chain shows, for :func:`decode_levels`.

    Attributes
    ----------
    z_mm : float
        Position of the body's centre along the column (cranial is larger), mm.
    class_votes : (float, float, float) or None
        Shares of the body's voxels that the network put in T1–T6, T7–T12 and
        L1–L2 (None: no network, e.g. an external label map).
    ribs : (str or None, str or None)
        What is seen on the right and on the left: ``"long"`` (a rib),
        ``"short"`` (a short rib or a long transverse process), ``"none"``;
        None where that side could not be checked (e.g. the body is cut by
        the scan's edge).
    sacrum : bool
        True if the element is the sacrum (its top, S1) rather than a body.
    """

    z_mm: float
    class_votes: tuple[float, float, float] | None = None
    ribs: tuple[str | None, str | None] = (None, None)
    sacrum: bool = False


@dataclass(frozen=True)
class LevelDecoding:
    """The decoded naming of a chain of bodies.

    Attributes
    ----------
    names : tuple of str
        Level of each element, top first (the most probable naming).
    probabilities : tuple of float
        Posterior probability of each element's name.
    rib_bearing_count : int
        Rib-bearing vertebrae of the most probable anatomy (12 is typical).
    variant_probability : float
        Posterior probability of that anatomy.
    """

    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    rib_bearing_count: int
    variant_probability: float

    @property
    def certain(self) -> tuple[bool, ...]:
        """Per element: the name reaches :data:`MIN_LEVEL_PROBABILITY`."""
        return tuple(p >= MIN_LEVEL_PROBABILITY for p in self.probabilities)

    @property
    def transitional(self) -> bool:
        """True when the most probable anatomy has 11 or 13 rib-bearing vertebrae."""
        return self.rib_bearing_count != 12


def level_sequence(rib_bearing: int = 12) -> tuple[str, ...]:
    """The level names, top down, of a spine with `rib_bearing` thoracic vertebrae.

    Examples
    --------
    >>> level_sequence(11)[6:9], level_sequence(13)[18:22]
    (('C7', 'T1', 'T2'), ('T12', 'T13', 'L1', 'L2'))
    """
    return _CERVICAL + tuple(f"T{n}" for n in range(1, rib_bearing + 1)) + _LUMBAR + ("S1",)


def decode_levels(chain: Sequence[BodyCues], *, pitch_mm: float | None = None) -> LevelDecoding:
    """Name a chain of bodies from all its cues at once.

    Parameters
    ----------
    chain : sequence of BodyCues
        The elements top first (decreasing ``z_mm``).
    pitch_mm : float, optional
        Typical distance between neighbouring bodies' centres; by default,
        for each step, the median of the body-to-body distances within two
        places of it (:data:`DEFAULT_PITCH_MM` for a chain of one).

    Returns
    -------
    LevelDecoding

    Raises
    ------
    ValueError
        If `chain` is empty or not ordered top first.

    Examples
    --------
    Four bodies 30 mm apart; the network calls the top two T7–T12 and the
    bottom two L1–L2, but ribs are seen on both sides of the top body only:
    the names follow the ribs (though, with no second anchor such as the
    sacrum, below :data:`MIN_LEVEL_PROBABILITY`):

    >>> votes = [(0, 1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1)]
    >>> ribs = [("long", "long"), ("none", "none"), ("none", "none"), ("short", "none")]
    >>> chain = [BodyCues(100.0 - 30 * i, v, r) for i, (v, r) in enumerate(zip(votes, ribs))]
    >>> decode_levels(chain).names
    ('T12', 'L1', 'L2', 'L3')
    """
    if not chain:
        raise ValueError("decode_levels needs at least one body")
    z = np.array([c.z_mm for c in chain], float)
    if np.any(np.diff(z) >= 0):
        raise ValueError("the chain must be ordered top first (strictly decreasing z_mm)")
    gaps = -np.diff(z)
    steps = np.arange(1, MAX_STEP + 1)
    log_step = []
    for i, g in enumerate(gaps):
        r = g / (pitch_mm if pitch_mm is not None else _local_pitch(gaps, chain, i))
        lp = -0.5 * ((r - steps) / (0.2 * np.sqrt(steps))) ** 2
        log_step.append(lp - _logsumexp(lp))

    results = []
    for t, prior in VARIANT_PRIOR.items():
        seq = level_sequence(t)
        emit = np.array([[_emission(c, name, t) for name in seq] for c in chain])
        evidence, post, path = _forward_backward(emit, log_step)
        results.append((t, seq, math.log(prior) + evidence, post, path))
    logs = np.array([r[2] for r in results])
    weights = np.exp(logs - _logsumexp(logs))
    best = int(np.argmax(weights))
    t, seq, _, _, path = results[best]
    names = tuple(seq[s] for s in path)
    probs = []
    for i, name in enumerate(names):
        p = 0.0
        for w, (_, seq_v, _, post_v, _) in zip(weights, results):
            if name in seq_v:
                p += w * float(post_v[i, seq_v.index(name)])
        probs.append(round(min(float(p), 1.0), 4))
    return LevelDecoding(names, tuple(probs), t, round(float(weights[best]), 4))


def _local_pitch(gaps: np.ndarray, chain, i: int) -> float:
    """Typical body-to-body distance near gap `i`: the median of the body gaps within two places.

    Bodies grow taller down the spine (thoracic pitch about 20-28 mm, lumbar 30-40 mm), so one
    median for the whole chain would make the lowest lumbar step look like a missed body. Gaps
    to the sacrum element are not body pitches and are left out.
    """
    body = [j for j in range(len(gaps)) if not (chain[j].sacrum or chain[j + 1].sacrum)]
    near = [gaps[j] for j in body if abs(j - i) <= 2]
    if not near:
        near = [gaps[j] for j in body] or [DEFAULT_PITCH_MM]
    return float(np.median(near))


def _expected_class(name: str) -> int:
    if name[0] == "T":
        return 1 if int(name[1:]) <= 6 else 2
    return 1 if name[0] == "C" else 3


def _bears_ribs(name: str, t: int) -> bool:
    return name[0] == "T" and int(name[1:]) <= t


def _emission(cue: BodyCues, name: str, t: int) -> float:
    if cue.sacrum:
        return math.log(SACRUM_HIT if name == "S1" else SACRUM_FALSE)
    out = 0.0
    if name == "S1":
        out += math.log(SACRUM_FALSE)           # a free body is not the sacrum
    if cue.class_votes is not None:
        share = float(cue.class_votes[_expected_class(name) - 1])
        out += math.log(NET_FLOOR + NET_GAIN * share)
    if name == "T13":
        table = RIB_SIDE_T13
    elif name == f"T{t}":
        table = RIB_SIDE_LOWEST
    else:
        table = RIB_SIDE[_bears_ribs(name, t)]
    sides = [table[r] for r in cue.ribs if r is not None]
    if sides:
        out += (RIB_BOTH_SIDES_WEIGHT if len(sides) == 2 else 1.0) * float(np.sum(np.log(sides)))
    return out


def _forward_backward(emit: np.ndarray, log_step) -> tuple[float, np.ndarray, list[int]]:
    """(log evidence, posterior (n, S), Viterbi path) of one variant."""
    n, s = emit.shape
    # the network segments T1-L2 and at most extends a class to C7: a chain rarely starts higher
    start = np.where(np.arange(s) < len(_CERVICAL) - 1, math.log(CERVICAL_START_WEIGHT), 0.0)
    start = start - _logsumexp(start)
    trans = []
    for lp in log_step:                        # (S, S) log transition, position a -> b = a + d
        m = np.full((s, s), -np.inf)
        for d, v in enumerate(lp, start=1):
            idx = np.arange(s - d)
            m[idx, idx + d] = v
        trans.append(m)
    alpha = np.empty((n, s))
    delta = np.empty((n, s))
    back = np.zeros((n, s), int)
    alpha[0] = start + emit[0]
    delta[0] = alpha[0]
    for i in range(1, n):
        alpha[i] = _logsumexp(alpha[i - 1][:, None] + trans[i - 1], axis=0) + emit[i]
        cand = delta[i - 1][:, None] + trans[i - 1]
        back[i] = np.argmax(cand, axis=0)
        delta[i] = cand[back[i], np.arange(s)] + emit[i]
    beta = np.zeros((n, s))
    for i in range(n - 2, -1, -1):
        beta[i] = _logsumexp(trans[i] + (emit[i + 1] + beta[i + 1])[None, :], axis=1)
    evidence = float(_logsumexp(alpha[-1]))
    post = np.exp(alpha + beta - evidence)
    path = [int(np.argmax(delta[-1]))]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return evidence, post, path[::-1]
