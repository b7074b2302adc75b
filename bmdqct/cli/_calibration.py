"""``bmdqct`` subcommands of the calibration topic (see :mod:`bmdqct.cli`).

* ``bmdqct calibrate PHANTOM_SCAN --phantom NAME --certificate CERT.json [--store DIR] [-o CAL.json]``
* ``bmdqct certificate-template NAME [-o CERT.json]``: the certificate format, with example values
* ``bmdqct calibration-history --store DIR [--plot PNG] [--csv CSV]``
* ``bmdqct calibration-select SCAN --store DIR [--window-days N] [--fallback RULE] [--mineral M]``
* ``bmdqct calibrate-paired MEASURED.csv REFERENCE.csv -o CAL.json [--level pooled]``
"""

from __future__ import annotations

import argparse

# Light (numpy only; scipy, pandas and statsmodels load inside the functions that use them).
from ..calibration import ASSIGNMENTS, DRIFT_TOLERANCE_MG_CM3, MINERALS, PHANTOMS


def register(commands, common) -> None:
    """Add this topic's subcommands to `commands` (an argparse subparsers action)."""
    scanner = argparse.ArgumentParser(add_help=False)
    group = scanner.add_argument_group("scanner metadata (override or complete what the scan says)")
    group.add_argument("--kvp", type=float, help="tube voltage, kV")
    group.add_argument("--date", help="acquisition date YYYY-MM-DD")
    group.add_argument("--manufacturer")
    group.add_argument("--model")
    group.add_argument("--device-serial")
    group.add_argument("--station")
    group.add_argument("--kernel")

    cal = commands.add_parser(
        "calibrate", parents=[common, scanner], help="calibrate HU -> BMD from a phantom scan",
        description="Find the rods of a phantom scan, fit the certificate values and write the "
                    "calibration (to a store for asynchronous calibration, and/or a JSON file).")
    cal.add_argument("scan", metavar="PHANTOM_SCAN", help="DICOM folder/file, NIfTI, MHA or NRRD")
    cal.add_argument("--phantom", required=True, choices=tuple(PHANTOMS), help="phantom model")
    cal.add_argument("--certificate", required=True, metavar="CERT.json",
                     help="the phantom's certified rod values (JSON)")
    cal.add_argument("--store", metavar="DIR", help="calibration store to add the result to")
    cal.add_argument("-o", "--output", metavar="CAL.json", help="also write the calibration here")
    cal.add_argument("--assignment", choices=ASSIGNMENTS, default=ASSIGNMENTS[0],
                     help="how found rods are matched to certificate entries (default: hu-rank)")
    cal.add_argument("--series-uid", help="DICOM series to read when the folder holds several")
    cal.add_argument("--slices", nargs=2, type=int, metavar=("FIRST", "LAST"),
                     help="axial slices to sample (default: automatic)")
    cal.add_argument("--plot", metavar="PNG", help="save the rod ROIs and the fit as a picture")
    cal.set_defaults(func=_run_calibrate)

    template = commands.add_parser(
        "certificate-template", parents=[common], help="print a phantom certificate template (JSON)",
        description="Print, as JSON, the certificate layout 'bmdqct calibrate --certificate' reads, filled with "
                    "EXAMPLE values for the phantom model: replace serial and the rod densities by those "
                    "printed on your phantom's certificate. Fields: phantom (model), serial, mineral "
                    "(K2HPO4 or HA), and rods: one entry per rod with label and density_mg_cm3 (Mindways "
                    "also water_mg_cm3).")
    template.add_argument("phantom", choices=tuple(PHANTOMS), help="phantom model")
    template.add_argument("-o", "--output", metavar="CERT.json", help="write it to this file instead of stdout")
    template.set_defaults(func=_run_template)

    hist = commands.add_parser(
        "calibration-history", parents=[common], help="slope/intercept over time per scanner and kVp",
        description="Print every calibration of a store per scanner/kVp over time, flag jumps beyond a "
                    "tolerance and save a trend plot.")
    hist.add_argument("--store", required=True, metavar="DIR")
    hist.add_argument("--plot", metavar="PNG", default=None,
                      help="also write a trend plot to this PNG file (default: no picture)")
    hist.add_argument("--csv", metavar="CSV", help="also write the table as CSV")
    hist.add_argument("--tolerance-mg-cm3", type=float, default=DRIFT_TOLERANCE_MG_CM3,
                      help="flag a change of calibrated BMD larger than this (default %(default)s)")
    hist.set_defaults(func=_run_history)

    sel = commands.add_parser(
        "calibration-select", parents=[common], help="show which stored calibration a scan would use",
        description="Pick the calibration of the same scanner and kVp acquired closest before the scan.")
    sel.add_argument("scan", metavar="SCAN")
    sel.add_argument("--store", required=True, metavar="DIR")
    sel.add_argument("--window-days", type=int, default=60)
    sel.add_argument("--fallback", help="nearest-after, nearest, latest-before, or a calibration JSON")
    sel.add_argument("--mineral", choices=MINERALS,
                     help="consider only calibrations of this mineral reference (default: any)")
    sel.add_argument("--series-uid")
    sel.set_defaults(func=_run_select)

    paired = commands.add_parser(
        "calibrate-paired", parents=[common, scanner],
        help="fit HU -> reference-QCT BMD from paired data (Pan et al. 2020)",
        description="OLS of reference BMD on measured trabecular HU, per level and pooled; writes the "
                    "chosen fit as a calibration.")
    paired.add_argument("measured", metavar="MEASURED.csv", help="bmdqct measure results (case, L1_mean_hu, ...)")
    paired.add_argument("reference", metavar="REFERENCE.csv", help="reference BMD (case, L1_bmd_mg_cm3, ...)")
    paired.add_argument("-o", "--output", metavar="CAL.json", help="write the chosen fit as a calibration")
    paired.add_argument("--level", default="pooled", help="fit to write: pooled (default), T12, L1, L2, ...")
    paired.add_argument("--levels", nargs="+", default=["T12", "L1", "L2"])
    paired.add_argument("--on", default="case", help="column joining the two tables (default: case)")
    paired.add_argument("--mineral", default=MINERALS[0], choices=MINERALS)
    paired.set_defaults(func=_run_paired)


def _overrides(args) -> dict:
    names = {"kvp": "kvp", "date": "acquisition_date", "manufacturer": "manufacturer", "model": "model",
             "device_serial": "device_serial", "station": "station", "kernel": "kernel"}
    return {key: getattr(args, attr) for attr, key in names.items() if getattr(args, attr, None) is not None}


def _run_calibrate(args) -> int:
    from pathlib import Path

    from ..calibration import add_to_store, calibrate_phantom, read_certificate
    from ..io import load_ct

    cert = read_certificate(args.certificate)
    volume = load_ct(args.scan, series_uid=args.series_uid)  # read once: the fit and the plot use it
    cal = calibrate_phantom(volume, cert, phantom=args.phantom, assignment=args.assignment,
                            slices=args.slices, metadata=_overrides(args))
    print(f"phantom {cal.phantom_model}, serial {cal.phantom_serial}; fit {cal.details['fit']}")
    print(f"{'rod':>4} {'certified':>10} {'water':>8} {'HU mean':>9} {'HU SD':>7} {'voxels':>7} {'residual':>9}")
    rois = {r["label"]: r for r in cal.details["rod_rois"]}
    for rod in cal.details["rods"]:
        roi = rois[rod["label"]]
        water = f"{rod['water_mg_cm3']:8.2f}" if "water_mg_cm3" in rod else f"{'-':>8}"
        print(f"{rod['label']:>4} {rod['density_mg_cm3']:10.2f} {water} {rod['mean_hu']:9.2f} {roi['sd_hu']:7.2f} "
              f"{roi['n_voxels']:7d} {cal.residuals_mg_cm3[rod['label']]:+9.2f}")
    print(cal.describe())
    if args.output:
        print(f"wrote {cal.to_json(args.output)}")
    if args.store:
        print(f"added to store: {add_to_store(cal, args.store)}")
    if args.plot:
        from matplotlib.figure import Figure

        from ..plotting.calibration import plot_phantom_fit, plot_rod_rois

        fig = Figure(figsize=(12, 5.5), layout="constrained")
        left, right = fig.subplots(1, 2)
        plot_rod_rois(volume, cal, ax=left)
        plot_phantom_fit(cal, ax=right)
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


def _run_template(args) -> int:
    import json

    from ..synthetic import example_certificate

    certificate = example_certificate(args.phantom)
    if args.output:
        print(f"wrote {certificate.to_json(args.output)} (EXAMPLE values: put in your certificate's)")
    else:
        print(json.dumps(certificate.to_dict(), indent=2))
    return 0


def _run_history(args) -> int:
    from ..calibration import calibration_history, read_store
    from ..errors import CalibrationError

    if not read_store(args.store):
        raise CalibrationError(f"calibration store {args.store} holds no calibrations (or does not exist)")
    table = calibration_history(args.store, tolerance_mg_cm3=args.tolerance_mg_cm3)
    bmd_columns = [c for c in table.columns if c.startswith("bmd_at_")]
    for group, rows in table.groupby("group", sort=True):
        print(f"{group}:")
        print(f"  {'date':<10} {'slope':>9} {'intercept':>10} " + " ".join(f"{c[7:]:>13}" for c in bmd_columns)
              + f" {'change':>7}  phantom  id")
        for row in rows.itertuples(index=False):
            values = row._asdict()
            bmd = " ".join(f"{values[c]:13.2f}" for c in bmd_columns)
            change = "" if values["change_mg_cm3"] != values["change_mg_cm3"] else f"{values['change_mg_cm3']:.2f}"
            flag = "  DRIFT" if values["drift"] else ""
            print(f"  {values['acquisition_date']:<10} {values['slope']:9.5f} {values['intercept']:10.3f} {bmd} "
                  f"{change:>7}  {values['phantom_serial'] or '-'}  {values['id']}{flag}")
    flagged = int(table["drift"].sum())
    print(f"{flagged} calibration(s) changed BMD by more than {args.tolerance_mg_cm3:g} mg/cm3 from the previous one"
          + (" (DRIFT: check the scanner and the phantom scan)" if flagged else ""))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        from pathlib import Path

        from ..plotting.calibration import plot_calibration_history

        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_calibration_history(table).savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


def _run_select(args) -> int:
    from ..calibration import select_calibration
    from ..io import load_ct

    volume = load_ct(args.scan, series_uid=args.series_uid)
    cal = select_calibration(args.store, volume.metadata, window_days=args.window_days, fallback=args.fallback,
                             mineral=args.mineral)
    print(cal.describe())
    selection = dict(cal.selection)
    print(f"selected by {selection['rule']}: calibration of {selection['calibration_date']} for the scan of "
          f"{selection['scan_date']} ({selection['age_days']} days), file {selection['file']}")
    return 0


def _run_paired(args) -> int:
    from ..calibration import fit_paired_table
    from ..errors import CalibrationError

    metadata = _overrides(args)
    fits = fit_paired_table(args.measured, args.reference, levels=args.levels, on=args.on, mineral=args.mineral,
                            metadata=metadata)
    print(f"{'level':<7} {'n':>4} {'slope':>9} {'95% CI':>20} {'intercept':>10} {'95% CI':>20} "
          f"{'resid SD':>9} {'r':>6}")
    for level, fit in fits.items():
        print(f"{level:<7} {fit.n:4d} {fit.slope:9.5f} [{fit.slope_ci[0]:8.5f}, {fit.slope_ci[1]:8.5f}] "
              f"{fit.intercept:10.3f} [{fit.intercept_ci[0]:8.3f}, {fit.intercept_ci[1]:8.3f}] "
              f"{fit.residual_sd_mg_cm3:9.3f} {fit.r:6.3f}")
    if args.output:
        if args.level not in fits:
            raise CalibrationError(f"no fit for level {args.level!r}; fitted: {sorted(fits)}")
        cal = fits[args.level].calibration
        print(f"wrote {cal.to_json(args.output)} ({args.level}: {cal.describe()})")
    return 0
