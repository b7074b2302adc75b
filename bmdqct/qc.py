"""Quality-control findings shared by the stages (labelling, VOI, measurement, diagnosis)."""

from __future__ import annotations

from dataclasses import dataclass

from ._util import record_dict

__all__ = ["FLAG_GLOSSARY", "QCFlag", "explain"]


@dataclass(frozen=True)
class QCFlag:
    """One quality-control finding.

    Parameters
    ----------
    code : str
        Stable machine-readable code, e.g. ``"partial"``, ``"rib_mismatch"``.
    level : str or None
        The vertebral level concerned, if any.
    message : str
        A sentence for the reader of the report.

    Examples
    --------
    >>> str(QCFlag("partial", "T12", "cut by the scan's upper edge"))
    'partial:T12'
    """

    code: str
    level: str | None = None
    message: str = ""

    def __str__(self) -> str:
        return self.code if self.level is None else f"{self.code}:{self.level}"

    def to_dict(self) -> dict:
        """JSON-safe dictionary: ``code``, ``level``, ``message``."""
        return record_dict(self)


#: What each QC flag code means and what to do about it: ``code -> (meaning, action)``.
#: ``bmdqct flags`` prints it; a test checks that every code the package emits is here.
#: Add a code with one line (keep the alphabetical order).
FLAG_GLOSSARY: dict[str, tuple[str, str]] = {
    "class_merged": ("small pieces of one segmentation class touching a body of another class were merged into "
                     "that body",
                     "look at the label map in the QC picture; nothing to do if the bodies look whole"),
    "class_missing": ("a segmentation class (T1-T6, T7-T12 or L1-L2) has no body at all",
                      "normal if the scan does not reach that region; otherwise check the scan and the label map"),
    "contrast": ("the scan is contrast-enhanced (the level is the phase: arterial, portal_venous or "
                 "unknown_contrast; from the aorta's HU and the ContrastBolusAgent tag); contrast raises the "
                 "vertebral HU, so the category is withheld unless corrected",
                 "prefer an unenhanced scan; or pass contrast_correction=True (--contrast-correction) to apply "
                 "the published phase offset"),
    "contrast_corrected": ("the published phase-specific HU offset of an enhanced scan (20 HU arterial, 14.75 HU "
                           "portal-venous; TotalSegmentator spine report) was subtracted before calibration",
                           "interpret the category with care: the offset is a population mean, not this patient's"),
    "disc_trimmed": ("segmented bodies were fitted to the disc planes seen in the image: pieces lying across a "
                     "disc were cut off (and joined the body between the same discs, or were dropped), and "
                     "touching pieces between the same two discs were joined into one body",
                     "nothing to do if the bodies in the QC picture each sit between two discs"),
    "derived_series": ("the DICOM series read is a derived image (reformat, secondary capture), the only CT "
                       "series in the folder",
                       "prefer the original axial reconstruction if it exists; reformats may be smoothed"),
    "excluded": ("a measured level was left out of the L1-L2 mean (the reason is in the message: height loss, "
                 "focal sclerosis or failed QC)",
                 "read the level's reason; review the vertebra on the CT before trusting the category"),
    "extra_component": ("a segmentation class had more bodies than levels; the ones farthest from the anchor "
                        "were dropped (results of bmdqct before the level decoder; no longer raised)",
                        "check the level names on the QC picture; pass a corrected label map with --labels if wrong"),
    "failed_qc": ("the VOI of a level is too small or the segmentation confidence too low, so the level was "
                  "excluded",
                  "review the level on the QC picture; a corrected label map (--labels) may recover it"),
    "focal_sclerosis": ("a large share of the VOI is far brighter than its median (bone island, sclerosis), so the "
                        "level was excluded",
                        "review the vertebra on the CT; the other levels carry the result"),
    "files_skipped": ("files in the DICOM folder could not be read as DICOM and were skipped (the message names "
                      "some); other files, a damaged export, or a slice of the series cut short",
                      "check the named files; if a slice is missing, irregular_spacing is flagged too and the "
                      "gap was interpolated: export the series again"),
    "fragment_dropped": ("a piece of segmentation smaller than the minimum body volume was ignored",
                         "usually harmless; if a whole level is missing, check the segmentation"),
    "gap": ("two neighbouring levels lie farther apart than usual: a body may be missing and the names below it "
            "shifted",
            "check the level names against the ribs on the QC picture; pass corrected labels with --labels"),
    "height_loss": ("the middle height of the body is much lower than its neighbours' (fracture-like), so the "
                    "level was excluded",
                    "look for a vertebral fracture on the CT; report it, the other levels carry the result"),
    "inter_level_outlier": ("one level's BMD differs strongly from both neighbours",
                            "check that level's VOI on the QC picture (fracture, bone island, mislabelling)"),
    "irregular_spacing": ("the DICOM slices were not evenly spaced (the message lists the steps found); the stack "
                          "was resampled to a uniform spacing by linear interpolation",
                          "check the series is complete; export it again if slices are missing"),
    "naming_uncertain": ("the scan cuts the end from which a class's levels are counted, so the names are "
                         "counted from the other end or guessed (results before the level decoder, which "
                         "raises level_uncertain instead)",
                         "confirm the level names (ribs, sacrum) on the QC picture before trusting per-level values"),
    "no_calibration": ("no calibration was given: the report holds HU only, no BMD and no category",
                       "pass --calibration CAL.json or --calibration-store DIR (see 'bmdqct calibrate --help')"),
    "no_usable_level": ("none of the levels used for the category could be measured",
                        "no category: check the scan's coverage (T12-L2) and the QC picture"),
    "overlap": ("two neighbouring levels lie unusually close together",
                "check the segmentation for a body split in two; pass corrected labels with --labels"),
    "partial": ("the vertebral body is cut by the edge of the scan and was not measured",
                "nothing to fix in the software; the other levels carry the result"),
    "rescale_assumed": ("the DICOM files lack RescaleSlope/RescaleIntercept; stored values were taken as HU "
                        "(slope 1, intercept 0) after checking that air sits at about -1000 HU",
                        "confirm with the scanner's export settings; re-export with rescale tags if in doubt"),
    "column_not_found": ("no spinal canal was found in the image, so segmented bodies could not be checked "
                         "against the vertebral column",
                         "look at the QC picture: every coloured body must be a vertebral body"),
    "level_corrected": ("the level decoder named a body differently from the network's class (from the ribs "
                        "and the body count)",
                        "nothing to do if the ribs in the QC picture agree; otherwise pass labels with --labels"),
    "level_disagreement": ("the level decoder disagrees with the names of an external label map",
                           "check the level names of the label map against the ribs"),
    "level_uncertain": ("no naming of this body reaches the required probability (no rib or other anchor in "
                        "view, conflicting cues, or transitional anatomy); it is not used for a category",
                        "count the vertebrae on the CT; pass confirmed labels with --labels to measure it"),
    "non_vertebral": ("a segmented component is not a vertebral body (off the vertebral column, no cortical "
                      "rim, implausible size or density) and was not named",
                      "none: it was ignored; many such flags mean the model does not suit the scan"),
    "thoracic_only": ("the scan ends above L1, so L1-L2 cannot be measured",
                      "use a scan that covers L1-L2 for a category"),
    "transitional_anatomy": ("11 or 13 rib-bearing vertebrae are the most probable anatomy",
                             "confirm the count on the CT; levels below T10 are not used for a category"),
    "rib_mismatch": ("the lowest rib-bearing vertebra disagrees with the level names (11 or 13 rib pairs, or a "
                     "mislabelled spine)",
                     "count the ribs on the CT and confirm T12/L1; pass corrected labels with --labels if needed"),
    "series_chosen": ("the DICOM folder held several series; the largest axial CT image series was read (never a "
                      "localizer or derived series; the message lists the others)",
                      "check the choice; pass --series UID (series_uid=) to read another one"),
    "series_uid_missing": ("the DICOM files have an empty SeriesInstanceUID (anonymised export); they were grouped "
                           "into one series by their other tags",
                           "nothing to do if the folder holds one series; otherwise separate the series' files"),
    "single_level": ("only one vertebra was usable; the category rests on a single level",
                     "interpret with care; the ACR criteria assume the L1-L2 mean"),
    "split": ("a tall segmentation component was split into several bodies at the disc planes",
              "check the level names and boundaries on the QC picture"),
    "substituted": ("a level of the L1-L2 mean was unusable and a neighbouring level was used instead",
                    "read the message for the reason; the category is less comparable to a standard L1-L2 one"),
    "thoracic_substitute": ("a thoracic level stands in for a lumbar one; the ACR thresholds were set for lumbar "
                            "vertebrae",
                            "interpret the category with care"),
    "voi_failed": ("the elliptical VOI could not be placed in the level",
                   "check the body's segmentation on the QC picture; the level is not measured"),
    "voi_shrunk": ("the ellipse left the vertebral body and was shrunk to fit",
                   "usually harmless; check the VOI on the QC picture for a small or deformed body"),
}


def explain(code: str) -> tuple[str, str]:
    """Meaning and recommended action of a QC flag `code`.

    Examples
    --------
    >>> explain("partial")[0]
    'the vertebral body is cut by the edge of the scan and was not measured'
    >>> explain("no_such_code")
    Traceback (most recent call last):
    ...
    KeyError: "unknown QC flag code 'no_such_code'; 'bmdqct flags' lists the known codes"
    """
    try:
        return FLAG_GLOSSARY[code]
    except KeyError:
        raise KeyError(f"unknown QC flag code {code!r}; 'bmdqct flags' lists the known codes") from None
