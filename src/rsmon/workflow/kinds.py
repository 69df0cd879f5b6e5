"""Job kinds: the products a workflow job can run, and the steps that prepare a demo's inputs.

A kind declares its input roles, the JSON schema of its ``parameters`` and ``validation`` blocks
(workflow files are checked against them, with line numbers, before anything runs), which of them
are paths, and two functions: ``run`` (the product into a staging folder: glue to
:func:`rsmon.workflow.l3.run_l3`, :func:`rsmon.workflow.fire.run_fire_detection`,
:func:`rsmon.workflow.redline.run_redline_detect`) and ``validate`` (the validation report of the
published product). Adding a product to the workflows means adding a kind here.

Prepare steps (``prepare:`` in a workflow) run the simulators of :mod:`rsmon.sim` into the run's
home, for demos and tests where no real granule is bundled.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rsmon.errors import InputError

if TYPE_CHECKING:
    from rsmon.workflow.input_index import InputItem
    from rsmon.workflow.jobs import JobTask

log = logging.getLogger(__name__)

__all__ = ["JOB_KINDS", "JobKind", "PREPARE_KINDS", "Role", "run_prepare"]


@dataclass(frozen=True)
class Role:
    """An input role of a kind (``l2``, ``granules``, ``before``/``after``) and how many it needs."""

    name: str
    min: int = 1
    description: str = ""


_NUM = {"type": "number"}
BBOX_SCHEMA = {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4,
               "description": "west, south, east, north in degrees"}
_PATH = {"type": "string"}
_PATHS = {"type": "array", "items": _PATH, "minItems": 1}
#: A land-cover raster, a folder of tiles, or a list of tiles (mosaicked: rsmon.io.landcover.landcover_mosaic).
_LANDCOVER = {"anyOf": [_PATH, _PATHS]}


def _fields_schema(cls_path: str) -> dict:
    """An object schema whose properties are the fields of a parameter dataclass (typos fail)."""
    import importlib

    module, name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return {"type": "object", "additionalProperties": False,
            "properties": {f.name: {} for f in dataclasses.fields(cls)}}


@dataclass(frozen=True)
class JobKind:
    """A product a workflow job can run."""

    name: str
    description: str
    roles: tuple[Role, ...]
    parameters: Callable[[], dict]  # -> JSON schema "properties"
    required: tuple[str, ...]
    paths: tuple[str, ...]  # parameters holding a path (str) or paths (list)
    validation: Callable[[], dict]  # -> JSON schema "properties" of the validation block
    validation_required: tuple[str, ...]
    validation_paths: tuple[str, ...]
    run: Callable[[JobTask, dict[str, list[InputItem]], Path, Path], dict]
    validate: Callable[[JobTask, Path, Path], dict]
    collection: str
    alerts: bool = False

    def role(self, name: str) -> Role:
        return next(r for r in self.roles if r.name == name)


def _expand(patterns, what: str, required: bool = True) -> list[str]:
    """Paths from paths or glob patterns (sorted, de-duplicated)."""
    items = [patterns] if isinstance(patterns, str) else list(patterns or [])
    out: list[str] = []
    for pattern in items:
        hits = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else ([pattern] if Path(pattern).exists() else [])
        out.extend(h for h in hits if h not in out)
    if required and not out:
        raise InputError(f"{what}: no file matches {', '.join(items)}")
    return out


# ---- NO2 L3 --------------------------------------------------------------------------------------

def _no2_parameters() -> dict:
    return {
        "bbox": BBOX_SCHEMA, "res": {"type": "number", "exclusiveMinimum": 0},
        "qa_min": {"type": "number", "minimum": 0, "maximum": 1},
        "period": {"enum": ["orbit", "day", "month"]}, "day_boundary": {"enum": ["utc", "solar"]},
        "units": {"enum": ["mol m-2", "1e15 molec cm-2"]}, "weighting": {"enum": ["area", "inverse_variance"]},
        "min_column_mol_m2": {"type": ["number", "null"]},
        "formats": {"type": "array", "items": {"enum": ["tif", "nc"]}, "minItems": 1, "uniqueItems": True},
        "map_png": {"type": "boolean", "description": "a PNG map of each NetCDF output (needs 'nc' in formats)"},
        "map_outlines": _PATH, "workers": {"type": "integer", "minimum": 1},
    }


def _no2_validation() -> dict:
    return {"stations": _PATHS, "sites": _PATH, "radius_km": {"type": "number", "exclusiveMinimum": 0},
            "window_min": {"type": "number", "exclusiveMinimum": 0},
            "overpass": {"type": "string", "pattern": r"^\d\d:\d\d$"}, "n_boot": {"type": "integer", "minimum": 0}}


_ASSET_KEYS = {"tif": "cog", "nc": "netcdf"}


def _run_no2(task: JobTask, inputs, out: Path, catalog: Path) -> dict:
    from rsmon.grid import LonLatGrid
    from rsmon.products.no2 import MAIN_VARIABLE, NO2Params
    from rsmon.workflow.l3 import run_l3

    p = task.parameters
    grid = LonLatGrid.from_bbox(p["bbox"], p["res"])
    params = NO2Params(**{k: p[k] for k in ("qa_min", "period", "day_boundary", "units", "weighting",
                                             "min_column_mol_m2") if k in p})
    files = [item.path for item in inputs["l2"]]
    periods: list[str] = []
    written: list[Path] = []
    items: dict[Path, dict] = {}
    for fmt in p.get("formats", ["tif"]):
        result = run_l3(files, grid, out, params, fmt=fmt, catalog_dir=catalog, workers=p.get("workers"))
        periods, written = result.periods, written + result.outputs
        # run_l3 names the item of a period the same for each format: keep one item with both assets
        for item_file in result.items:
            data = json.loads(item_file.read_text(encoding="utf-8"))
            merged = items.setdefault(item_file, {**data, "assets": {}})
            merged["assets"][_ASSET_KEYS[fmt]] = data["assets"]["data"]
    for item_file, data in items.items():
        item_file.write_text(json.dumps(data, indent=2), encoding="utf-8")  # staging copy; the runner re-homes it
    if p.get("map_png"):
        import xarray as xr

        from rsmon.io.maps import read_outlines, write_map_png

        ncs = [w for w in written if w.suffix == ".nc"]
        if not ncs:
            raise InputError("parameters.map_png: the map is drawn from the NetCDF output; add 'nc' to formats")
        outlines = read_outlines(p["map_outlines"]) if p.get("map_outlines") else None
        for nc in ncs:
            with xr.open_dataset(nc) as ds:
                ds = ds.squeeze("time", drop=True) if "time" in ds.dims else ds
                write_map_png(nc.with_suffix(".png"), ds.load(), grid, MAIN_VARIABLE, outlines=outlines, scale=1e6,
                              units_label="tropospheric NO2 column (umol m-2)",
                              title=f"TROPOMI tropospheric NO2, {ds.attrs.get('period_label', '')}, "
                                    f"qa > {params.qa_min}")
    return {"periods": periods, "files": [w.name for w in written]}


def _validate_no2(task: JobTask, out: Path, report_dir: Path) -> dict:
    from rsmon.workflow.validate import run_validation

    v = task.validation or {}
    products = sorted(out.glob("rsmon_no2_l3_*.tif")) or sorted(out.glob("rsmon_no2_l3_*.nc"))
    if not products:
        raise InputError("validation: the job wrote no L3 grid to validate")
    result = run_validation("no2", products, _expand(v["stations"], "validation.stations"), report_dir,
                            sites=v.get("sites"), radius_km=v.get("radius_km"), window_min=v.get("window_min"),
                            overpass=v.get("overpass"), n_boot=v.get("n_boot", 1000),
                            title=f"{task.workflow} {task.job_id} {task.logical_date}: NO2 vs stations")
    st = result.stats.to_dict()
    return {k: st.get(k) for k in ("n", "r", "slope", "intercept") if k in st}


# ---- fire ----------------------------------------------------------------------------------------

def _fire_parameters() -> dict:
    return {"admin": _PATH, "admin_level_name": {"type": "string"}, "landcover": _LANDCOVER, "history": _PATHS,
            "map_png": {"type": "boolean"}, "detector": _fields_schema("rsmon.products.fire_params.FireParams"),
            "straw": _fields_schema("rsmon.products.straw.StrawParams")}


def _fire_validation() -> dict:
    return {"references": _PATHS, "max_distance_m": {"type": "number", "exclusiveMinimum": 0},
            "max_dt_min": {"type": "number", "exclusiveMinimum": 0}}


def _run_fire(task: JobTask, inputs, out: Path, catalog: Path) -> dict:
    from rsmon.workflow.fire import run_fire_detection

    p = task.parameters
    items = inputs["granules"]
    geos = [item.file_named(r"03IMG") for item in items]
    params = straw = None
    if p.get("detector"):
        from rsmon.products.fire_params import FireParams

        params = FireParams(**p["detector"])
    if p.get("straw"):
        from rsmon.products.straw import StrawParams

        straw = StrawParams(**p["straw"])
    history = _expand(p["history"], "parameters.history", required=False) if p.get("history") else None
    result = run_fire_detection([i.path for i in items], out, geo_paths=geos if all(geos) else None,
                                landcover=p.get("landcover"), admin=p.get("admin"),
                                admin_level_name=p.get("admin_level_name", "name"), history=history or None,
                                params=params, straw_params=straw, map_png=p.get("map_png", True))
    cats = result.fires["category"].astype(str).value_counts().to_dict() if result.n_fires else {}
    return {"n_fires": result.n_fires, "granules": result.granules, "by_category": cats}


def _validate_fire(task: JobTask, out: Path, report_dir: Path) -> dict:
    from rsmon.workflow.fire import run_fire_validation

    v = task.validation or {}
    result = run_fire_validation(out / "fires.csv", _expand(v["references"], "validation.references"), report_dir,
                                 max_distance_m=v.get("max_distance_m", 375.0), max_dt_min=v.get("max_dt_min", 20.0))
    return {k: result.stats.get(k) for k in ("n_detections", "n_reference", "n_matched", "precision", "recall", "f1")}


# ---- redline change ------------------------------------------------------------------------------

def _redline_parameters() -> dict:
    return {"redlines": _PATH, "mmu_px": {"type": "integer", "minimum": 1}, "quicklooks": {"type": "boolean"},
            "max_quicklooks": {"type": "integer", "minimum": 0}, "band_map": {"type": "object"},
            "previous": {"enum": ["auto", "none"],
                         "description": "auto: keep patch ids of this job's latest earlier run"},
            "checksums": {"type": "boolean"}, "change": _fields_schema("rsmon.products.change_params.ChangeParams"),
            "coregister": {"type": "boolean",
                           "description": "co-register the scenes to the first after scene (default true)"},
            "coreg": _fields_schema("rsmon.products.coregister.CoregParams"),
            "stream": {"type": "boolean",
                       "description": "stream the change pass through scratch files (default: above 25 Mpixel)"},
            "whole_scene": {"type": "boolean",
                            "description": "with redlines, examine the whole scene, not only the blocks near them"},
            "redline_margin_m": {"type": "number", "minimum": 0,
                                 "description": "examine the blocks within this many metres of a redline (1000)"},
            "landcover": {**_LANDCOVER, "description": "land-cover raster, folder or list of tiles: patches on its "
                                                       "cropland that did not persist are screened as the crop cycle "
                                                       "(screened.gpkg)"},
            "screen": _fields_schema("rsmon.products.change_screen.ScreenParams"),
            "season_zones": {**_PATH, "description": "vector file of zones with a growing_season column "
                                                     "(MM-DD:MM-DD): each patch counts its zone's season"}}


def _coreg_params(fields: dict | None):
    if not fields:
        return None
    from rsmon.products.coregister import CoregParams

    return CoregParams(**fields)


def _redline_validation() -> dict:
    return {"reference": {**_PATHS, "maxItems": 2}, "iou_min": {"type": "number", "minimum": 0, "maximum": 1}}


def _run_redline(task: JobTask, inputs, out: Path, catalog: Path) -> dict:
    from rsmon.workflow.redline import run_redline_detect
    from rsmon.workflow.redline_tiles import plan_tiles, run_redline_tiles

    p = task.parameters
    before, after = [i.path for i in inputs["before"]], [i.path for i in inputs["after"]]
    same = sorted(set(before) & set(after))
    if same:
        raise InputError(f"inputs: {', '.join(same)} selected as both before and after; narrow the time windows")
    params = None
    if p.get("change"):
        from rsmon.products.change_params import ChangeParams

        params = ChangeParams(**p["change"])
    screen = None
    if p.get("screen"):
        from rsmon.products.change_screen import ScreenParams

        screen = ScreenParams(**{k: tuple(v) if k == "cropland_codes" and isinstance(v, list) else v
                                 for k, v in p["screen"].items()})
    options = dict(redlines=p.get("redlines"), mmu_px=p.get("mmu_px"), params=params, band_map=p.get("band_map"),
                   previous=task.previous_patches, quicklooks=p.get("quicklooks", True),
                   max_quicklooks=p.get("max_quicklooks", 200), checksums=p.get("checksums", True),
                   stream=p.get("stream"), whole_scene=p.get("whole_scene", False),
                   margin_m=p.get("redline_margin_m"), landcover=p.get("landcover"), screen=screen,
                   season_zones=p.get("season_zones"), coregister=p.get("coregister", True),
                   coreg=_coreg_params(p.get("coreg")))
    plan = plan_tiles(inputs["before"], inputs["after"])
    if plan.multi:  # scenes of several tiles: one run per tile, the patches merged
        s = run_redline_tiles(plan, out, **options)
        return {k: s[k] for k in ("n_patches", "area_m2", "n_change_pixels", "by_class", "reason", "skipped_tiles",
                                  "duplicates_dropped", "screened")} | {"tiles": sorted(s["tiles"])}
    result = run_redline_detect(before, after, out, **options)
    return {"n_patches": result.n_patches, "area_m2": result.area_m2, "n_change_pixels": result.n_change_pixels,
            "by_class": result.by_class, "reason": result.reason, "screened": result.screened or None,
            "watch": result.watch, "barren_parts": result.barren_parts}


def _validate_redline(task: JobTask, out: Path, report_dir: Path) -> dict:
    from rsmon.workflow.redline import run_change_validation

    v = task.validation or {}
    products = [out / "change.tif"]
    if not products[0].is_file() and (out / "tiles").is_dir():  # a multi-tile job: every tile's raster
        products = sorted((out / "tiles").glob("*/change.tif"))
    refs = _expand(v["reference"], "validation.reference")
    result = run_change_validation(products, refs[0] if len(refs) == 1 else refs, report_dir,
                                   iou_min=v.get("iou_min", 0.5))
    s = result.scores.as_dict()
    return {k: s.get(k) for k in ("precision", "recall", "f1", "iou", "kappa", "n_scored")}


JOB_KINDS: dict[str, JobKind] = {
    "no2-l3": JobKind(
        name="no2-l3", description="TROPOMI tropospheric NO2 L3 grids (COG/NetCDF) with STAC items",
        roles=(Role("l2", 1, "TROPOMI L2 NO2 granules"),), parameters=_no2_parameters, required=("bbox", "res"),
        paths=("map_outlines",), validation=_no2_validation, validation_required=("stations",),
        validation_paths=("stations", "sites"), run=_run_no2, validate=_validate_no2, collection="rsmon-no2-l3"),
    "fire": JobKind(
        name="fire", description="VIIRS active-fire points (CSV, GeoJSON, GeoPackage, map, admin counts)",
        roles=(Role("granules", 1, "VIIRS L1B 02IMG granules (03IMG found as companions)"),),
        parameters=_fire_parameters, required=(), paths=("admin", "landcover", "history"),
        validation=_fire_validation, validation_required=("references",), validation_paths=("references",),
        run=_run_fire, validate=_validate_fire, collection="rsmon-fire"),
    "redline": JobKind(
        name="redline", description="human-activity change patches in redlines from optical scene pairs",
        roles=(Role("before", 1, "earlier scene(s)"), Role("after", 1, "later scene(s)")),
        parameters=_redline_parameters, required=(), paths=("redlines", "landcover", "season_zones"), validation=_redline_validation,
        validation_required=("reference",), validation_paths=("reference",), run=_run_redline,
        validate=_validate_redline, collection="rsmon-redline", alerts=True),
}


# --------------------------------------------------------------------------------------------------
# Prepare steps (simulators for demos and tests)
# --------------------------------------------------------------------------------------------------

def _prepare_s5p_day(step: dict, day: date) -> list[Path]:
    from rsmon.sim.s5p import simulate_day

    bbox = tuple(step["bbox"]) if step.get("bbox") else None
    return simulate_day(step["out"], day, seed=step.get("seed", 0), bbox=bbox,
                        full_orbits=step.get("full_orbits", False))


def _prepare_viirs_granule(step: dict, day: date) -> list[Path]:
    from rsmon.provenance import parse_datetime
    from rsmon.sim.viirs import simulate_granule

    start = parse_datetime(step["start"], "prepare.start") if step.get("start") else None
    kw = {k: step[k] for k in ("n_lines", "n_pixels", "n_fires", "platform", "day") if k in step}
    if step.get("center"):
        kw["center"] = tuple(step["center"])
    g = simulate_granule(step["out"], seed=step.get("seed", 0), start=start, **kw)
    return [g.img_path, g.geo_path, g.truth_path]


#: ``simulate:`` name -> (JSON schema properties, function(step, logical date) -> files written).
PREPARE_KINDS: dict[str, tuple[dict, Callable[[dict, date], list[Path]]]] = {
    "s5p-day": ({"out": _PATH, "bbox": BBOX_SCHEMA, "seed": {"type": "integer", "minimum": 0},
                 "full_orbits": {"type": "boolean"}}, _prepare_s5p_day),
    "viirs-granule": ({"out": _PATH, "start": {"type": "string"}, "seed": {"type": "integer", "minimum": 0},
                       "center": {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2},
                       "n_lines": {"type": "integer", "minimum": 32}, "n_pixels": {"type": "integer", "minimum": 1},
                       "n_fires": {"type": "integer", "minimum": 0}, "platform": {"type": "string"},
                       "day": {"type": "boolean"}}, _prepare_viirs_granule),
}


def run_prepare(step: dict, day: date) -> list[Path]:
    """Run one prepare step unless its files are already there (simulators are deterministic).

    A marker ``.rsmon-prepared-<hash>.json`` in the output folder lists the files a step with these
    exact settings wrote; while they all exist, the step is not run again (rewriting them would
    change their modification times and make the ingest re-read them).
    """
    import hashlib

    from rsmon.io.atomic import atomic_output, check_output_dir

    out = check_output_dir(step["out"])
    digest = hashlib.sha256(json.dumps({**step, "day": day.isoformat()}, sort_keys=True).encode()).hexdigest()[:16]
    marker = out / f".rsmon-prepared-{digest}.json"
    if marker.is_file():
        files = [Path(f) for f in json.loads(marker.read_text(encoding="utf-8"))]
        if all(f.is_file() for f in files):
            log.info("prepare %s: %d file(s) already in %s", step["simulate"], len(files), out)
            return files
    files = PREPARE_KINDS[step["simulate"]][1](step, day)
    with atomic_output(marker) as tmp:
        tmp.write_text(json.dumps([str(f) for f in files]), encoding="utf-8")
    log.info("prepare %s: wrote %d file(s) in %s", step["simulate"], len(files), out)
    return files
