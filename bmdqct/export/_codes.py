"""Coded concepts of the SEG and SR (private; see :mod:`bmdqct.export`).

Standard codes come from pydicom's copy of the DICOM code tables
(``pydicom.sr.codedict.codes``, DICOM PS3.16): SNOMED CT vertebrae, UCUM units,
DCM concepts. Where DICOM and SNOMED CT hold no concept for what bmdqct reports
(volumetric trabecular BMD by QCT, the ACR category, a QC flag, a level's
measurement status, the calibration), a private coding scheme
:data:`SCHEME` is used, declared in the SR's Coding Scheme Identification
Sequence, as PS3.3 C.12.1.1.2 allows ("99" prefix). No code value is invented
in a public scheme.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

#: Private coding scheme designator of bmdqct's own concepts.
SCHEME = "99BMDQCT"
SCHEME_NAME = "bmdqct local concepts"


def _local(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


#: SNOMED CT codes of the vertebral levels (as in pydicom.sr.codedict, DICOM PS3.16).
VERTEBRA_CODES: dict[str, Code] = {
    **{f"C{n}": getattr(codes.SCT, f"C{n}Vertebra") for n in range(1, 8)},
    **{f"T{n}": getattr(codes.SCT, f"T{n}Vertebra") for n in range(1, 13)},
    **{f"L{n}": getattr(codes.SCT, f"L{n}Vertebra") for n in range(1, 6)},
}
#: Levels without their own SNOMED CT code (T13, L6, S1) get "Vertebra" and their name in the label.
GENERIC_VERTEBRA = codes.SCT.Vertebra

ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
TISSUE = codes.SCT.Tissue
BONE = codes.SCT.Bone
ATTENUATION = codes.DCM.AttenuationCoefficient
MEAN = codes.SCT.Mean
MEDIAN = codes.SCT.Median
SD = codes.SCT.StandardDeviation
VOLUME = codes.SCT.Volume
HU = codes.UCUM.HounsfieldUnit
MG_CM3 = codes.UCUM.MilligramsPerCubicCentimeter
MM3 = codes.UCUM.CubicMillimeter
MG_CM3_PER_HU = Code("mg/cm3/[hnsf'U]", "UCUM", "mg/cm^3 per Hounsfield unit")
PROCEDURE = codes.cid100.CTUnspecifiedBodyRegion
AI_FAMILY = codes.cid7162.ArtificialIntelligence

BMD = _local("BMD-TRAB", "Volumetric trabecular bone mineral density")
BMD_L1_L2 = _local("BMD-L1L2", "Mean trabecular BMD of the levels used for diagnosis")
HU_L1_L2 = _local("HU-L1L2", "Mean CT number of the levels used for diagnosis")
CATEGORY = _local("ACR-CAT", "ACR QCT bone mineral density category")
CATEGORY_VALUES = {
    "normal": _local("ACR-NORMAL", "Normal bone mineral density (ACR QCT, above 120 mg/cm3)"),
    "osteopenia": _local("ACR-OSTEOPENIA", "Low bone mass (ACR QCT, 80 to 120 mg/cm3)"),
    "osteoporosis": _local("ACR-OSTEOPOROSIS", "Osteoporosis (ACR QCT, below 80 mg/cm3)"),
}
NO_CATEGORY = _local("ACR-NONE", "No category (no usable level or no calibration)")
STATUS = _local("LEVEL-STATUS", "Measurement status of the vertebral level")
STATUS_VALUES = {
    "measured": _local("MEASURED", "Measured"),
    "excluded": _local("EXCLUDED", "Measured but excluded from the diagnosis"),
    "partial": _local("PARTIAL", "Body cut by the edge of the scan; not measured"),
    "missing": _local("MISSING", "Not in the labels; not measured"),
    "failed": _local("FAILED", "VOI could not be placed; not measured"),
}
REASON = _local("REASON", "Reason")
QC_FLAG = _local("QC-FLAG", "Quality-control flag")
LEVELS_USED = _local("LEVELS-USED", "Levels used for the diagnosis")
DIAGNOSIS_REASON = _local("DIAGNOSIS", "How the diagnosis was reached")
CALIBRATION_SLOPE = _local("CAL-SLOPE", "Calibration slope (BMD per HU)")
CALIBRATION_INTERCEPT = _local("CAL-INTERCEPT", "Calibration intercept")
CALIBRATION = _local("CAL", "Calibration used (id, method, mineral, source)")
MODEL_ID = _local("MODEL-ID", "Segmentation model id")
SOURCE_NOTE = _local("SOURCE-NOTE", "Note on the source series")
LABEL_SOURCE = _local("LABEL-SOURCE", "Source of the vertebra labels")


def vertebra_code(level: str) -> Code:
    """SNOMED CT code of a level; "Vertebra" for T13, L6 and S1.

    Examples
    --------
    >>> vertebra_code("L1").value, vertebra_code("T13").meaning
    ('66794005', 'Vertebra')
    """
    return VERTEBRA_CODES.get(level, GENERIC_VERTEBRA)
