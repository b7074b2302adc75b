"""Vertebral level names, label-id schemes and the segmentation classes.

bmdqct names vertebrae ``"C1"`` … ``"C7"``, ``"T1"`` … ``"T12"`` (``"T13"`` for a
thirteenth rib-bearing vertebra), ``"L1"`` … ``"L6"``, ``"S1"``, and stores
per-level label maps with **VerSe ids** (C1 = 1, T1 = 8, T12 = 19, L1 = 20,
L2 = 21, S1 = 26, T13 = 28). External label maps in TotalSegmentator v2
``total`` ids (T12 = 32, L1 = 31, L2 = 30, …) are translated with
:func:`scheme_ids`.

The segmentation task of Pan et al. (2020) has four classes:
``0`` background, ``1`` T1–T6, ``2`` T7–T12, ``3`` L1–L2 (:data:`SEGMENTATION_CLASSES`).

Examples
--------
>>> level_id("L1"), level_name(19), segmentation_class("T9")
(20, 'T12', 2)
>>> scheme_ids("totalsegmentator")["L1"]
31
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "LEVELS",
    "SEGMENTATION_CLASSES",
    "CLASS_BACKGROUND",
    "CLASS_T1_T6",
    "CLASS_T7_T12",
    "CLASS_L1_L2",
    "level_id",
    "level_name",
    "level_index",
    "segmentation_class",
    "scheme_ids",
]

#: Names in cranio-caudal order (T13 and L6 are transitional variants).
LEVELS = (
    *(f"C{n}" for n in range(1, 8)),
    *(f"T{n}" for n in range(1, 14)),
    *(f"L{n}" for n in range(1, 7)),
    "S1",
)

CLASS_BACKGROUND, CLASS_T1_T6, CLASS_T7_T12, CLASS_L1_L2 = 0, 1, 2, 3

#: Class id -> name of the 4-class segmentation task (Pan et al. 2020).
SEGMENTATION_CLASSES: Mapping[int, str] = {
    CLASS_BACKGROUND: "background",
    CLASS_T1_T6: "T1-T6",
    CLASS_T7_T12: "T7-T12",
    CLASS_L1_L2: "L1-L2",
}

_VERSE = {
    **{f"C{n}": n for n in range(1, 8)},
    **{f"T{n}": 7 + n for n in range(1, 13)},
    **{f"L{n}": 19 + n for n in range(1, 7)},
    "S1": 26,
    "T13": 28,
}

# TotalSegmentator v2 "total" task (totalsegmentator/map_to_binary.py).
_TOTALSEGMENTATOR = {
    **{f"C{n}": 51 - n for n in range(1, 8)},
    **{f"T{n}": 44 - n for n in range(1, 13)},
    **{f"L{n}": 32 - n for n in range(1, 6)},
    "S1": 26,
}


def level_id(name: str) -> int:
    """VerSe label id of a level name; raises ``KeyError`` for unknown names."""
    try:
        return _VERSE[name]
    except KeyError:
        raise KeyError(f"unknown vertebral level {name!r}; expected one of {LEVELS}") from None


def level_name(label_id: int) -> str:
    """Level name of a VerSe label id; raises ``KeyError`` for unknown ids."""
    for name, value in _VERSE.items():
        if value == int(label_id):
            return name
    raise KeyError(f"unknown VerSe vertebra id {label_id}; expected 1-26 or 28")


def level_index(name: str) -> int:
    """Position of a level in cranio-caudal order (C1 = 0); T13 sits between T12 and L1."""
    if name not in LEVELS:
        raise KeyError(f"unknown vertebral level {name!r}; expected one of {LEVELS}")
    return LEVELS.index(name)


def segmentation_class(name: str) -> int:
    """Segmentation class (0-3) of a level: T1-T6 -> 1, T7-T12 -> 2, L1-L2 -> 3, others 0."""
    level_index(name)  # validates
    if name[0] == "T" and int(name[1:]) <= 6:
        return CLASS_T1_T6
    if name[0] == "T" and int(name[1:]) <= 12:
        return CLASS_T7_T12
    if name in ("L1", "L2"):
        return CLASS_L1_L2
    return CLASS_BACKGROUND


def scheme_ids(scheme: str | Mapping[str, int]) -> dict[str, int]:
    """Level name -> label id for a named scheme or an explicit mapping.

    Parameters
    ----------
    scheme : {"verse", "totalsegmentator"} or mapping of str to int
        A known label convention, or a user mapping such as ``{"L1": 5, "L2": 6}``.
    """
    if isinstance(scheme, Mapping):
        mapping = {str(k): int(v) for k, v in scheme.items()}
        for name in mapping:
            level_index(name)
        return mapping
    key = str(scheme).lower().replace("_", "").replace("-", "")
    if key == "verse":
        return dict(_VERSE)
    if key in ("totalsegmentator", "ts", "totalseg"):
        return dict(_TOTALSEGMENTATOR)
    raise ValueError(f"unknown label scheme {scheme!r}; expected 'verse', "
                     "'totalsegmentator' or a mapping like {'L1': 31}")
