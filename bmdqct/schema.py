"""The JSON Schema of ``result.json``, a validator and a reader that accepts every format.

``result.json`` is what :meth:`bmdqct.measure.Result.to_dict` /
:meth:`~bmdqct.measure.Result.to_json` write. Its layout is identified by the
``format`` key and described by a JSON Schema (draft 2020-12) shipped in
``bmdqct/schemas/``:

==================== =========================== =============================================
format               schema file                 change
==================== =========================== =============================================
``bmdqct-result/1``  ``result-1.schema.json``    first layout
``bmdqct-result/2``  ``result-2.schema.json``    each ``qc.labelling`` entry gains
                                                 ``probability`` (the level decoder's
                                                 posterior of the name, or null)
``bmdqct-result/3``  ``result-3.schema.json``    units last: ``levels.*`` ``hu_mean``,
                                                 ``hu_median``, ``hu_sd`` become
                                                 ``mean_hu``, ``median_hu``, ``sd_hu``;
                                                 ``hu_l1_l2`` becomes ``mean_hu_l1_l2``;
                                                 ``provenance.contrast.hu_offset`` becomes
                                                 ``offset_hu``; ``"frame": "LPS"`` is
                                                 required on each ``levels`` and ``vois``
                                                 entry (``center_mm`` is patient LPS mm)
==================== =========================== =============================================

* :func:`validate_result` checks a document (or a file) against the schema of
  its own format and raises :class:`ResultSchemaError` naming the file and the
  JSON path of the problem;
* :func:`read_result` reads any known format and returns it upgraded to the
  current one (:data:`CURRENT_FORMAT`);
* :func:`result_schema` returns a schema as a dictionary (for other tools).

The schemas are strict about the result's own structure (every key required,
no unknown keys, enums of level status and ACR category, level names) and
permissive about free-form metadata (``provenance.scan``, package versions,
calibration ``details`` and ``selection``).

`jsonschema <https://python-jsonschema.readthedocs.io>`_ does the validation;
it is imported on first use, so ``import bmdqct`` does not load it.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from .errors import InputError

__all__ = ["ResultSchemaError", "RESULT_FORMATS", "CURRENT_FORMAT", "result_schema", "validate_result",
           "read_result", "result_example"]

logger = logging.getLogger(__name__)

#: Known ``result.json`` formats and their schema files (in ``bmdqct/schemas/``), oldest first.
RESULT_FORMATS: Mapping[str, str] = {
    "bmdqct-result/1": "result-1.schema.json",
    "bmdqct-result/2": "result-2.schema.json",
    "bmdqct-result/3": "result-3.schema.json",
}
#: The format :func:`read_result` returns (the one :mod:`bmdqct.measure` writes).
CURRENT_FORMAT = "bmdqct-result/3"
#: Keys of a ``levels`` entry renamed in format 3 (units last): old -> new.
_LEVEL_KEYS_3 = {"hu_mean": "mean_hu", "hu_median": "median_hu", "hu_sd": "sd_hu"}
#: Format-2 names written beside their format-3 keys, with the same values, so that readers
#: of format 2 (scripts, ``../shared/tools/real_check.py``) keep working: deprecated, to be
#: dropped by format 4. Level entries: ``hu_mean``, ``hu_median``, ``hu_sd``; top level:
#: ``hu_l1_l2``.
LEGACY_LEVEL_COPIES = {new: old for old, new in _LEVEL_KEYS_3.items()}
LEGACY_RESULT_COPIES = {"mean_hu_l1_l2": "hu_l1_l2"}


class ResultSchemaError(InputError):
    """A ``result.json`` document does not follow the schema of its format, or its format is unknown."""


def result_schema(format: str = CURRENT_FORMAT) -> dict:
    """The JSON Schema of one ``result.json`` format (a new dictionary).

    Parameters
    ----------
    format : str, optional
        One of :data:`RESULT_FORMATS` (default: the current format).

    Returns
    -------
    dict
        The draft 2020-12 schema.

    Raises
    ------
    ResultSchemaError
        If `format` is unknown.

    Examples
    --------
    >>> schema = result_schema()
    >>> schema["$schema"], schema["properties"]["format"]
    ('https://json-schema.org/draft/2020-12/schema', {'const': 'bmdqct-result/3'})
    >>> "probability" in result_schema("bmdqct-result/1")["$defs"]["level_info"]["properties"]
    False
    """
    return copy.deepcopy(_load_schema(_check_format(format, "format")))


def validate_result(data_or_path, *, format: str | None = None) -> dict:
    """Check a ``result.json`` document against the schema of its format.

    Parameters
    ----------
    data_or_path : mapping, str or os.PathLike
        The document (e.g. :meth:`Result.to_dict() <bmdqct.measure.Result.to_dict>`)
        or the path of a ``result.json`` file.
    format : str, optional
        Validate against this format's schema instead of the one the
        document's ``format`` key names.

    Returns
    -------
    dict
        The document (a new dictionary when read from a file; `data_or_path`
        itself, unchanged, when a dictionary was given).

    Raises
    ------
    ResultSchemaError
        If the file cannot be read or is not JSON, if the document has no or
        an unknown ``format``, or if it breaks the schema. The message names
        the file (when there is one), the JSON path of the first problem
        (``$.levels.L1.status``) and the problem.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdqct.measure import measure
    >>> from bmdqct.volume import CTVolume, LabelVolume
    >>> k, j, i = np.mgrid[:30, :40, :50]
    >>> body = (((j - 20) / 14.0) ** 2 + ((i - 25) / 18.0) ** 2 <= 1) & (k >= 3) & (k < 27)
    >>> ct = CTVolume.from_spacing(np.where(body, 150.0, 0.0), (1, 1, 1))
    >>> result = measure(ct, labels=LabelVolume.from_spacing(body * 20, (1, 1, 1), names={"L1": 20}))
    >>> data = validate_result(result.to_dict())
    >>> data["levels"]["L1"]["status"] = "great"
    >>> validate_result(data)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bmdqct.schema.ResultSchemaError: result document: at $.levels.L1.status: 'great' is not one of [...
    """
    data, where = _as_document(data_or_path)
    fmt = _check_format(data.get("format") if format is None else format,
                        f"{where}: 'format'" if format is None else "format")
    _validate(data, fmt, where)
    return data


def read_result(path: str | os.PathLike) -> dict:
    """Read a ``result.json`` of any known format, upgraded to :data:`CURRENT_FORMAT`.

    The file is validated against the schema of its own format first, then
    upgraded one format at a time (each step validated):

    * 1 -> 2: each ``qc.labelling`` entry gains ``"probability": null`` (a
      format-1 result predates the level decoder);
    * 2 -> 3: the keys are renamed with the unit last (``levels.*.hu_mean`` ->
      ``mean_hu``, ``hu_median`` -> ``median_hu``, ``hu_sd`` -> ``sd_hu``;
      ``hu_l1_l2`` -> ``mean_hu_l1_l2``; ``provenance.contrast.hu_offset`` ->
      ``offset_hu``), values unchanged, and each ``levels`` and ``vois`` entry
      gains ``"frame": "LPS"`` where it lacks one (bmdqct has always written
      patient LPS mm).

    Parameters
    ----------
    path : str or os.PathLike
        A ``result.json`` file.

    Returns
    -------
    dict
        The document in the current format (a new dictionary).

    Raises
    ------
    ResultSchemaError
        If the file cannot be read, is not JSON, has an unknown format (for
        example one written by a newer bmdqct) or breaks its format's schema.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> old = result_example("bmdqct-result/1")
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "result.json"
    >>> _ = path.write_text(json.dumps(old))
    >>> new = read_result(path)
    >>> new["format"], new["qc"]["labelling"]["L1"]["probability"]
    ('bmdqct-result/3', None)
    >>> new["levels"]["L1"]["mean_hu"], new["levels"]["L1"]["frame"], new["mean_hu_l1_l2"]
    (150.0, 'LPS', 150.0)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_result expects the path of a result.json file, got {type(path).__name__}; "
                        "use validate_result for a dictionary")
    data, where = _as_document(path)
    fmt = _check_format(data.get("format"), f"{where}: 'format'")
    _validate(data, fmt, where)
    while fmt != CURRENT_FORMAT:
        new, upgrade = _UPGRADES[fmt]
        data = upgrade(data)
        logger.info("%s: upgraded from %s to %s", where, fmt, new)
        _validate(data, new, f"{where} (upgraded to {new})")
        fmt = new
    return data


def result_example(format: str = CURRENT_FORMAT) -> dict:
    """A small valid document of `format` (one measured level, no calibration); for examples and tests.

    Examples
    --------
    >>> doc = result_example()
    >>> doc["levels"]["L1"]["status"], validate_result(doc) is doc
    ('measured', True)
    """
    fmt = _check_format(format, "format")
    old_names = fmt in ("bmdqct-result/1", "bmdqct-result/2")
    info = {"level": "L1", "label_id": 20, "source_class": None, "slice_range": [3, 26],
            "z_range_mm": [3.0, 26.0], "height_mm": 24.0, "heights_mm": [24.0, 24.0, 24.0], "n_voxels": 18840,
            "volume_mm3": 18840.0, "centroid_mm": [14.5, 20.0, 25.0], "partial": False, "confidence": None,
            "rib_bearing": False, "bbox": [[3, 27], [6, 35], [7, 44]]}
    if fmt != "bmdqct-result/1":
        info["probability"] = None
    voi = {"level": "L1", "center_mm": [15.0, 20.0, 25.0], "center_vox": [15.0, 20.0, 25.0],
           "semi_axis_ap_mm": 7.4, "semi_axis_lr_mm": 10.13, "height_mm": 9.0, "covered_height_mm": 9.0,
           "slice_range": [11, 19], "middle_slice": 15, "section_area_mm2": 785.0, "longest_row_mm": 37.0,
           "scale": 1.0, "n_voxels": 2151, "volume_mm3": 2151.0, "flags": []}
    level = {"level": "L1", "status": "measured", "mean_hu": 150.0, "median_hu": 150.0, "sd_hu": 0.0,
             "n_voxels": 2151, "volume_mm3": 2151.0, "frame": "LPS", "center_mm": [15.0, 20.0, 25.0],
             "semi_axis_ap_mm": 7.4, "semi_axis_lr_mm": 10.13, "covered_height_mm": 9.0, "bmd_mg_cm3": None,
             "height_mm": 24.0, "confidence": None, "reason": "", "flags": []}
    if old_names:   # format 1 and 2: HU statistics named unit first, no frame on the level entry
        level = _renamed({k: v for k, v in level.items() if k != "frame"}, {v: k for k, v in _LEVEL_KEYS_3.items()})
    else:
        voi = {"level": "L1", "frame": "LPS", **{k: v for k, v in voi.items() if k != "level"}}
        level.update({old: level[new] for new, old in LEGACY_LEVEL_COPIES.items()})
    flag = {"code": "no_calibration", "level": None, "message": "no calibration given: HU only, no BMD and no "
                                                                "category"}
    legacy = {} if old_names else {"hu_l1_l2": 150.0}
    return {
        "format": fmt, "case": "example",
        "levels": {"L1": level}, "bmd_l1_l2_mg_cm3": None, ("hu_l1_l2" if old_names else "mean_hu_l1_l2"): 150.0,
        **legacy,
        "category": None,
        "levels_used": ["L1"],
        "diagnosis": {"category": None, "bmd_mg_cm3": None, "levels_used": ["L1"], "flags": [],
                      "reason": "no calibration: HU only, no category; L1 only"},
        "qc": {"flags": ["no_calibration"], "details": [flag], "labelling": {"L1": info}, "rib_check": None},
        "vois": {"L1": voi}, "calibration": None,
        "provenance": {
            "bmdqct_version": "0.1.0", "created": "2024-03-15T08:00:00+00:00", "python": "3.11.7",
            "versions": {"numpy": "2.0.0"}, "input": None, "scan": {"kvp": None},
            "grid": {"shape": [30, 40, 50], "spacing_mm": [1.0, 1.0, 1.0], "orientation": "SPL"},
            "model_id": None, "labels": "LabelVolume", "calibration_id": None, "calibration_source": None,
            "voi_protocol": {"area_fraction": 0.3, "ap_fraction_of_row": 0.2, "height_mm": 9.0,
                             "shrink_step": 0.95, "min_scale": 0.5, "margin_mm": 0.0},
            "thresholds_mg_cm3": [80.0, 120.0], "convention": "acr", "timings_s": {"total_s": 0.05}},
    }


# --------------------------------------------------------------------------- helpers


def _check_format(fmt, what: str) -> str:
    if fmt not in RESULT_FORMATS:
        hint = ("; a result written by a newer bmdqct? upgrade bmdqct to read it"
                if isinstance(fmt, str) and fmt.startswith("bmdqct-result/") else "")
        raise ResultSchemaError(f"{what} is {fmt!r}, expected one of {list(RESULT_FORMATS)}{hint}")
    return fmt


@functools.lru_cache(maxsize=None)
def _load_schema(fmt: str) -> dict:
    name = RESULT_FORMATS[fmt]
    text = resources.files("bmdqct").joinpath("schemas", name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def _validator(fmt: str):
    import jsonschema

    schema = _load_schema(fmt)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _as_document(data_or_path) -> tuple[dict, str]:
    """(document, description of where it came from)."""
    if isinstance(data_or_path, (str, os.PathLike)):
        path = Path(data_or_path)
        where = f"result file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ResultSchemaError(f"{where} cannot be read ({err}); expected a result.json that "
                                    "bmdqct measure wrote") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ResultSchemaError(f"{where} is not JSON ({err})") from err
    elif isinstance(data_or_path, Mapping):
        data, where = data_or_path, "result document"
    else:
        raise TypeError(f"expected a result dictionary or the path of a result.json file, got "
                        f"{type(data_or_path).__name__}")
    if not isinstance(data, Mapping):
        raise ResultSchemaError(f"{where}: expected a JSON object with a 'format' key, got "
                                f"{type(data).__name__}")
    return data, where


def _validate(data: Mapping, fmt: str, where: str) -> None:
    from jsonschema.exceptions import best_match

    errors = list(_validator(fmt).iter_errors(data))
    if not errors:
        return
    first = best_match(errors)
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise ResultSchemaError(f"{where}: at {first.json_path}: {first.message}{more}; expected the layout of "
                            f"{fmt} (bmdqct/schemas/{RESULT_FORMATS[fmt]})")


def _upgrade_1_to_2(data: Mapping) -> dict:
    """A format-2 copy of a format-1 document (never changes `data`)."""
    out = copy.deepcopy(dict(data))
    out["format"] = "bmdqct-result/2"
    for entry in out["qc"]["labelling"].values():
        entry["probability"] = None
    return out


def _upgrade_2_to_3(data: Mapping) -> dict:
    """A format-3 copy of a format-2 document (never changes `data`): units last, frame on each entry."""
    out = _renamed(copy.deepcopy(dict(data)), {"hu_l1_l2": "mean_hu_l1_l2"})
    out["format"] = "bmdqct-result/3"
    out.update({old: out.get(new) for new, old in LEGACY_RESULT_COPIES.items()})
    out["levels"] = {name: {**_renamed(entry, _LEVEL_KEYS_3), "frame": entry.get("frame", "LPS"),
                            **{old: entry.get(old) for old in LEGACY_LEVEL_COPIES.values()}}
                     for name, entry in out["levels"].items()}
    out["vois"] = {name: {**entry, "frame": entry.get("frame", "LPS")} for name, entry in out["vois"].items()}
    contrast = out["provenance"].get("contrast")
    if isinstance(contrast, Mapping):
        out["provenance"]["contrast"] = _renamed(contrast, {"hu_offset": "offset_hu"})
    return out


#: format -> (next format, the function that upgrades a document to it).
_UPGRADES = {"bmdqct-result/1": ("bmdqct-result/2", _upgrade_1_to_2),
             "bmdqct-result/2": ("bmdqct-result/3", _upgrade_2_to_3)}


def _renamed(entry: Mapping, names: Mapping[str, str]) -> dict:
    """A copy of `entry` with the keys in `names` renamed (same order, values unchanged)."""
    return {names.get(key, key): value for key, value in entry.items()}
