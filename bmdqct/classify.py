"""Diagnostic categories from trabecular BMD (ACR thresholds) and the choice of levels.

The ACR–SPR–SSR practice parameter for QCT classifies the mean trabecular BMD
of two lumbar vertebrae: **< 80 mg/cm³ osteoporosis, 80–120 mg/cm³ osteopenia
(low bone mass), > 120 mg/cm³ normal** [1]_; the wording puts exactly 80 and
exactly 120 in osteopenia, which is the default boundary convention here
(``"acr"``). Some software (VirtuOst) instead counts 80 as osteoporosis and 120
as normal (``"virtuost"``). BMD is never rounded before classifying.

The two vertebrae are L1 and L2 (Pan et al. 2020). If one is excluded
(fracture-like height loss, cut by the scan's edge, failed QC, focal sclerosis)
or missing, the adjacent vertebra takes its place — T12 for L1, L3 for L2,
then the other one — and the result is flagged; with one usable level the
result is a flagged single-level value; with none there is no category, and
the reason says why (:func:`diagnose`). The thresholds were set for lumbar
K2HPO4-referenced QCT; a T12 substitute is flagged as thoracic.

References
----------
.. [1] ACR–SPR–SSR Practice Parameter for the Performance of Quantitative
   Computed Tomography (QCT) Bone Densitometry (Resolution 32, revised 2013;
   amended 2018). Categories as reproduced in: Chinese expert consensus on
   opportunistic screening, Quant Imaging Med Surg 2020;10(10):2066-2077,
   Table 2 (PMC7495321).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._util import record_dict
from .qc import QCFlag
from .levels import level_index

__all__ = [
    "BMDCategory",
    "ACR_THRESHOLDS_MG_CM3",
    "CONVENTIONS",
    "DEFAULT_SUBSTITUTES",
    "Diagnosis",
    "LevelSelection",
    "classify_bmd",
    "diagnose",
    "select_levels",
]

#: (osteoporosis/osteopenia, osteopenia/normal) boundaries in mg/cm³ K2HPO4 (ACR).
ACR_THRESHOLDS_MG_CM3 = (80.0, 120.0)

#: Boundary conventions: ``"acr"`` puts both thresholds in osteopenia
#: (80 <= BMD <= 120); ``"virtuost"`` puts 80 in osteoporosis and 120 in normal.
CONVENTIONS = ("acr", "virtuost")

#: Substitutes for each primary level, in order of preference.
DEFAULT_SUBSTITUTES: Mapping[str, tuple[str, ...]] = {"L1": ("T12", "L3"), "L2": ("L3", "T12")}


class BMDCategory(str, enum.Enum):
    """ACR category of spinal trabecular BMD; the value is the JSON/CSV spelling."""

    OSTEOPOROSIS = "osteoporosis"
    OSTEOPENIA = "osteopenia"
    NORMAL = "normal"

    def __str__(self) -> str:
        return self.value


def classify_bmd(bmd_mg_cm3: float, *, thresholds: Sequence[float] = ACR_THRESHOLDS_MG_CM3,
                 convention: str = "acr") -> BMDCategory:
    """ACR category of a trabecular BMD.

    Parameters
    ----------
    bmd_mg_cm3 : float
        BMD in mg/cm³ K2HPO4-equivalent (normally the mean of two lumbar levels).
    thresholds : (float, float), optional
        Lower and upper boundaries, mg/cm³; default ``(80.0, 120.0)``.
    convention : {"acr", "virtuost"}, optional
        Where the boundaries belong: ``"acr"`` — osteoporosis < 80 <=
        osteopenia <= 120 < normal; ``"virtuost"`` — osteoporosis <= 80 <
        osteopenia < 120 <= normal.

    Returns
    -------
    BMDCategory

    Raises
    ------
    ValueError
        If `bmd_mg_cm3` is not finite, the thresholds are not increasing, or
        the convention is unknown.

    Examples
    --------
    >>> classify_bmd(79.9), classify_bmd(80.0), classify_bmd(120.0), classify_bmd(120.1)
    (<BMDCategory.OSTEOPOROSIS: 'osteoporosis'>, <BMDCategory.OSTEOPENIA: 'osteopenia'>, \
<BMDCategory.OSTEOPENIA: 'osteopenia'>, <BMDCategory.NORMAL: 'normal'>)
    >>> str(classify_bmd(80.0, convention="virtuost")), str(classify_bmd(120.0, convention="virtuost"))
    ('osteoporosis', 'normal')
    """
    low, high = _check_thresholds(thresholds)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    try:
        value = float(bmd_mg_cm3)
    except (TypeError, ValueError):
        raise ValueError(f"bmd_mg_cm3 must be a number, got {bmd_mg_cm3!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"bmd_mg_cm3 must be finite, got {value}; a level without BMD has no category")
    if convention == "acr":
        if value < low:
            return BMDCategory.OSTEOPOROSIS
        return BMDCategory.NORMAL if value > high else BMDCategory.OSTEOPENIA
    if value <= low:
        return BMDCategory.OSTEOPOROSIS
    return BMDCategory.NORMAL if value >= high else BMDCategory.OSTEOPENIA


@dataclass(frozen=True)
class Diagnosis:
    """The levels used for diagnosis, their mean BMD and its category.

    Attributes
    ----------
    category : BMDCategory or None
        None when no level is usable or no BMD is available.
    bmd_mg_cm3 : float or None
        Mean BMD of `levels_used` (None without usable BMD).
    levels_used : tuple of str
        Levels averaged, cranio-caudal order.
    flags : tuple of QCFlag
        ``substituted``, ``single_level``, ``thoracic_substitute``,
        ``no_usable_level``.
    reason : str
        A sentence saying how the value was formed, or why there is none.
    """

    category: BMDCategory | None
    bmd_mg_cm3: float | None
    levels_used: tuple[str, ...]
    flags: tuple[QCFlag, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-safe dictionary (the ``diagnosis`` of ``result.json``); flags as ``str(flag)``."""
        return record_dict(self, flags=[str(f) for f in self.flags])


def diagnose(level_bmd_mg_cm3: Mapping[str, float | None], *,
             excluded: Mapping[str, str] | None = None,
             primary: Sequence[str] = ("L1", "L2"),
             substitutes: Mapping[str, Sequence[str]] = DEFAULT_SUBSTITUTES,
             thresholds: Sequence[float] = ACR_THRESHOLDS_MG_CM3,
             convention: str = "acr") -> Diagnosis:
    """Choose the levels (with substitution) and classify their mean BMD.

    Parameters
    ----------
    level_bmd_mg_cm3 : mapping of str to float or None
        BMD per measured level; None or NaN means not measured.
    excluded : mapping of str to str, optional
        Levels excluded by QC and the reason (e.g. ``{"L1": "fracture-like
        height loss"}``); they are never used.
    primary : sequence of str, optional
        The levels to average; default L1 and L2.
    substitutes : mapping of str to sequence of str, optional
        Replacements of each primary level, in order of preference; default
        T12 then L3 for L1, L3 then T12 for L2.
    thresholds, convention
        As in :func:`classify_bmd`.

    Returns
    -------
    Diagnosis

    Examples
    --------
    >>> d = diagnose({"T12": 95.0, "L1": 140.0, "L2": 90.0}, excluded={"L1": "fracture-like"})
    >>> d.levels_used, d.bmd_mg_cm3, str(d.category), [str(f) for f in d.flags]
    (('T12', 'L2'), 92.5, 'osteopenia', ['substituted:T12', 'thoracic_substitute:T12'])
    >>> diagnose({"L1": None, "L2": None}).reason
    'no usable level: L1 not measured; L2 not measured'
    """
    selection = select_levels(level_bmd_mg_cm3, excluded=excluded, primary=primary, substitutes=substitutes)
    if not selection.levels_used:
        return Diagnosis(None, None, (), selection.flags, selection.reason)
    value = sum(float(level_bmd_mg_cm3[n]) for n in selection.levels_used) / len(selection.levels_used)
    category = classify_bmd(value, thresholds=thresholds, convention=convention)
    return Diagnosis(category, value, selection.levels_used, selection.flags, selection.reason)


@dataclass(frozen=True)
class LevelSelection:
    """Levels chosen for the diagnosis (see :func:`select_levels`)."""

    levels_used: tuple[str, ...]
    flags: tuple[QCFlag, ...] = ()
    reason: str = ""


def select_levels(level_values: Mapping[str, float | None], *, excluded: Mapping[str, str] | None = None,
                  primary: Sequence[str] = ("L1", "L2"),
                  substitutes: Mapping[str, Sequence[str]] = DEFAULT_SUBSTITUTES) -> LevelSelection:
    """Choose the levels to average: the primary ones, or their substitutes.

    Parameters
    ----------
    level_values : mapping of str to float or None
        A value (BMD or HU) per measured level; None or NaN means not measured.
    excluded, primary, substitutes
        As in :func:`diagnose`.

    Returns
    -------
    LevelSelection
        Levels in cranio-caudal order, flags (``substituted``,
        ``thoracic_substitute``, ``single_level``, ``no_usable_level``) and a
        sentence saying how they were chosen.

    Examples
    --------
    >>> sel = select_levels({"L1": 100.0, "L2": None, "L3": 90.0})
    >>> sel.levels_used, sel.reason
    (('L1', 'L3'), 'mean of L1, L3 (L2 not measured, L3 substituted)')
    """
    excluded = dict(excluded or {})
    usable = {}
    why_not = {}
    for name, value in level_values.items():
        if name in excluded:
            why_not[name] = f"{name} excluded ({excluded[name]})"
        elif value is None or not math.isfinite(float(value)):
            why_not[name] = f"{name} not measured"
        else:
            usable[name] = float(value)
    flags: list[QCFlag] = []
    used: list[str] = []
    notes: list[str] = []
    for level in primary:
        if level in usable:
            used.append(level)
            continue
        reason = why_not.get(level, f"{level} not measured")
        for candidate in substitutes.get(level, ()):
            if candidate in usable and candidate not in used and candidate not in primary:
                used.append(candidate)
                flags.append(QCFlag("substituted", candidate, f"{reason}; {candidate} used instead"))
                if candidate.startswith("T"):
                    flags.append(QCFlag("thoracic_substitute", candidate,
                                        "thoracic level in the lumbar average: the ACR thresholds were set "
                                        "for lumbar vertebrae"))
                notes.append(f"{reason}, {candidate} substituted")
                break
        else:
            notes.append(reason)
    used = sorted(set(used), key=level_index)
    if not used:
        reason = "no usable level: " + "; ".join(notes)
        return LevelSelection((), (QCFlag("no_usable_level", None, reason),), reason)
    if len(used) == 1:
        flags.append(QCFlag("single_level", used[0],
                            f"only {used[0]} is usable; the result rests on a single vertebra"))
    reason = f"mean of {', '.join(used)}" + (f" ({'; '.join(notes)})" if notes else "")
    return LevelSelection(tuple(used), tuple(flags), reason)


def _check_thresholds(thresholds) -> tuple[float, float]:
    try:
        low, high = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must be two numbers (low, high) in mg/cm3, got {thresholds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"thresholds must be finite and increasing, got ({low}, {high})")
    return low, high
