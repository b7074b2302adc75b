"""DICOM Segmentation of the vertebral bodies and VOIs of a result (private)."""

from __future__ import annotations

import numpy as np

from .._version import __version__
from ..levels import level_index
from . import _codes
from ._source import SourceSeries, sample_on_source

#: Series numbers of the outputs: the source's plus these offsets (1000 and 1001 without one).
SEG_SERIES_OFFSET, SR_SERIES_OFFSET = 1000, 1001


def algorithm_identification(result):
    """highdicom AlgorithmIdentificationSequence: bmdqct, its version, model id and label source."""
    import highdicom as hd

    parameters = {"model_id": str(result.provenance.get("model_id")),
                  "labels": str(result.provenance.get("labels"))}
    return hd.AlgorithmIdentificationSequence(name="bmdqct", family=_codes.AI_FAMILY, version=__version__,
                                              parameters=parameters)


def segment_plan(result) -> list[tuple[str, str]]:
    """The segments, in segment-number order: ``("body", level)`` then ``("voi", level)``.

    Every labelled body (cranio-caudal), then the VOI of every measured level.
    """
    bodies = [("body", name) for name in sorted(result.labels.levels, key=level_index)]
    vois = [("voi", name) for name in sorted(result.vois, key=level_index)]
    return bodies + vois


def segment_label(kind: str, level: str) -> str:
    """Segment Label of a body or a VOI (e.g. ``'L1 vertebral body'``, ``'L1 trabecular VOI'``)."""
    return f"{level} vertebral body" if kind == "body" else f"{level} trabecular VOI"


def build_segmentation(result, series: SourceSeries, *, series_uid: str, sop_uid: str):
    """highdicom Segmentation (BINARY) of the bodies and VOIs on the source images."""
    import highdicom as hd

    plan = segment_plan(result)
    if not plan:
        from ..errors import MeasurementError

        raise MeasurementError(f"{series.folder}: the result holds no vertebral body and no VOI; "
                               "a DICOM Segmentation needs at least one segment")
    labels = result.labels.labels
    body_map = sample_on_source(labels.labels, labels.affine, series)
    voi_grid = np.zeros(labels.shape, np.int16)
    for number, (kind, level) in enumerate(plan, start=1):
        if kind == "voi":
            voi = result.vois[level]
            voi_grid[voi.slices][voi.box_mask] = number
    voi_map = sample_on_source(voi_grid, labels.affine, series)
    pixels = np.zeros(body_map.shape + (len(plan),), dtype=bool)
    algorithm = algorithm_identification(result)
    descriptions = []
    for number, (kind, level) in enumerate(plan, start=1):
        code = _codes.vertebra_code(level)
        if kind == "body":
            pixels[..., number - 1] = body_map == result.labels.levels[level].label_id
            category, prop, regions = _codes.ANATOMICAL_STRUCTURE, code, None
        else:
            pixels[..., number - 1] = voi_map == number
            category, prop, regions = _codes.TISSUE, _codes.BONE, [code]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=segment_label(kind, level), segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=hd.UID(),
            tracking_id=segment_label(kind, level), anatomic_regions=regions))
    source_number = series.datasets[0].get("SeriesNumber")
    return hd.seg.Segmentation(
        source_images=list(series.datasets), pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=series_uid, series_number=_series_number(source_number, SEG_SERIES_OFFSET),
        sop_instance_uid=sop_uid, instance_number=1, manufacturer="bmdqct",
        manufacturer_model_name="bmdqct vertebral trabecular BMD", software_versions=__version__,
        device_serial_number="none", content_description="Vertebral bodies and trabecular VOIs (bmdqct)",
        content_label="BMDQCT_SEG", series_description="bmdqct vertebral bodies and VOIs")


def _series_number(source_number, offset: int) -> int:
    try:
        return int(source_number) + offset
    except (TypeError, ValueError):
        return offset
