"""TID 1500 Measurement Report (Comprehensive 3D SR) of a result (private)."""

from __future__ import annotations

from .._version import __version__
from ..levels import level_index
from . import _codes
from ._seg import SR_SERIES_OFFSET, _series_number, segment_plan
from ._source import SourceSeries

#: Tracking identifier of the diagnosis group.
DIAGNOSIS_TRACKING_ID = "L1-L2 diagnosis"


def level_tracking_id(level: str) -> str:
    """Tracking identifier of a level's measurement group (e.g. ``'L1 trabecular BMD'``)."""
    return f"{level} trabecular BMD"


def _text(name, value: str):
    import highdicom as hd

    return hd.sr.TextContentItem(name=name, value=str(value)[:1024] or "-",
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _append(group, items) -> None:
    """Add content items to a highdicom measurement group's container."""
    for item in items:
        group[0].ContentSequence.append(item)


def _measurements(m, algorithm, site):
    """NUM items of one level: mean, median and SD of HU, mean BMD, VOI volume."""
    import highdicom as hd

    out = []

    def add(name, value, unit, derivation=None):
        if value is not None:
            out.append(hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation,
                                         algorithm_id=algorithm, finding_sites=[site]))

    add(_codes.ATTENUATION, m.mean_hu, _codes.HU, _codes.MEAN)
    add(_codes.ATTENUATION, m.median_hu, _codes.HU, _codes.MEDIAN)
    add(_codes.ATTENUATION, m.sd_hu, _codes.HU, _codes.SD)
    add(_codes.BMD, m.bmd_mg_cm3, _codes.MG_CM3, _codes.MEAN)
    if m.n_voxels:
        add(_codes.VOLUME, m.volume_mm3, _codes.MM3)
    return out


def segment_of_frame(segmentation, frame: int) -> int:
    """Segment number of a frame (0-based); in the shared groups when the SEG has one segment."""
    item = segmentation.PerFrameFunctionalGroupsSequence[frame]
    if "SegmentIdentificationSequence" not in item:
        item = segmentation.SharedFunctionalGroupsSequence[0]
    return int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)


def _referenced_segment(segmentation, number: int):
    """ReferencedSegment with the source images of the segment's frames.

    ``highdicom.sr.ReferencedSegment.from_segmentation`` (0.28) reads the
    segment number from the per-frame groups only, where a one-segment SEG
    does not hold it.
    """
    import highdicom as hd

    sources = {}
    for frame, item in enumerate(segmentation.PerFrameFunctionalGroupsSequence):
        if segment_of_frame(segmentation, frame) != number:
            continue
        for derivation in item.get("DerivationImageSequence", []):
            for image in derivation.get("SourceImageSequence", []):
                sources.setdefault(str(image.ReferencedSOPInstanceUID), str(image.ReferencedSOPClassUID))
    return hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID, sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation(cls, uid) for uid, cls in sources.items()])


def _calibration_text(cal) -> str:
    if cal is None:
        return "none: HU only, no BMD and no category"
    return (f"id {cal.id}; bmd_mg_cm3 = {cal.slope:g} * HU + {cal.intercept:g}; mineral {cal.mineral}; "
            f"method {cal.method}; source {cal.source or '-'}")


def build_report(result, series: SourceSeries, segmentation, *, series_uid: str, sop_uid: str):
    """highdicom Comprehensive3DSR holding a TID 1500 Measurement Report of `result`."""
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    provenance = result.provenance
    model_id = provenance.get("model_id")
    algorithm = hd.sr.AlgorithmIdentification(
        name="bmdqct", version=__version__,
        parameters=[f"model_id={model_id}", f"labels={provenance.get('labels')}"])
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["bmdqct", __version__, str(model_id)]), name="bmdqct",
            manufacturer_name="bmdqct", model_name=str(model_id)))
    context = hd.sr.ObservationContext(observer_device_context=device)

    plan = segment_plan(result)
    groups = []
    for level in sorted(result.levels, key=level_index):
        m = result.levels[level]
        site = hd.sr.FindingSite(anatomic_location=_codes.vertebra_code(level))
        tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=level_tracking_id(level))
        status = hd.sr.QualitativeEvaluation(_codes.STATUS, _codes.STATUS_VALUES[m.status])
        kind = "voi" if ("voi", level) in plan else "body" if ("body", level) in plan else None
        common = dict(tracking_identifier=tracking, finding_sites=[site], algorithm_id=algorithm,
                      measurements=_measurements(m, algorithm, site) or None, qualitative_evaluations=[status])
        if kind is None:
            group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
        else:
            referenced = _referenced_segment(segmentation, plan.index((kind, level)) + 1)
            group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=referenced,
                                                                             **common)
        items = [_text(_codes.REASON, m.reason)] if m.reason else []
        items += [_text(_codes.QC_FLAG, f"{f}: {f.message}") for f in m.flags]
        _append(group, items)
        groups.append(group)

    used = list(result.levels_used)
    sites = [hd.sr.FindingSite(anatomic_location=_codes.vertebra_code(n)) for n in used]
    measurements = []
    if result.bmd_l1_l2_mg_cm3 is not None:
        measurements.append(hd.sr.Measurement(name=_codes.BMD_L1_L2, value=float(result.bmd_l1_l2_mg_cm3),
                                              unit=_codes.MG_CM3, derivation=_codes.MEAN,
                                              algorithm_id=algorithm))
    if result.mean_hu_l1_l2 is not None:
        measurements.append(hd.sr.Measurement(name=_codes.HU_L1_L2, value=float(result.mean_hu_l1_l2),
                                              unit=_codes.HU, derivation=_codes.MEAN, algorithm_id=algorithm))
    cal = result.calibration
    if cal is not None:
        measurements.append(hd.sr.Measurement(name=_codes.CALIBRATION_SLOPE, value=float(cal.slope),
                                              unit=_codes.MG_CM3_PER_HU))
        measurements.append(hd.sr.Measurement(name=_codes.CALIBRATION_INTERCEPT, value=float(cal.intercept),
                                              unit=_codes.MG_CM3))
    category = (_codes.NO_CATEGORY if result.category is None
                else _codes.CATEGORY_VALUES[result.category.value])
    diagnosis = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=DIAGNOSIS_TRACKING_ID),
        finding_sites=sites or None, algorithm_id=algorithm, measurements=measurements or None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(_codes.CATEGORY, category)])
    _append(diagnosis, [
        _text(_codes.LEVELS_USED, "+".join(used) or "none"),
        _text(_codes.DIAGNOSIS_REASON, result.diagnosis.reason or "-"),
        _text(_codes.CALIBRATION, _calibration_text(cal)),
        _text(_codes.MODEL_ID, str(model_id)),
        _text(_codes.LABEL_SOURCE, str(provenance.get("labels"))),
        *(_text(_codes.QC_FLAG, f"{f}: {f.message}") for f in result.flags),
        *(_text(_codes.SOURCE_NOTE, note) for note in series.notes),
    ])
    groups.append(diagnosis)

    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=_codes.PROCEDURE,
                                     imaging_measurements=groups)
    source_number = series.datasets[0].get("SeriesNumber")
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*series.datasets, segmentation], content=report[0], series_instance_uid=series_uid,
        series_number=_series_number(source_number, SR_SERIES_OFFSET), sop_instance_uid=sop_uid,
        instance_number=1, manufacturer="bmdqct", is_complete=True, is_final=False, is_verified=False,
        series_description="bmdqct BMD measurement report")
    scheme = Dataset()
    scheme.CodingSchemeDesignator = _codes.SCHEME
    scheme.CodingSchemeName = _codes.SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "bmdqct project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr
