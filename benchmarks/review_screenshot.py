"""Benchmark: the cohort review page (``bmdqct review``) opened in a headless browser, as a screenshot.

Writes ``OUT/review.html`` with :func:`bmdqct.review.write_review` and saves a
screenshot of it taken by headless Chromium (Debian package ``chromium``), so a
person can look at the page as a reviewer sees it. Prints the time of writing
the page and of the screenshot.

Without ``OUT`` it first makes a small cohort of synthetic low-dose chest CTs
(:func:`bmdqct.synthetic.synthesize_ldct`) measured with their ground-truth
level labels (no model, no network) and a phantom calibration of the same
synthetic scanner, one case broken on purpose, so every status appears.

Run from the project root::

    python benchmarks/review_screenshot.py [OUT] [--png review.png] [--cases 5] [--size 1500x1000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_cohort(out: Path, n_cases: int) -> Path:
    """Measure `n_cases` synthetic scans (and one broken file) into `out` as ``bmdqct measure`` does."""
    from bmdqct.batch import Case, run_cases
    from bmdqct.calibration import calibrate_phantom
    from bmdqct.cli._measure import _write_qc_picture
    from bmdqct.io import write_nifti
    from bmdqct.synthetic import synthesize_ldct, synthesize_phantom_scan

    inputs = out.parent / "inputs"
    phantom, phantom_truth = synthesize_phantom_scan("mindways-model3-ct", 7, kvp=120.0)
    calibration = calibrate_phantom(phantom, phantom_truth.certificate)
    cases = []
    for seed in range(n_cases):
        # densities spread over the three ACR categories; one scan stops above L1 (thoracic only)
        caudal = "T12" if seed == 3 else "L3"
        ct, truth = synthesize_ldct(seed, cranial="T9", caudal=caudal, shape=(160, 160), pixel_mm=2.2,
                                    slice_mm=2.0, kvp=120.0, density_mg_cm3=60.0 + 25.0 * seed)
        folder = inputs / f"subject_{seed:03d}"
        write_nifti(ct, folder / "ct.nii.gz")
        write_nifti(truth.levels, folder / "levels.nii.gz")
        cases.append(Case(f"subject_{seed:03d}", folder / "ct.nii.gz", folder / "levels.nii.gz"))
    broken = inputs / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    cases.append(Case("broken", broken, cases[0].labels))
    run_cases(cases, out, calibration=calibration, label_scheme="verse", picture=_write_qc_picture)
    return out


def screenshot(page: Path, png: Path, *, size: str = "1500x1000") -> Path:
    """Save a screenshot of `page` taken by headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: install it (Debian: apt-get install chromium)")
    width, height = size.lower().split("x")
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--window-size={int(width)},{int(height)}", f"--screenshot={png.resolve()}",
                          page.resolve().as_uri()], check=False, capture_output=True, text=True, timeout=120)
    if run.returncode != 0 or not png.exists():
        raise SystemExit(f"chromium failed ({run.returncode}): {run.stderr[-2000:]}")
    return png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", help="a 'bmdqct measure' output folder (default: a synthetic one)")
    parser.add_argument("--png", default="review.png", help="screenshot file (default review.png)")
    parser.add_argument("--cases", type=int, default=5, help="synthetic cases without OUT (default 5)")
    parser.add_argument("--size", default="1500x1000", help="browser window WIDTHxHEIGHT (default 1500x1000)")
    args = parser.parse_args(argv)

    from bmdqct.review import write_review

    tmp = None
    if args.output is None:
        tmp = tempfile.TemporaryDirectory()
        t0 = time.perf_counter()
        out = make_cohort(Path(tmp.name) / "out", args.cases)
        print(f"synthetic cohort of {args.cases + 1} cases measured in {time.perf_counter() - t0:.1f} s")
    else:
        out = Path(args.output)
    try:
        t0 = time.perf_counter()
        page = write_review(out)
        print(f"review page {page} ({page.stat().st_size / 1024:.1f} KiB) written in "
              f"{time.perf_counter() - t0:.3f} s")
        t0 = time.perf_counter()
        png = screenshot(page, Path(args.png), size=args.size)
        print(f"screenshot {png} taken in {time.perf_counter() - t0:.1f} s")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
