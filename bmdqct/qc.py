"""Quality-control findings shared by the stages (labelling, VOI, measurement, diagnosis)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QCFlag"]


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
        return {"code": self.code, "level": self.level, "message": self.message}
