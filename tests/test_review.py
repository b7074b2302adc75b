"""The HTML cohort review (bmdqct.review, ``bmdqct review``) of a real ``bmdqct measure`` output folder.

The folder is made by ``bmdqct measure`` on synthetic spines with their truth labels (no model, no
network): trabecular HU 150 and 100 with the calibration BMD = 0.8 * HU - 2 give 118 mg/cm3
(osteopenia) and 78 mg/cm3 (osteoporosis) in every level, and a broken file gives a failed case.
"""

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from test_labeling import make_spine

from bmdqct.cli import main
from bmdqct.errors import InputError
from bmdqct.io import write_nifti
from bmdqct.qc import FLAG_GLOSSARY
from bmdqct.review import ReviewRow, render_review, review_rows, write_review


class _Page(HTMLParser):
    """Rows of the table body: per cell its text, attributes, links, images and flag titles."""

    def __init__(self):
        super().__init__()
        self.rows, self.headers, self.scripts, self.external = [], [], [], []
        self._cell = self._row = self._where = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])
        if tag in ("thead", "tbody", "script"):
            self._where = tag
        elif tag == "tr" and self._where == "tbody":
            self._row = {"attrs": attrs, "cells": []}
        elif tag in ("td", "th"):
            self._cell = {"text": "", "attrs": attrs, "links": [], "images": [], "titles": []}
        elif self._cell is not None:
            if tag == "a":
                self._cell["links"].append(attrs["href"])
            elif tag == "img":
                self._cell["images"].append(attrs["src"])
            elif tag == "span" and "flag" in attrs.get("class", ""):
                self._cell["titles"].append(attrs["title"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            if self._where == "thead":
                self.headers.append(self._cell)
            elif self._row is not None:
                self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ("thead", "tbody", "script"):
            self._where = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        elif self._where == "script":
            self.scripts.append(data)


def _parse(text):
    page = _Page()
    page.feed(text)
    return page


def _columns(page):
    return [h["text"] for h in page.headers]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A finished ``bmdqct measure`` output folder of three cases: osteopenia, osteoporosis, failed."""
    tmp = tmp_path_factory.mktemp("review")
    inputs = tmp / "inputs"
    scans, labels = [], []
    for name, hu in (("dense", 150.0), ("thin", 100.0)):
        ct, _, truth = make_spine(("T11", "T12", "L1", "L2"), spacing=(2.0, 1.5, 1.5), trabecular_hu=hu)
        scans.append(str(write_nifti(ct, inputs / f"{name}.nii.gz")))
        labels += ["--labels", str(write_nifti(truth, inputs / "labels" / f"{name}_levels.nii.gz"))]
    broken = inputs / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    scans.append(str(broken))
    labels += labels[-2:]
    cal = tmp / "cal.json"
    cal.write_text(json.dumps({"slope": 0.8, "intercept": -2.0}))
    out = tmp / "out"
    rc = main(["measure", *scans, "-o", str(out), *labels, "--label-scheme", "verse", "--calibration", str(cal),
               "--no-progress"])
    assert rc == 1   # the broken case failed, the others were measured
    return out


def test_review_has_one_row_per_case_with_the_measured_values(cohort, capsys):
    assert main(["review", str(cohort)]) == 0
    page_path = cohort / "review.html"
    assert f"review page: {page_path}" in capsys.readouterr().out
    page = _parse(page_path.read_text(encoding="utf-8"))
    columns = _columns(page)
    assert columns[:9] == ["case", "QC picture", "T12 BMD (mg/cm³)", "L1 BMD (mg/cm³)", "L2 BMD (mg/cm³)",
                           "L1–L2 BMD (mg/cm³)", "L1–L2 HU", "levels used", "category"]
    rows = {r["attrs"]["data-case"]: {c: cell for c, cell in zip(columns, r["cells"])} for r in page.rows}
    assert sorted(rows) == ["broken", "dense", "thin"] and len(page.rows) == 3
    # truth: 0.8 * 150 - 2 = 118 (osteopenia), 0.8 * 100 - 2 = 78 (osteoporosis), in every level
    for case, bmd, category in (("dense", "118.0", "osteopenia"), ("thin", "78.0", "osteoporosis")):
        row = rows[case]
        assert [row[f"{n} BMD (mg/cm³)"]["text"] for n in ("T12", "L1", "L2")] == [bmd] * 3
        assert row["L1–L2 BMD (mg/cm³)"]["text"] == bmd
        assert float(row["L1–L2 BMD (mg/cm³)"]["attrs"]["data-sort"]) == pytest.approx(float(bmd))
        assert row["L1–L2 HU"]["text"] == ("150.0" if case == "dense" else "100.0")
        assert (row["category"]["text"], row["status"]["text"], row["levels used"]["text"]) == (
            category, "ok", "L1+L2")
        assert row["QC picture"]["images"] == [f"{case}/qc.png"] == row["QC picture"]["links"]
        assert row["files"]["links"] == [f"{case}/result.json", f"{case}/qc.png", f"{case}/labels.nii.gz",
                                         f"{case}/voi.nii.gz"]
        result = json.loads((cohort / case / "result.json").read_text())
        assert result["bmd_l1_l2_mg_cm3"] == pytest.approx(float(bmd))
    failed = rows["broken"]
    assert failed["status"]["text"] == "failed" and failed["category"]["text"] == ""
    assert failed["L1–L2 BMD (mg/cm³)"]["text"] == "" and failed["QC picture"]["images"] == []
    assert failed["files"]["links"] == ["broken/error.json"]
    csv_error = (cohort / "results.csv").read_text().split("\nbroken,failed,", 1)[1].split(",")[0]
    assert csv_error and csv_error in failed["reason / notes"]["text"]
    # every link of the page exists, relative to the page; nothing is fetched from outside
    for row in page.rows:
        for cell in row["cells"]:
            for target in cell["links"] + cell["images"]:
                assert (cohort / target).is_file(), target
    assert page.external == [] and "<script src" not in page_path.read_text()


def test_flags_carry_the_glossary_text(tmp_path):
    """A run without calibration flags every case ``no_calibration``; the span's title is its glossary text."""
    ct, _, truth = make_spine(("T12", "L1", "L2"), spacing=(2.0, 1.5, 1.5))
    out = tmp_path / "out"
    assert main(["measure", str(write_nifti(ct, tmp_path / "hu_only.nii.gz")), "-o", str(out), "--labels",
                 str(write_nifti(truth, tmp_path / "hu_only_levels.nii.gz")), "--label-scheme", "verse",
                 "--no-progress", "--no-qc-picture"]) == 0
    page = _parse(write_review(out).read_text(encoding="utf-8"))
    (row,) = page.rows
    cells = dict(zip(_columns(page), row["cells"]))
    assert "no_calibration" in cells["flags"]["text"].split()
    meaning, action = FLAG_GLOSSARY["no_calibration"]
    (title,) = cells["flags"]["titles"]
    assert title.startswith(f"no_calibration: {meaning}. To do: {action}")
    assert cells["category"]["text"] == "" and cells["L1–L2 BMD (mg/cm³)"]["text"] == ""
    assert cells["L1–L2 HU"]["text"] == "150.0"          # HU only: the trabecular truth
    assert cells["QC picture"]["text"] == "no picture"


def test_text_is_escaped_and_links_are_quoted():
    row = ReviewRow(case='a&b "<script>alert(1)</script>', status="failed", reason="<img src=x onerror=1>",
                    category="", bmd_mg_cm3={"T12": None, "L1": None, "L2": None}, bmd_l1_l2_mg_cm3=None,
                    mean_hu_l1_l2=None, levels_used="", flags=("not_a_code:L1",), flag_messages={},
                    notes=("<b>note</b>",), files=(("error.json", 'a&b "<script>/error.json'),), thumbnail=None)
    text = render_review([row], title="<i>t</i>")
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>note" not in text
    assert "<i>t</i>" not in text and "<title>&lt;i&gt;t&lt;/i&gt;</title>" in text
    page = _parse(text)
    (parsed,) = page.rows
    assert parsed["attrs"]["data-case"] == row.case            # escaped in the source, exact when parsed
    assert parsed["cells"][0]["text"] == row.case
    assert parsed["cells"][-1]["links"] == ["a%26b%20%22%3Cscript%3E/error.json"]
    assert parsed["cells"][-3]["titles"] == ["not_a_code: unknown flag code ('bmdqct flags' lists the known codes)"]
    assert html.escape("<img src=x onerror=1>") in text


def test_review_reads_an_output_folder_of_result_format_2(tmp_path):
    """results.csv with the old ``L1_hu_mean`` columns and a format-2 result.json (``hu_l1_l2``)."""
    from bmdqct.schema import result_example

    (tmp_path / "example").mkdir()
    (tmp_path / "example" / "result.json").write_text(json.dumps(result_example("bmdqct-result/2")))
    (tmp_path / "results.csv").write_text("case,status,error,category,bmd_l1_l2_mg_cm3,levels_used,T12_hu_mean,"
                                          "T12_bmd_mg_cm3,L1_hu_mean,L1_bmd_mg_cm3,L2_hu_mean,L2_bmd_mg_cm3,flags\n"
                                          "example,ok,,,,L1,,,150.00,,,,no_calibration\n")
    (row,) = review_rows(tmp_path)
    assert row.mean_hu_l1_l2 == 150.0 and row.levels_used == "L1" and row.flags == ("no_calibration",)
    with pytest.warns(DeprecationWarning, match="ReviewRow.hu_l1_l2 is deprecated, use ReviewRow.mean_hu_l1_l2"):
        assert row.hu_l1_l2 == 150.0
    page = _parse(write_review(tmp_path).read_text(encoding="utf-8"))
    assert dict(zip(_columns(page), page.rows[0]["cells"]))["L1–L2 HU"]["text"] == "150.0"


def test_review_of_a_folder_without_results_csv_says_what_it_expected(tmp_path, capsys):
    assert main(["review", str(tmp_path)]) == 1
    assert "results.csv cannot be read" in capsys.readouterr().err
    with pytest.raises(InputError, match="is not a folder"):
        review_rows(tmp_path / "nope")
    (tmp_path / "results.csv").write_text("name,status\nx,ok\n")
    with pytest.raises(InputError, match="no 'case' column"):
        review_rows(tmp_path)
    assert not (tmp_path / "review.html").exists()


_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_PROBE = """<script>
(function () {
  function order() { return Array.prototype.map.call(document.querySelectorAll("#cases tbody tr"),
    function (r) { return (r.hidden ? "-" : "") + r.getAttribute("data-case"); }).join(","); }
  var th = document.querySelector('th[data-col="5"]');
  var log = [order()];
  th.click(); log.push(order() + "|" + th.getAttribute("aria-sort"));
  th.click(); log.push(order() + "|" + th.getAttribute("aria-sort"));
  var box = document.getElementById("filter");
  box.value = "OSTEOPOROSIS"; box.dispatchEvent(new Event("input"));
  log.push(order() + "|" + document.getElementById("shown").textContent);
  var out = document.createElement("pre"); out.id = "probe"; out.textContent = log.join("\\n");
  document.body.appendChild(out);
})();
</script>
</body>"""


@pytest.mark.skipif(_CHROMIUM is None, reason="chromium not installed (Debian package chromium)")
def test_sorting_and_filtering_in_a_headless_browser(cohort, tmp_path):
    """The page's own script sorts by a numeric column (empty cells last) and filters, in a real browser."""
    text = write_review(cohort).read_text(encoding="utf-8")
    probe = cohort / "review_probe.html"          # beside the page, so its relative links resolve the same
    probe.write_text(text.replace("</body>", _PROBE), encoding="utf-8")
    try:
        run = subprocess.run([_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              probe.as_uri()], check=False, capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    dom = _Page()
    dom.feed(run.stdout)
    log = run.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0].splitlines()
    # results.csv order, then L1-L2 BMD ascending (78 < 118, failed last), descending (failed still last),
    # then only the osteoporosis row shown
    assert log == ["broken,dense,thin", "thin,dense,broken|ascending", "dense,thin,broken|descending",
                   "-dense,thin,-broken|1"]
