"""Time and peak memory of vertebral-body segmentation on a 512 x 512 x 350 chest CT.

Run:  python benchmarks/bench_segment.py [--slices 350] [--model PATH]

Prints the wall time of each stage (resampling + crop, network, mapping back)
and of the whole call, and the process's peak resident memory. The first call
of a TensorFlow model includes graph tracing, so the script times a second call
as well and reports both.
"""

from __future__ import annotations

import argparse
import resource
import time


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=350)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=50001)
    args = parser.parse_args(argv)

    from bmdqct.synthetic import synthesize_ldct

    slice_mm = 1.0
    ct, _ = synthesize_ldct(args.seed, shape=(512, 512), pixel_mm=0.75, slice_mm=slice_mm,
                            cranial="C7", caudal="L3", n_slices=args.slices)
    print(f"CT {ct}  ({ct.hu.nbytes / 1e9:.2f} GB as float32)")
    rss_before = _peak_rss_gb()

    from bmdqct.segment import load_model, segment_spine
    from bmdqct.segment.grid import classes_on_source_grid, footprint, prepare
    from bmdqct.segment.inference import predict_patches

    model = load_model(args.model)
    for attempt in ("first call", "second call"):
        t0 = time.perf_counter()
        segment_spine(ct, model)
        print(f"segment_spine, {attempt}: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    prepared = prepare(ct, model.preset)
    t1 = time.perf_counter()
    probs = predict_patches(model, prepared.image)
    t2 = time.perf_counter()
    classes_on_source_grid(probs, prepared, box=footprint(prepared))
    t3 = time.perf_counter()
    print(f"stages: resample+crop {t1 - t0:.1f} s, network {t2 - t1:.1f} s "
          f"({prepared.image.shape[0]} model slices), map back {t3 - t2:.1f} s")
    print(f"peak resident memory: {_peak_rss_gb():.2f} GB "
          f"(of which {rss_before:.2f} GB before segmentation: the CT and its generator)")


if __name__ == "__main__":
    main()
