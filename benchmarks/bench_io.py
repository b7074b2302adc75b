"""Benchmark: reading the LIDC-IDRI-0314 chest series (275 slices), and resampling.

Prints, side by side in one run:

* time and peak memory of ``bmdqct.io.load_ct`` and of SimpleITK's own
  ``ImageSeriesReader`` (``GetGDCMSeriesFileNames`` + ``Execute`` +
  ``GetArrayFromImage``) on the same folder. Each measurement runs in a fresh
  subprocess, so peak memory (``ru_maxrss`` growth over the process after its
  imports) is not polluted by the other reader; the files are read once first so
  both readers see a warm OS cache. Reported: median and best of ``--repeat`` runs.
* time of resampling a 512x512x300 float32 volume with SimpleITK (what
  ``bmdqct.preprocess`` uses) and with ``scipy.ndimage.affine_transform``, linear and
  nearest, to 1 mm and by a 10 degree rotation (``--no-resample`` skips it).

Target (issue 2): load_ct within 1.5x the SimpleITK series reader time.

Run from the project root::

    python benchmarks/bench_io.py [--repeat 5] [--folder PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_FOLDER = (Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
                  / "lidc_0314_chest" / "dicom")


def _child(method: str, folder: str) -> None:
    """Run one read in this (fresh) process; print seconds and peak memory as JSON."""
    import resource

    import numpy as np  # noqa: F401  (import cost outside the timing)
    import SimpleITK as sitk

    import bmdqct.io as bio

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if method == "bmdqct":
        volume = bio.load_ct(folder)
        shape = volume.shape
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
        array = sitk.GetArrayFromImage(reader.Execute())
        shape = array.shape
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024, "shape": shape}))


def _measure(method: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, "--folder", str(folder)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_read(folder: Path, repeat: int) -> None:
    for path in folder.rglob("*"):  # warm the OS file cache for both readers
        if path.is_file():
            path.read_bytes()
    results: dict[str, list[dict]] = {"sitk": [], "bmdqct": []}
    for _ in range(repeat):  # alternate, so drifting machine load hits both alike
        for method in results:
            results[method].append(_measure(method, folder))
    print(f"Reading {folder} ({results['bmdqct'][0]['shape']} voxels), {repeat} runs each, "
          "fresh process per run")
    print(f"{'reader':<38}{'median s':>10}{'best s':>10}{'peak MiB':>10}")
    rows = (("sitk", "SimpleITK ImageSeriesReader (+array)"), ("bmdqct", "bmdqct.io.load_ct"))
    medians = {}
    for key, label in rows:
        seconds = [r["seconds"] for r in results[key]]
        peak = max(r["peak_mib"] for r in results[key])
        medians[key] = statistics.median(seconds)
        print(f"{label:<38}{medians[key]:>10.3f}{min(seconds):>10.3f}{peak:>10.0f}")
    print(f"ratio load_ct / SimpleITK (median): {medians['bmdqct'] / medians['sitk']:.2f} "
          "(target <= 1.5)")


def bench_resample() -> None:
    import numpy as np
    from scipy import ndimage

    from bmdqct.preprocess import resample_like
    from bmdqct.volume import CTVolume, LabelVolume

    rng = np.random.default_rng(0)
    hu = rng.normal(0.0, 100.0, (300, 512, 512)).astype(np.float32)
    source = CTVolume.from_spacing(hu, spacing=(1.25, 0.7, 0.7))
    labels = LabelVolume(hu > 100, source.affine)
    iso = CTVolume.from_spacing(np.zeros((1, 1, 1)), spacing=(1.0, 1.0, 1.0))
    iso_shape = (375, 358, 358)
    t = np.radians(10)
    rotated = np.array(source.affine)
    rotated[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0],
                                [0, 0, 1]]) @ rotated[:3, :3]
    targets = {"to 1 mm iso": (iso.affine, iso_shape), "10 deg rotation": (rotated, hu.shape)}
    print(f"\nResampling a {hu.shape} float32 volume (seconds, one run each)")
    print(f"{'target':<18}{'order':<9}{'SimpleITK':>10}{'scipy':>10}")
    for name, (affine, shape) in targets.items():
        like = CTVolume.from_spacing(np.zeros((1, 1, 1)), spacing=(1, 1, 1))
        like = type(like)(np.broadcast_to(np.float32(0), shape), affine)
        mapping = np.linalg.inv(source.affine) @ affine
        for order, volume in ((1, source), (0, labels)):
            start = time.perf_counter()
            resample_like(volume, like, order=order)
            t_sitk = time.perf_counter() - start
            array = volume.hu if order else volume.labels
            start = time.perf_counter()
            ndimage.affine_transform(array, mapping[:3, :3], mapping[:3, 3], output_shape=shape,
                                     order=order, cval=-1000.0 if order else 0, prefilter=False)
            t_scipy = time.perf_counter() - start
            kind = "linear" if order else "nearest"
            print(f"{name:<18}{kind:<9}{t_sitk:>10.2f}{t_scipy:>10.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-resample", action="store_true")
    parser.add_argument("--child", choices=("bmdqct", "sitk"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, str(args.folder))
        return 0
    bench_read(args.folder, args.repeat)
    if not args.no_resample:
        bench_resample()
    return 0


if __name__ == "__main__":
    sys.exit(main())
