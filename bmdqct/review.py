"""An HTML cohort review of a finished ``bmdqct measure`` output folder.

:func:`review_rows` reads what :func:`bmdqct.batch.run_cases` wrote into
``OUT`` (``results.csv``, one row per case; ``OUT/<case>/result.json``,
``qc.png``, ``error.json``, ``seg.dcm``, ``sr.dcm``; the notes of
``manifest.json``) into frozen :class:`ReviewRow` values; :func:`render_review`
turns them into one static HTML page and :func:`write_review` writes it to
``OUT/review.html`` (``bmdqct review OUT``).

The page works from the file system with no server and no network: plain HTML
with inline CSS and JavaScript, no external resource. Each row shows the QC
thumbnail (a relative link to the case's ``qc.png``), BMD per level, the L1-L2
BMD (and HU), the ACR category, the status, the reason and the QC flags; each
flag carries its glossary text (:data:`bmdqct.qc.FLAG_GLOSSARY`) as a tooltip
(``title``). A click on a column header sorts by it (numbers as numbers, empty
cells last; a second click reverses), and the text box keeps only the rows that
contain its text. Every text from the folder is escaped (:func:`html.escape`)
and every link is URL-quoted, so a case id or a reason cannot inject markup.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ._util import atomic_write_text, deprecated_alias, renamed_value
from ._version import __version__
from .errors import InputError

__all__ = ["ReviewRow", "review_rows", "render_review", "write_review", "REVIEW_FILE", "LEVEL_COLUMNS"]

logger = logging.getLogger(__name__)

#: File name of the page inside the output folder.
REVIEW_FILE = "review.html"
#: Levels whose BMD gets a column, cranio-caudal.
LEVEL_COLUMNS = ("T12", "L1", "L2")
#: Files of a case folder that get a link, with their link text.
_CASE_FILES = (("result.json", "result.json"), ("qc.png", "picture"), ("error.json", "error.json"),
               ("seg.dcm", "SEG"), ("sr.dcm", "SR"), ("labels.nii.gz", "labels"), ("voi.nii.gz", "VOI"))


@dataclass(frozen=True)
class ReviewRow:
    """One case of the review page.

    Attributes
    ----------
    case : str
        Case id (the ``case`` column of ``results.csv``).
    status : str
        ``ok``, ``no_measurement`` or ``failed``.
    reason : str
        Why the case failed or has no measurement ('' if ok).
    category : str
        ACR category ('' if none).
    bmd_mg_cm3 : mapping of str to float or None
        BMD of each level of :data:`LEVEL_COLUMNS` (None: not measured or no
        calibration).
    bmd_l1_l2_mg_cm3, mean_hu_l1_l2 : float or None
        Mean BMD and mean HU of the levels used for the diagnosis.
    levels_used : str
        As in ``results.csv`` (``L1+L2``).
    flags : tuple of str
        QC flags as ``code`` or ``code:level``.
    flag_messages : mapping of str to str
        The case-specific message of each flag (from ``result.json``), if any.
    notes : tuple of str
        The run's notes for the case (``manifest.json``), e.g. why no DICOM
        SEG/SR was written.
    files : tuple of (str, str)
        (link text, path relative to the output folder) of each case file
        that exists.
    thumbnail : str or None
        Path of the QC picture relative to the output folder.
    hu_l1_l2 : float or None
        Deprecated read-only alias of `mean_hu_l1_l2` (emits a :class:`DeprecationWarning`).
    """

    case: str
    status: str
    reason: str
    category: str
    bmd_mg_cm3: Mapping[str, float | None]
    bmd_l1_l2_mg_cm3: float | None
    mean_hu_l1_l2: float | None
    levels_used: str
    flags: tuple[str, ...]
    flag_messages: Mapping[str, str]
    notes: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    thumbnail: str | None

    hu_l1_l2 = deprecated_alias("mean_hu_l1_l2", "hu_l1_l2")


def review_rows(output_dir) -> tuple[ReviewRow, ...]:
    """The cases of a ``bmdqct measure`` output folder, in ``results.csv`` order.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The folder ``bmdqct measure -o OUT`` wrote.

    Returns
    -------
    tuple of ReviewRow

    Raises
    ------
    InputError
        If `output_dir` is not a folder or holds no readable ``results.csv``
        with a ``case`` column.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> _ = (out / "results.csv").write_text("case,status,error,category,bmd_l1_l2_mg_cm3,L1_bmd_mg_cm3\\n"
    ...                                      "a,ok,,osteopenia,101.50,100.00\\nb,failed,ValueError: x,,,\\n")
    >>> [(r.case, r.status, r.bmd_l1_l2_mg_cm3, r.bmd_mg_cm3["L1"], r.reason) for r in review_rows(out)]
    [('a', 'ok', 101.5, 100.0, ''), ('b', 'failed', None, None, 'ValueError: x')]
    """
    out = Path(output_dir)
    table = out / "results.csv"
    if not out.is_dir():
        raise InputError(f"{out} is not a folder; expected the output folder of 'bmdqct measure -o OUT'")
    try:
        with table.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            csv_rows = list(reader)
            columns = reader.fieldnames or []
    except OSError as err:
        raise InputError(f"{table} cannot be read ({err.strerror or err}); expected the results.csv of a "
                         "finished 'bmdqct measure -o OUT' run") from err
    except csv.Error as err:
        raise InputError(f"{table} is not a valid CSV file ({err}); expected the results.csv of "
                         "'bmdqct measure'") from err
    if "case" not in columns:
        raise InputError(f"{table} has no 'case' column (columns: {', '.join(columns) or 'none'}); expected the "
                         "results.csv of 'bmdqct measure'")
    notes = _manifest_notes(out / "manifest.json")
    return tuple(_row(out, row, notes.get(row["case"], ())) for row in csv_rows if row.get("case"))


def render_review(rows: Sequence[ReviewRow], *, title: str = "bmdqct cohort review",
                  run: Mapping | None = None, glossary: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The review page of `rows` as one HTML document (inline CSS and JavaScript only).

    Parameters
    ----------
    rows : sequence of ReviewRow
        From :func:`review_rows`; links are relative to the folder the page is
        written into.
    title : str, optional
        Page title and heading.
    run : mapping, optional
        A ``manifest.json`` (its times, version, calibration and counts are
        shown above the table).
    glossary : mapping, optional
        Flag code -> (meaning, what to do); default :data:`bmdqct.qc.FLAG_GLOSSARY`.

    Returns
    -------
    str

    Examples
    --------
    >>> row = ReviewRow(case="<b>x</b>", status="ok", reason="", category="normal",
    ...                 bmd_mg_cm3={"T12": None, "L1": 130.0, "L2": 126.0}, bmd_l1_l2_mg_cm3=128.0,
    ...                 mean_hu_l1_l2=160.0, levels_used="L1+L2", flags=("partial:T12",), flag_messages={},
    ...                 notes=(), files=(), thumbnail=None)
    >>> page = render_review([row])
    >>> "<td>&lt;b&gt;x&lt;/b&gt;</td>" in page, "<b>x</b>" in page, 'data-sort="128.0"' in page
    (True, False, True)
    >>> 'title="partial: ' in page
    True
    """
    if glossary is None:
        from .qc import FLAG_GLOSSARY as glossary
    esc = html.escape
    head = ["case", "QC picture", *(f"{n} BMD (mg/cm³)" for n in LEVEL_COLUMNS), "L1–L2 BMD (mg/cm³)",
            "L1–L2 HU", "levels used", "category", "status", "flags", "reason / notes", "files"]
    numeric = {2, 3, 4, 5, 6}
    header = "".join(
        f'<th data-col="{i}" data-type="{"num" if i in numeric else "text"}" aria-sort="none"'
        f' title="click to sort">{esc(name)}</th>' if name != "QC picture" else f"<th>{esc(name)}</th>"
        for i, name in enumerate(head))
    body = "\n".join(_render_row(row, glossary) for row in rows)
    summary = _render_run(run) if run else ""
    counts = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    count_text = ", ".join(f"{n} {esc(s)}" for s, n in sorted(counts.items())) or "no case"
    return _PAGE.format(
        title=esc(title), summary=summary, header=header, body=body, n=len(rows), counts=count_text,
        version=esc(__version__),
        made=esc(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")), style=_STYLE,
        script=_SCRIPT)


def write_review(output_dir, *, path=None, title: str | None = None) -> Path:
    """Write the HTML review page of a ``bmdqct measure`` output folder.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The folder ``bmdqct measure -o OUT`` wrote.
    path : str or os.PathLike, optional
        Where to write the page (default ``OUT/review.html``). The links are
        relative to ``OUT``, so the page belongs in that folder.
    title : str, optional
        Page title (default: "bmdqct cohort review: <folder name>").

    Returns
    -------
    pathlib.Path
        The page written (atomically: a temporary file, then a rename).

    Raises
    ------
    InputError
        As :func:`review_rows`.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> _ = (out / "results.csv").write_text("case,status,error\\nscan_1,failed,InputError: unreadable\\n")
    >>> page = write_review(out)
    >>> page.name, "InputError: unreadable" in page.read_text(encoding="utf-8")
    ('review.html', True)
    """
    out = Path(output_dir)
    rows = review_rows(out)
    run = _read_json(out / "manifest.json")
    page = Path(path) if path is not None else out / REVIEW_FILE
    text = render_review(rows, title=title or f"bmdqct cohort review: {out.resolve().name}", run=run)
    atomic_write_text(page, text)
    logger.info("wrote %s (%d cases)", page, len(rows))
    return page


# --------------------------------------------------------------------------- reading


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError:
        logger.warning("%s is not valid JSON; ignored by the review", path)
        return None


def _manifest_notes(path: Path) -> dict[str, tuple[str, ...]]:
    manifest = _read_json(path)
    if not isinstance(manifest, Mapping):
        return {}
    return {str(c.get("case")): tuple(str(n) for n in c.get("notes") or ())
            for c in manifest.get("cases") or () if isinstance(c, Mapping)}


def _number(text) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _row(out: Path, row: Mapping[str, str], notes: tuple[str, ...]) -> ReviewRow:
    case = row["case"]
    folder = out / case
    result = _read_json(folder / "result.json") if (folder / "result.json").is_file() else None
    result = result if isinstance(result, Mapping) else {}
    details = (result.get("qc") or {}).get("details") or ()
    messages = {}
    for d in details:
        if isinstance(d, Mapping) and d.get("message"):
            key = d["code"] if d.get("level") is None else f"{d['code']}:{d['level']}"
            messages.setdefault(str(key), str(d["message"]))
    files = tuple((text, f"{case}/{name}") for name, text in _CASE_FILES if (folder / name).is_file())
    flags = tuple(f for f in (row.get("flags") or "").split(";") if f)
    return ReviewRow(
        case=case, status=row.get("status") or "", reason=row.get("error") or "",
        category=row.get("category") or "",
        bmd_mg_cm3={n: _number(row.get(f"{n}_bmd_mg_cm3")) for n in LEVEL_COLUMNS},
        bmd_l1_l2_mg_cm3=_number(row.get("bmd_l1_l2_mg_cm3")), mean_hu_l1_l2=_number(renamed_value(result, "mean_hu_l1_l2", "hu_l1_l2")),
        levels_used=row.get("levels_used") or "", flags=flags, flag_messages=messages, notes=notes,
        files=files, thumbnail=f"{case}/qc.png" if (folder / "qc.png").is_file() else None)


# --------------------------------------------------------------------------- rendering


def _href(relative: str) -> str:
    return html.escape(quote(relative, safe="/"))


def _num_cell(value: float | None) -> str:
    if value is None:
        return '<td class="num" data-sort=""></td>'
    return f'<td class="num" data-sort="{value!r}">{value:.1f}</td>'


def _flag_title(flag: str, glossary, messages) -> str:
    code = flag.split(":", 1)[0]
    if code in glossary:
        meaning, action = glossary[code]
        text = f"{code}: {meaning}. To do: {action}"
    else:
        text = f"{code}: unknown flag code ('bmdqct flags' lists the known codes)"
    if messages.get(flag):
        text += f"\nThis case: {messages[flag]}"
    return text


def _render_row(row: ReviewRow, glossary) -> str:
    esc = html.escape
    if row.thumbnail:
        href = _href(row.thumbnail)
        picture = (f'<td class="qc"><a href="{href}"><img src="{href}" alt="QC picture of {esc(row.case)}"'
                   ' loading="lazy"></a></td>')
    else:
        picture = '<td class="qc">no picture</td>'
    flags = " ".join(f'<span class="flag" title="{esc(_flag_title(f, glossary, row.flag_messages))}">'
                     f"{esc(f)}</span>" for f in row.flags)
    reason = "".join([esc(row.reason), *(f'<div class="note">note: {esc(n)}</div>' for n in row.notes)])
    files = " ".join(f'<a href="{_href(path)}">{esc(text)}</a>' for text, path in row.files)
    cells = [f"<td>{esc(row.case)}</td>", picture,
             *(_num_cell(row.bmd_mg_cm3.get(n)) for n in LEVEL_COLUMNS),
             _num_cell(row.bmd_l1_l2_mg_cm3), _num_cell(row.mean_hu_l1_l2), f"<td>{esc(row.levels_used)}</td>",
             f'<td class="cat-{esc(row.category)}">{esc(row.category)}</td>',
             f'<td class="status-{esc(row.status)}">{esc(row.status)}</td>', f'<td class="flags">{flags}</td>',
             f'<td class="reason">{reason}</td>', f'<td class="files">{files}</td>']
    return f'<tr data-case="{esc(row.case)}">' + "".join(cells) + "</tr>"


def _short(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _render_run(run: Mapping) -> str:
    esc = html.escape
    calibration = run.get("calibration") or {}
    if isinstance(calibration, Mapping):
        calibration = ", ".join(f"{k} {_short(v)}" for k, v in calibration.items() if v is not None) or "none"
    items = [("started", run.get("started")), ("finished", run.get("finished")),
             ("bmdqct", run.get("bmdqct_version")), ("model", run.get("model_id")),
             ("calibration", calibration or "none"),
             ("counts", ", ".join(f"{k} {v}" for k, v in (run.get("counts") or {}).items()))]
    return ('<p class="run">Run: ' + "; ".join(f"{esc(k)} {esc(str(v))}" for k, v in items if v not in (None, ""))
            + "</p>")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em 0; }
.run, .hint { color: #555; font-size: .9em; margin: .2em 0; }
#filter { width: 28em; padding: .3em; margin: .5em 0; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .45em; vertical-align: top; }
th { background: #eee; position: sticky; top: 0; }
th[data-col] { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.qc img { width: 180px; display: block; }
.flag { display: inline-block; background: #fff3cd; border: 1px solid #e0c36a; border-radius: 3px;
        padding: 0 .3em; margin: .1em; cursor: help; }
.status-ok { color: #17692c; } .status-failed { color: #a40000; font-weight: bold; }
.status-no_measurement { color: #8a5a00; }
.cat-osteoporosis { background: #f8d7da; } .cat-osteopenia { background: #fff3cd; }
.cat-normal { background: #d4edda; }
.note { color: #555; font-style: italic; }
.reason { min-width: 14em; max-width: 28em; overflow-wrap: break-word; }
td.files a { display: block; white-space: nowrap; }
"""

_SCRIPT = """
(function () {
  var table = document.getElementById("cases");
  var body = table.tBodies[0];
  var filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  function key(row, col, type) {
    var cell = row.cells[col];
    var text = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    if (type === "num") { return text === "" ? null : parseFloat(text); }
    return text.trim().toLowerCase() || null;
  }
  function sortBy(th) {
    var col = parseInt(th.getAttribute("data-col"), 10), type = th.getAttribute("data-type");
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { if (heads[i].hasAttribute("data-col")) {
      heads[i].setAttribute("aria-sort", "none"); } }
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._index = i; });
    rows.sort(function (a, b) {
      var x = key(a, col, type), y = key(b, col, type);
      if (x === null && y === null) { return a._index - b._index; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      if (x < y) { return -dir; }
      if (x > y) { return dir; }
      return a._index - b._index;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  table.tHead.addEventListener("click", function (event) {
    var th = event.target.closest("th[data-col]");
    if (th) { sortBy(th); }
  });
  function applyFilter() {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var text = r.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.hidden = !keep;
      n += keep ? 1 : 0;
    });
    shown.textContent = n;
  }
  filter.addEventListener("input", applyFilter);
  applyFilter();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
{summary}
<p class="run">{n} cases: {counts}. Made by bmdqct {version} at {made}. Research software, not a medical
device.</p>
<input id="filter" type="search" placeholder="filter: words that every row shown must contain"
 aria-label="filter the cases">
<span class="hint"><span id="shown">{n}</span> shown; click a column header to sort; hover over a flag for
its meaning.</span>
<table id="cases">
<thead><tr>{header}</tr></thead>
<tbody>
{body}
</tbody>
</table>
<script>{script}</script>
</body>
</html>
"""
