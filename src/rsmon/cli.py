"""The ``rsmon`` command: argument parsing, progress and one-line errors only (no science here).

An :class:`~rsmon.errors.RsmonError` (or a usage error) prints one line on stderr and exits 2;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Sequence

from rsmon import __version__
from rsmon.errors import InputError, RsmonError
from rsmon.workflow import cli as workflow_cli

log = logging.getLogger("rsmon")


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError instead of printing usage, so every error is one line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Values such as ``--bbox -60,-50,-50,-40`` start with a minus sign; treat anything that
        # starts like a negative number as a value, not an option (Python 3.13's rule).
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):  # noqa: D401 - argparse API
        raise InputError(f"{self.prog}: {message}")


def _cmd_l3(args: argparse.Namespace) -> int:
    from rsmon.grid import LonLatGrid
    from rsmon.products.no2 import NO2Params
    from rsmon.workflow.l3 import run_l3

    grid = LonLatGrid.from_bbox(args.bbox, args.res)
    units = "1e15 molec cm-2" if args.units == "molec" else "mol m-2"
    params = NO2Params(qa_min=args.qa, period=args.period, day_boundary=args.day_boundary, units=units,
                       weighting=args.weighting)
    # progress only on a terminal, so that a failing run's stderr is its one error line
    say = None if args.quiet or not sys.stderr.isatty() else (lambda msg: print(msg, file=sys.stderr))
    catalog = None if args.no_catalog else (args.catalog or str(Path(args.output) / "catalogs"))
    result = run_l3(args.inputs, grid, args.output, params, product=args.product, fmt=args.format,
                    catalog_dir=catalog, workers=args.workers, checksums=not args.no_checksums,
                    progress=say)
    for path in result.outputs:
        print(path)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from rsmon.io.info import describe

    for i, path in enumerate(args.files):
        if i:
            print()
        print(describe(path))
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    if args.sensor == "s5p":
        from rsmon.sim.s5p import main as sim_main
    elif args.sensor == "viirs":
        from rsmon.sim.viirs import main as sim_main
    elif args.sensor == "s2":
        from rsmon.sim.s2 import main as sim_main
    else:  # pragma: no cover - argparse restricts choices
        raise InputError(f"sim: unknown sensor {args.sensor!r}")
    return sim_main(args.rest)


def _cmd_validate(args: argparse.Namespace) -> int:
    if args.kind == "change":
        return _cmd_validate_change(args)
    if args.reference is not None:
        raise InputError(f"validate --kind {args.kind}: --reference applies to --kind change; use --stations")
    if args.patches is not None:
        raise InputError(f"validate --kind {args.kind}: --patches applies to --kind change")
    for opt, value in (("--stations", args.stations), ("--out", args.out)):
        if value is None:
            raise InputError(f"validate --kind {args.kind}: {opt} is required")
    if args.kind == "fire":
        return _cmd_validate_fire(args)
    from rsmon.workflow.validate import run_validation

    command = "rsmon " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("rsmon") else ""
    result = run_validation(
        args.kind, args.product, args.stations, args.out, sites=args.sites, radius_km=args.radius_km,
        window_min=args.window_min, overpass=args.overpass, max_distance_km=args.max_distance_km,
        qa_min=args.qa, stamp=args.stamp, title=args.title, command=command or None, ee=_parse_ee(args.ee),
    )
    st = result.stats.to_dict()
    summary = ", ".join(f"{k}={st[k]:.3g}" for k in ("r", "rmse", "mb", "within_ee") if st.get(k) is not None)
    print(f"n={st['n']}" + (f", {summary}" if summary else ""))
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


def _reject_station_options(args: argparse.Namespace, what: str, names: Sequence[str]) -> None:
    """InputError naming the station-collocation options given to a kind they do not apply to."""
    unused = ["--" + name.replace("_", "-") for name in names if getattr(args, name) is not None]
    if unused:
        raise InputError(f"validate --kind {args.kind}: {', '.join(unused)} do(es) not apply to {what}")


def _cmd_validate_fire(args: argparse.Namespace) -> int:
    from rsmon.workflow.fire import run_fire_validation

    _reject_station_options(args, "fire points", ("sites", "radius_km", "overpass", "qa", "stamp", "ee"))
    window = 20.0 if args.window_min is None else args.window_min
    result = run_fire_validation(args.product, args.stations, args.out, max_distance_m=args.max_distance_m,
                                 max_dt_min=window)
    print(result.summary())
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_validate_change(args: argparse.Namespace) -> int:
    from rsmon.workflow.redline import run_change_validation

    _reject_station_options(args, "change maps", ("stations", "sites", "radius_km", "window_min", "overpass", "qa",
                                                  "stamp", "ee"))
    if args.reference is None:
        raise InputError("validate --kind change: --reference MASK is required")
    result = run_change_validation(args.product, args.reference, args.out, patches=args.patches)
    print(result.summary())
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_redline_detect(args: argparse.Namespace) -> int:
    if _console:  # a one-off process: no cyclic collections from here (imports included) to its end
        import gc  # (rsmon.workflow.redline._gc_paused says why; called in-process, the run pauses them itself)

        gc.disable()
    from rsmon.workflow.allocator import tune_allocator
    from rsmon.workflow.redline import run_redline_detect

    global _fast_exit
    tune_allocator()  # a one-off process: keep freed block memory instead of faulting it in again
    result = run_redline_detect(args.before, args.after, args.output, redlines=args.redlines, mmu_px=args.mmu_px,
                                previous=args.previous, quicklooks=not args.no_quicklooks,
                                max_quicklooks=args.max_quicklooks, checksums=not args.no_checksums,
                                stream=args.stream, whole_scene=args.whole_scene, margin_m=args.redline_margin_m,
                                landcover=args.landcover, screen=_screen_params(args),
                                season_zones=args.season_zones, coregister=not args.no_coregister)
    print(result.summary())
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    _fast_exit = True  # everything is published and closed
    return 0


def _screen_params(args: argparse.Namespace):
    """The crop-cycle screen's parameters from ``--cropland-codes``, ``--crop-cycle-days``,
    ``--growing-season`` and ``--no-barren-parts`` (None: defaults)."""
    if args.landcover is None:
        given = [name for name, value in (("--cropland-codes", args.cropland_codes),
                                          ("--crop-cycle-days", args.crop_cycle_days),
                                          ("--growing-season", args.growing_season),
                                          ("--no-barren-parts", args.no_barren_parts or None)) if value is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only with --landcover")
        return None
    from rsmon.products.change_screen import ScreenParams

    values = {}
    if args.cropland_codes is not None:
        try:
            values["cropland_codes"] = tuple(int(c) for c in args.cropland_codes.split(",") if c.strip())
        except ValueError:
            raise InputError(f"--cropland-codes: expected whole codes separated by commas, got {args.cropland_codes!r}") from None
    if args.crop_cycle_days is not None:
        values["crop_cycle_days"] = args.crop_cycle_days
    if args.growing_season is not None:
        values["growing_season"] = args.growing_season
    if args.no_barren_parts:
        values["keep_barren_parts"] = False
    return ScreenParams(**values)


def _cmd_redline_merge(args: argparse.Namespace) -> int:
    from rsmon.workflow.redline_tiles import merge_run_folders
    from rsmon.workflow.staging import precheck_output_dir

    out = precheck_output_dir(args.output)
    summary = merge_run_folders([Path(f) for f in args.runs], out)
    print(f"{summary['n_patches']} change patch(es) from {len(summary['tiles'])} run(s), "
          f"{summary['duplicates_dropped']} seen again by an overlapping tile dropped")
    for name in ("patches.gpkg", "patches.geojson", "summary.json"):
        print(f"{name}: {out / name}")
    return 0


def _cmd_fire_detect(args: argparse.Namespace) -> int:
    from rsmon.workflow.fire import run_fire_detection

    result = run_fire_detection(args.inputs, args.output, geo_paths=args.geo, landcover=args.landcover,
                                admin=args.admin, admin_level_name=args.admin_level_name, history=args.history,
                                map_png=not args.no_map)
    print(result.summary())
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from rsmon.alerts import cli as alerts_cli
    from rsmon.alerts.web import ServiceSettings

    settings = ServiceSettings(rate_limit=args.rate_limit, burst=args.burst, max_body_bytes=args.max_body_kb * 1024,
                               cors_origins=args.cors_origin or [], webhooks=not args.no_webhooks, gzip=args.gzip)
    alerts_cli.serve(alerts_cli.store_url(args.store), host=args.host, port=args.port, workers=args.workers,
                     settings=settings, log_level=args.log_level, forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def _cmd_alerts_import(args: argparse.Namespace) -> int:
    from rsmon.alerts import cli as alerts_cli

    for report in alerts_cli.import_files(alerts_cli.store_url(args.store), args.files, actor=args.actor):
        print(report.summary())
    return 0


def _cmd_alerts_export(args: argparse.Namespace) -> int:
    from rsmon.alerts import cli as alerts_cli

    n = alerts_cli.export(alerts_cli.store_url(args.store), args.format, args.output, redlines=args.redlines,
                          statuses=args.status)
    if args.output not in (None, "-"):
        print(f"{n} alert(s): {args.output}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from rsmon.alerts import cli as alerts_cli

    url = alerts_cli.store_url(args.store)
    if args.keys_command == "create":
        token, info = alerts_cli.create_key(url, args.scope, redlines=args.redlines, name=args.name)
        print(alerts_cli.describe_key(info))
        print("The key follows; it is shown only this once (the store keeps only its hash):")
        print(token)
    elif args.keys_command == "revoke":
        print(alerts_cli.describe_key(alerts_cli.revoke_key(url, args.key_id)))
    else:
        for info in alerts_cli.list_keys(url):
            print(alerts_cli.describe_key(info))
    return 0


def _parse_ee(text: str | None):
    if text is None:
        return "default"
    if text.lower() == "none":
        return None
    parts = text.split(",")
    try:
        a, b = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--ee: expected A,B (envelope +-(A + B x ground)) or none, got {text!r}") from None
    return (a, b)


def _cmd_demo(args: argparse.Namespace) -> int:
    from rsmon.workflow.demo import run_demo

    run_demo(args.out, seed=args.seed, say=print)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rsmon", description="Satellite environmental-monitoring products.")
    p.add_argument("--version", action="version", version=f"rsmon {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    l3 = sub.add_parser("l3", help="grid L2 swaths to L3 GeoTIFF/NetCDF (HARP bin_spatial semantics)")
    l3.add_argument("--product", default="no2", help="product (no2)")
    l3.add_argument("--bbox", required=True, help="W,S,E,N in degrees; cell edges start exactly at W and S")
    l3.add_argument("--res", required=True, type=_number("--res"), help="cell size in degrees")
    l3.add_argument("--qa", type=_number("--qa"), default=0.75, help="keep pixels with qa_value > QA (default 0.75)")
    l3.add_argument("--period", default="day", help="orbit | day | month (default day)")
    l3.add_argument("--day-boundary", default="utc", help="utc | solar: which day a pixel belongs to")
    l3.add_argument("--units", default="mol", choices=["mol", "molec"],
                    help="mol = mol m-2 (default), molec = 1e15 molecules cm-2")
    l3.add_argument("--weighting", default="area", help="area (HARP) | inverse_variance")
    l3.add_argument("--format", default="tif", help="tif (COG) | nc (CF-NetCDF)")
    l3.add_argument("--catalog", default=None,
                    help="STAC catalog folder to add items to (default: OUTDIR/catalogs)")
    l3.add_argument("--no-catalog", action="store_true", help="write no STAC items")
    l3.add_argument("--workers", type=int, default=None, help="parallel files (default: cores, max 2)")
    l3.add_argument("--no-checksums", action="store_true", help="skip SHA-256 of inputs in provenance")
    l3.add_argument("-q", "--quiet", action="store_true")
    l3.add_argument("-o", "--output", required=True, help="output folder")
    l3.add_argument("inputs", nargs="+", metavar="INPUT", help="L2 files or folders of them")
    l3.set_defaults(func=_cmd_l3)

    info = sub.add_parser("info", help="say what a file is (product, orbit, time range, footprint, variables)")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.set_defaults(func=_cmd_info)

    sim = sub.add_parser("sim", help="write simulated files in the real layouts (rsmon sim s5p|viirs|s2 --help)")
    sim.add_argument("sensor", choices=["s5p", "viirs", "s2"])
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=_cmd_sim)

    val = sub.add_parser("validate", help="collocate products with ground stations: matchups, statistics, report")
    val.add_argument("--kind", required=True, help="aod | no2 | xch4 | fire | change")
    val.add_argument("--product", nargs="+", required=True, metavar="PATH",
                     help="L2 swaths, L3 GeoTIFF/NetCDF grids or area-average series (Giovanni CSV); change: "
                          "change.tif raster(s)")
    val.add_argument("--stations", nargs="+", default=None, metavar="PATH",
                     help="station files (CNEMC, AERONET, TCCON, PRSA, mapped CSV); fire: reference points")
    val.add_argument("--reference", nargs="+", default=None, metavar="MASK",
                     help="change: reference mask (OSCD cm.tif 1/2, a 0/255 picture such as OSCD's cm.png, a "
                          "0/1/255 raster, or change.bmp + unchanged.bmp); without a CRS it must be on the "
                          "product's grid, with one it may be on any grid and be scored against several "
                          "change.tif (--product, e.g. one per tile)")
    val.add_argument("--patches", default=None, metavar="GPKG",
                     help="change: score these patches (patches.gpkg, after the redline clip, the minimum mapping "
                          "unit and the crop-cycle screen) within the --product rasters' data, not the rasters' change")
    val.add_argument("--sites", default=None, metavar="SITELIST", help="site list for station files without coordinates")
    val.add_argument("--radius-km", type=_number("--radius-km"), default=None,
                     help="mean of pixels/cells within R km (default: the one containing the station)")
    val.add_argument("--window-min", type=_number("--window-min"), default=None,
                     help="half-width of the time window around the overpass, minutes (default 30; "
                          "fire: largest |dt| of a match, default 20)")
    val.add_argument("--overpass", default=None, metavar="HH:MM",
                     help="nominal local solar overpass time for daily products")
    val.add_argument("--max-distance-km", type=_number("--max-distance-km"), default=50.0,
                     help="for area-average series: keep stations within this distance of the box (default 50)")
    val.add_argument("--qa", type=_number("--qa"), default=None, help="QA threshold for L2 swaths (default per kind)")
    val.add_argument("--stamp", default=None, help="start | center | end: where a series time stamp lies in its window")
    val.add_argument("--ee", default=None, metavar="A,B",
                     help="expected-error envelope +-(A + B x ground) (default per kind: AOD Dark Target land "
                          "0.05,0.15); 'none' for no envelope")
    val.add_argument("--max-distance-m", type=_number("--max-distance-m"), default=375.0,
                     help="fire: largest detection-reference distance of a match, m (default 375)")
    val.add_argument("--title", default=None)
    val.add_argument("--out", default=None, metavar="DIR", help="report folder (required except for change)")
    val.set_defaults(func=_cmd_validate)

    fire = sub.add_parser("fire", help="VIIRS active fires (rsmon fire detect --help)")
    fire_sub = fire.add_subparsers(dest="fire_command", required=True, parser_class=_Parser)
    fdet = fire_sub.add_parser("detect", help="detect fires in VIIRS L1B I-band granules (02IMG + 03IMG)")
    fdet.add_argument("inputs", nargs="+", metavar="IMG", help="VNP02IMG/VJ102IMG/VJ202IMG files")
    fdet.add_argument("--geo", nargs="+", default=None, metavar="GEO",
                      help="matching 03IMG files, same order (default: found beside each IMG)")
    fdet.add_argument("--landcover", nargs="+", default=None, metavar="TIF",
                      help="land-cover raster (ESA WorldCover), several tiles or a folder of them, for straw-burning "
                           "categories (without it: category 'unclassified')")
    fdet.add_argument("--admin", default=None, metavar="FILE", help="admin polygons: counts_by_admin.csv, map outlines")
    fdet.add_argument("--admin-level-name", default="name", help="column naming the admin units (default name)")
    fdet.add_argument("--history", nargs="+", default=None, metavar="FIRMS_CSV",
                      help="earlier FIRMS detections for the static-source persistence rule (needs --landcover)")
    fdet.add_argument("--no-map", action="store_true", help="write no fires_map.png")
    fdet.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    fdet.set_defaults(func=_cmd_fire_detect)

    red = sub.add_parser("redline", help="human-activity change in redlines (rsmon redline detect --help)")
    red_sub = red.add_subparsers(dest="redline_command", required=True, parser_class=_Parser)
    rdet = red_sub.add_parser("detect", help="change patches between optical scenes (Sentinel-2, Landsat, ENVI, GeoTIFF)")
    rdet.add_argument("--before", nargs="+", required=True, metavar="PATH",
                      help="earlier scene(s): OSCD band folder, SAFE or per-band S2 folder, Landsat C2 L2 folder, "
                           "ENVI stack or multi-band file; several = latest-clear-pixel reference")
    rdet.add_argument("--after", nargs="+", required=True, metavar="PATH",
                      help="later scene(s); the first sets the output grid, more confirm (low/high/highest)")
    rdet.add_argument("--redlines", default=None, metavar="FILE", help="redline polygons (any vector format, any CRS)")
    rdet.add_argument("--whole-scene", action="store_true",
                      help="with --redlines, examine the whole scene (default: only the 512-pixel blocks near the "
                           "redlines; the change rasters are no data elsewhere)")
    rdet.add_argument("--redline-margin-m", type=float, default=None, metavar="M",
                      help="examine the blocks within M metres of a redline polygon (default 1000; at least "
                           "1.5 x (clean-up halo + 1) pixels, 180 m at 10 m)")
    rdet.add_argument("--mmu-px", type=int, default=None, metavar="N", help="minimum mapping unit, pixels (default 4)")
    rdet.add_argument("--landcover", nargs="+", default=None, metavar="TIF",
                      help="land-cover raster (ESA WorldCover or a land-use map, any CRS), several tiles of one grid "
                           "or a folder of them: patches mostly on its cropland that did not persist are screened as "
                           "the crop cycle into screened.gpkg")
    rdet.add_argument("--cropland-codes", default=None, metavar="C[,C...]",
                      help="land-cover codes of cropland (default 40, WorldCover)")
    rdet.add_argument("--crop-cycle-days", type=int, default=None, metavar="D",
                      help="a change still flagged D days after its first detection is not the crop cycle (default 60)")
    rdet.add_argument("--growing-season", default=None, metavar="MM-DD:MM-DD",
                      help="count only the days of this growing season towards --crop-cycle-days (single cropping: "
                           "a field bare from the autumn harvest to spring sowing is not re-admitted in winter; "
                           "e.g. 05-01:09-30 in Northeast China; default: every day counts)")
    rdet.add_argument("--season-zones", default=None, metavar="FILE",
                      help="vector file of agricultural zones with a growing_season column (MM-DD:MM-DD, empty: every "
                           "day counts): each patch counts its zone's season; --growing-season outside every zone")
    rdet.add_argument("--no-barren-parts", action="store_true",
                      help="screen whole patches only (default: the parts of a screened patch that became barren, "
                           "a quarry beside a harvested field, stay patches)")
    rdet.add_argument("--previous", default=None, metavar="FILE",
                      help="earlier patches to keep ids from (default OUTDIR/patches.gpkg); with --landcover the "
                           "screened.gpkg beside it is watched")
    rdet.add_argument("--max-quicklooks", type=int, default=200, metavar="N", help="quicklook PNGs for the N largest patches")
    rdet.add_argument("--no-quicklooks", action="store_true", help="write no quicklook PNGs")
    rdet.add_argument("--no-checksums", action="store_true", help="skip SHA-256 of inputs in provenance")
    rdet.add_argument("--no-coregister", action="store_true",
                      help="do not co-register the scenes to the first after scene (default: a global sub-pixel "
                           "shift is measured and corrected when 0.25-5 px; summary.json says what was done)")
    rdet.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                      help="stream the change rasters through scratch files in OUTDIR: memory that does not "
                           "grow with the scene's area (default: above $RSMON_STREAM_PIXELS, 25 Mpixel)")
    rdet.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    rdet.set_defaults(func=_cmd_redline_detect)
    rmrg = red_sub.add_parser("merge", help="merge the patches of runs on overlapping tiles, each change once")
    rmrg.add_argument("runs", nargs="+", metavar="RUNDIR",
                      help="output folders of 'rsmon redline detect' (one per tile)")
    rmrg.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                      help="folder for the merged patches.gpkg, patches.geojson and summary.json")
    rmrg.set_defaults(func=_cmd_redline_merge)

    store_help = "alert store: sqlite:///PATH or postgresql://... (default $RSMON_ALERT_STORE)"
    srv = sub.add_parser("serve", help="serve the alert store as OGC API - Features (redline supervision platform)")
    srv.add_argument("--store", default=None, metavar="URL", help=store_help)
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    srv.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    srv.add_argument("--rate-limit", type=_number("--rate-limit"), default=50.0, metavar="PER_S",
                     help="requests/s per key and worker, 0 = unlimited (default 50)")
    srv.add_argument("--burst", type=_number("--burst"), default=100.0, help="token-bucket burst per key (default 100)")
    srv.add_argument("--max-body-kb", type=int, default=64, help="largest request body, KiB (default 64)")
    srv.add_argument("--cors-origin", action="append", default=None, metavar="ORIGIN",
                     help="allow browser pages from ORIGIN (repeatable; * for any)")
    srv.add_argument("--forwarded-allow-ips", default=None, metavar="IPS",
                     help="trust X-Forwarded-* from these proxy addresses (comma-separated)")
    srv.add_argument("--gzip", action="store_true", help="compress responses for clients that accept gzip")
    srv.add_argument("--no-webhooks", action="store_true", help="do not deliver webhooks from this server")
    srv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    srv.set_defaults(func=_cmd_serve)

    alr = sub.add_parser("alerts", help="alert store: import detections, export (rsmon alerts import|export --help)")
    alr_sub = alr.add_subparsers(dest="alerts_command", required=True, parser_class=_Parser)
    aimp = alr_sub.add_parser("import", help="upsert patches.gpkg/.geojson of rsmon redline detect (idempotent)")
    aimp.add_argument("--store", default=None, metavar="URL", help=store_help)
    aimp.add_argument("--actor", default=None, help="name recorded in the audit log (default import:FILE)")
    aimp.add_argument("files", nargs="+", metavar="FILE", help="GeoPackage/GeoJSON alert files")
    aimp.set_defaults(func=_cmd_alerts_import)
    aexp = alr_sub.add_parser("export", help="write all alerts with their status")
    aexp.add_argument("--store", default=None, metavar="URL", help=store_help)
    aexp.add_argument("--format", required=True, choices=["geojson", "gpkg", "csv"])
    aexp.add_argument("-o", "--output", default=None, metavar="FILE", help="output file (default: standard output)")
    aexp.add_argument("--redlines", default=None, metavar="ID,...", help="only these redline ids")
    aexp.add_argument("--status", default=None, metavar="STATUS,...", help="only these statuses")
    aexp.set_defaults(func=_cmd_alerts_export)

    keys = sub.add_parser("keys", help="API keys of the alert service (rsmon keys create|revoke|list --help)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    kcr = keys_sub.add_parser("create", help="make a key; prints it once, as the last line")
    kcr.add_argument("--store", default=None, metavar="URL", help=store_help)
    kcr.add_argument("--scope", required=True, choices=["read", "write", "admin"],
                     help="read: query; write: also change status; admin: also webhooks")
    kcr.add_argument("--redlines", default=None, metavar="ID,...", help="limit the key to these redline ids")
    kcr.add_argument("--name", default=None, help="label (who holds the key)")
    kcr.set_defaults(func=_cmd_keys)
    krv = keys_sub.add_parser("revoke", help="revoke a key by its id")
    krv.add_argument("--store", default=None, metavar="URL", help=store_help)
    krv.add_argument("key_id", metavar="KEY_ID")
    krv.set_defaults(func=_cmd_keys)
    kls = keys_sub.add_parser("list", help="list keys (ids, scopes, redlines; never the keys)")
    kls.add_argument("--store", default=None, metavar="URL", help=store_help)
    kls.set_defaults(func=_cmd_keys)

    demo = sub.add_parser("demo", help="simulate a day over eastern China and run the NO2 product on it")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--seed", type=int, default=20190612)
    demo.set_defaults(func=_cmd_demo)
    workflow_cli.register(sub, _Parser)  # ingest, run, schedule, runs
    return p


def _number(name: str):
    def convert(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return convert


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        level = logging.WARNING - 10 * min(args.verbose, 2)
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        return int(args.func(args) or 0)
    except RsmonError as exc:
        msg = " ".join(str(exc).split())
        print(f"rsmon: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rsmon: interrupted", file=sys.stderr)
        return 130


#: Set by a command whose outputs are all published and closed when it returns: :func:`run` then
#: ends the process without the interpreter's teardown, which frees every object one by one
#: (0.6 s after a redline run on a Sentinel-2 tile pair, whose arrays and kernels fill 2 GB).
_fast_exit = False
#: True in the ``rsmon`` console command (:func:`run`), not when :func:`main` is called in-process.
_console = False


def run() -> None:
    """The ``rsmon`` console command: :func:`main`, then the exit code.

    After a command that set :data:`_fast_exit` the process does what matters of the interpreter's
    exit (waits for non-daemon threads, runs the ``atexit`` handlers such as logging's, flushes
    standard output and error) and then ends with :func:`os._exit`."""
    global _console
    _console = True
    code = main()
    shutdown = getattr(threading, "_shutdown", None)  # joins threads as Py_Finalize does (CPython)
    if not _fast_exit or shutdown is None or threading.current_thread() is not threading.main_thread():
        sys.exit(code)
    try:
        shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001  (e.g. a closed pipe: the normal exit reports it)
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
