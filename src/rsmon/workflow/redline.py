"""The redline job: optical scenes before and after -> change raster, change patches, quicklooks.

Glue only: readers (:func:`rsmon.io.optical.open_optical`, :func:`rsmon.io.optical.align_pair`,
:func:`rsmon.io.vectors.read_vectors`), the science (:func:`rsmon.products.change.detect_change_blocks`,
:func:`rsmon.products.change.detect_series`, :func:`rsmon.products.patches.patches_from_change`)
and the writers (:mod:`rsmon.io.change_output`, :func:`rsmon.io.vectors.write_patches`).
``rsmon redline detect`` and the workflow runner call :func:`run_redline_detect`.

Resources: a pair is computed in one pass over its blocks on a thread pool
(:func:`~rsmon.products.change.detect_change_blocks`; every input block decoded once); tiled
GeoTIFF bands are read by :mod:`rsmon.io.tiff_tiles`, every other file by GDAL with
:data:`GDAL_READ_ENV`; the COGs are written in the background while the patch table is built.
Up to :data:`STREAM_PIXELS` (25 Mpixel) the output rasters, the change pixels' index samples and
the patch table's pixel arrays are held in memory; above it (or with ``stream=True``) the pair is
streamed: the pass writes each finished block row to scratch files
in the output folder (:class:`rsmon.io.spill.ChangeSpill`), the patch table is built window by
window of :data:`STREAM_WINDOW_ROWS` rows and the COGs are staged on disk, so memory no longer
grows with the area (what remains grows with the width and the number of patches;
docs/benchmarks.md). The outputs are the same either way (tested).
Each stage's seconds are logged and kept in ``summary.json``.

Scenes
------
* One ``before`` and one ``after``: a bi-temporal pair; one pair cannot confirm a change, so
  every patch is "low" confidence (:func:`~rsmon.products.change.detect_change_blocks`).
* Several ``after`` scenes: a series; the later ones confirm or expire the first detections
  (:func:`~rsmon.products.change.detect_series`, GLAD/RADD practice), computed in one pass over
  the blocks like a pair (:func:`~rsmon.products.change_blocks.series_change_blocks`).
* Several ``before`` scenes: the reference is their latest-clear-pixel composite
  (:func:`~rsmon.products.change_composite.latest_clear_composite`), so a cloud in the latest
  before scene does not hide the reference.
Every scene is put on the grid of the first ``after`` scene (reprojected if its CRS differs); the
change raster is on that grid.

Redlines
--------
The redline polygons are checked, repaired and put on that grid before the pass (a bad layer
fails before any pixel is read). The pass then examines only the blocks within ``margin_m`` of
them (:mod:`rsmon.products.change_extent`; ``whole_scene=True`` examines every block): the other
blocks are not read, the rasters are no data (255) there and ``summary.json`` says what share was
examined. A change region with a piece inside a redline that reaches the edge of the examined
blocks has the blocks it reaches examined too, on another pass, so the patches are a whole-scene
run's (``summary.json``: ``examined.added``, ``examined.passes``). The patches are clipped to the
redlines either way.

Failure rules
-------------
* Every input is opened and the change computed before the first byte is written; a bad input
  raises an :class:`~rsmon.errors.RsmonError` naming it and leaves the output folder as it was.
* Outputs are staged and renamed into place at the end (:mod:`rsmon.workflow.staging`): a run
  leaves all its files or none.
* A streamed run keeps its scratch files in a hidden folder of the output folder
  (``.rsmon-scratch-*.partial``), removed at the end whatever happens; one left by a killed run is
  removed by the next streamed run into that folder once older than :data:`STALE_SCRATCH_S`.
* Patch ids are stable: the patches of the previous run in the same folder (``patches.gpkg``) or
  ``previous`` are passed to :func:`~rsmon.products.patches.patches_from_change`, so a rerun, or
  next month's run into the same folder, keeps the ids of changes already reported.
* No change (or no pixel clear on both dates) is an answer, not an error: every file is written
  (empty patch layers, a change raster of 0/255) and ``summary.json`` says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import rasterio
import xarray as xr

from rsmon.errors import FormatError, InputError, RsmonError
from rsmon.io.atomic import atomic_output
from rsmon.io.change_output import CHANGE_COG_PROFILE, ChangeCogJobs, write_quicklooks
from rsmon.io.landcover import check_landcover_raster, class_share_of_polygons, with_landcover_mosaic
from rsmon.io.optical import align_pair, open_optical
from rsmon.io.optical_align import grid_distance
from rsmon.io.season_zones import read_season_zones, seasons_at
from rsmon.io.spill import ChangeSpill
from rsmon.io.vectors import read_vectors, write_patches
from rsmon.products.change import detect_change_blocks
from rsmon.products.change_barren import barren_parts
from rsmon.products.change_blocks import change_sample_names, series_change_blocks
from rsmon.products.change_composite import latest_clear_composite
from rsmon.products.change_extent import DEFAULT_MARGIN_M, blocks_reached, reaching_pixels
from rsmon.products.change_indices import BANDS
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_screen import CROP_CYCLE, PERSISTED, ScreenParams, apply_watch, screen_patches
from rsmon.products.coregister import CoregParams, align_coregistered
from rsmon.products.patch_regions import kernel_threads
from rsmon.products.patches import RedlineColumns, patches_from_change
from rsmon.products.redlines import PREPARED_COLUMNS, prepare_redlines
from rsmon.provenance import InputRef, Provenance
from rsmon.workflow.staging import precheck_output_dir, publish, staging

log = logging.getLogger(__name__)

__all__ = ["ChangeValidationResult", "RedlineResult", "run_change_validation", "run_redline_detect"]

_PathLike = str | os.PathLike

#: The uint8 rasters of a change run (written as COGs; computed together for a series).
_MASKS = ("change", "change_class", "confidence")
#: GDAL settings while the scenes are read. The block cache holds the decoded tiles of about
#: three rows of 20 m tiles, which three rows of 10 m blocks share through their resampling
#: margins: with 128 MB the 10 m tiles flowing through evicted them and DEFLATE/ZSTD 20 m tiles
#: were decoded up to three times (2.5 CPU-s more on a tile pair); 256 MB is bounded and far
#: below GDAL's default (5 % of the RAM). Uncompressed GeoTIFF windows are copied straight into
#: the output array instead of through the cache (GTIFF_DIRECT_IO; 35 % less CPU for such reads,
#: ignored for compressed files).
GDAL_READ_ENV = {"GDAL_CACHEMAX": 256 << 20, "GTIFF_DIRECT_IO": "YES"}

#: A run whose after grid has more pixels than this is streamed (:func:`run_redline_detect`
#: ``stream``): its rasters and samples go to scratch files block row by block row and the patches
#: are built window by window, so memory stops growing with the area. On a Sentinel-2 tile (120.6
#: Mpixel) a streamed run is as fast as one in memory (6.3-6.8 s against 6.3-7.9 s uncompressed,
#: three runs each, 2026-11-30) and peaks at 1.1-1.2 GB instead of 1.9 GB; below this size the
#: scratch files are not worth their bookkeeping. The environment variable ``RSMON_STREAM_PIXELS``
#: overrides it.
STREAM_PIXELS = 25_000_000
#: Rows of a patch window when streamed (2 block rows of 512; 34 MB of masks at 10980 columns).
STREAM_WINDOW_ROWS = 1024


@dataclass
class RedlineResult:
    """What a redline run produced."""

    paths: dict[str, Path] = field(default_factory=dict)
    n_patches: int = 0
    n_change_pixels: int = 0
    n_valid_pixels: int = 0
    area_m2: float = 0.0
    reason: str | None = None
    by_class: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: Share of the scene's pixels examined (1.0: the whole scene; less: only the blocks near
    #: the redlines, :mod:`rsmon.products.change_extent`).
    examined_fraction: float = 1.0
    #: Patches screened out as pseudo-change (``screened.gpkg``), by reason.
    screened: dict[str, int] = field(default_factory=dict)
    #: Outcomes of the watch on the previous run's screened patches (None: nothing watched).
    watch: dict[str, int] | None = None
    #: Barren parts cut out of screened patches and kept as patches (None: no screen).
    barren_parts: int | None = None

    def summary(self) -> str:
        text = (f"{self.n_patches} change patch(es), {self.area_m2 / 1e4:.2f} ha, "
                f"{self.n_change_pixels} change pixel(s) of {self.n_valid_pixels} valid")
        if self.by_class:
            text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.by_class.items())) + ")"
        if self.examined_fraction < 1.0:
            text += f"; {100 * self.examined_fraction:.1f} % of the scene examined (near the redlines)"
        for reason, n in sorted(self.screened.items()):
            text += f"; {n} patch(es) screened as {reason.replace('_', ' ')} (screened.gpkg)"
        if self.barren_parts:
            text += f"; {self.barren_parts} barren part(s) of them kept"
        if self.watch and self.watch.get(PERSISTED):
            text += f"; {self.watch[PERSISTED]} earlier screened patch(es) still bare: re-admitted"
        if self.reason:
            text += f"; {self.reason}"
        return text


@contextmanager
def _stage(seconds: dict[str, float], name: str):
    """Time one stage of a run into ``seconds`` (added up when a stage comes back) and log it
    (``rsmon -v`` shows where a run spends)."""
    t0 = time.perf_counter()
    yield
    took = time.perf_counter() - t0
    seconds[name] = round(seconds.get(name, 0.0) + took, 3)
    log.info("redline stage %s: %.2f s", name, took)


def _as_paths(value, name: str) -> list[Path]:
    if value is None:
        return []
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    if not items:
        raise InputError(f"{name}: at least one scene is needed")
    return [Path(v) for v in items]


def _product_band(ds: xr.Dataset, band: str) -> str:
    """The product's own name of a standard band (S2 ``B11``, Landsat ``B5``), for messages."""
    from rsmon.io.optical_landsat import LANDSAT_BAND_OF
    from rsmon.io.optical_s2 import S2_BAND_OF

    product = str(ds.attrs.get("product", ""))
    if product.startswith("S2"):
        return f"{band} ({S2_BAND_OF[band]})"
    if product.startswith("Landsat"):
        family = "OLI" if "OLI" in str(ds.attrs.get("sensor", "")) else "TM"
        return f"{band} (B{LANDSAT_BAND_OF[family][band]})"
    return band


def _open(path: Path, band_map, role: str) -> xr.Dataset:
    try:
        ds = open_optical(path, band_map=band_map)
    except RsmonError:
        raise
    except OSError as exc:  # a reader bug on a bad file still names the file
        raise InputError(f"{role} scene {path}: cannot be read ({exc})") from None
    missing = [_product_band(ds, b) for b in BANDS if b not in ds.data_vars]
    if missing:
        raise FormatError(f"{role} scene {path}: missing band(s) {', '.join(missing)}; change detection needs "
                          f"{', '.join(BANDS)}")
    return ds


def _aligned(scene: xr.Dataset, grid: xr.Dataset, path: Path, roles: tuple[str, str], params: CoregParams | None,
             records: list[dict]) -> xr.Dataset:
    """``scene`` on ``grid``, co-registered to it with ``params`` (None: aligned only); the shift
    measured and what was done are appended to ``records``."""
    if params is None:
        return align_pair(scene, grid, roles)[0]
    aligned, shift = align_coregistered(scene, grid, params, roles)
    records.append({"role": roles[0], "scene": os.fspath(path), **shift.as_dict()})
    log.info("co-registration of %s %s to %s: dy %.2f, dx %.2f px; %s", roles[0], path, roles[1], shift.dy, shift.dx,
             shift.reason)
    return aligned


def _previous_patches(out: Path, previous) -> Any:
    """The patches to reconcile ids against: ``previous`` if given, else this folder's last run."""
    path = Path(previous) if previous is not None else out / "patches.gpkg"
    if not path.exists():
        if previous is not None:
            raise InputError(f"--previous {path}: no such file")
        return None
    gdf = read_vectors(path)
    log.info("reconciling patch ids with %d earlier patch(es) in %s", len(gdf), path)
    return gdf


def _previous_screened(out: Path, previous, prev) -> Any:
    """The screened patches beside the previous patches (``screened.gpkg``), to watch; None if none."""
    if prev is None:
        return None
    path = (Path(previous) if previous is not None else out / "patches.gpkg").with_name("screened.gpkg")
    if not path.is_file():
        return None
    gdf = read_vectors(path)
    missing = [c for c in ("patch_id", "first_detected", "confidence_code", "area_m2") if c not in gdf.columns]
    if missing:
        raise InputError(f"{path}: not a table of screened patches (missing column(s) {', '.join(missing)})")
    if gdf.crs is None:
        raise InputError(f"{path}: screened patches without a CRS")
    log.info("watching %d patch(es) screened as the crop cycle in %s", len(gdf), path)
    return gdf


def _with_watched(prev, watched):
    """The previous patches and the previous screened ones, as one table to reconcile ids against."""
    other = watched.to_crs(prev.crs) if prev.crs is not None and watched.crs != prev.crs else watched
    return pd.concat([prev, other.drop(columns=["screen_reason"], errors="ignore")], ignore_index=True)


def _earlier_quicklooks(patches, ids: list, after: xr.Dataset, stage: Path, band_map, max_patches: int) -> int:
    """Quicklooks of re-admitted patches against the scene before their first detection (their
    ``before_source``), replacing those drawn with this run's before scene, which was taken after
    the change. A source that is gone or unreadable keeps this run's picture (logged). Returns the
    number redrawn."""
    back = patches[patches["patch_id"].isin(ids)]
    done = 0
    for source, group in back.groupby("before_source"):
        path = Path(str(source))
        try:
            scene = _open(path, band_map, "earlier before")
        except (RsmonError, OSError) as exc:
            log.warning("quicklooks of %d re-admitted patch(es): their earlier before scene %s cannot be read "
                        "(%s); they show this run's before scene", len(group), path, exc)
            continue
        done += len(write_quicklooks(group, scene, after, stage, max_patches=max_patches))
    return done


@contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off while a run lasts (on again after, if it was).

    A run allocates few reference cycles, but its many small objects (dask and xarray graphs,
    per-block results, the patch table's geometries) set off collections that walk every live
    object, all imported modules included, while holding the GIL that the pass's threads need.
    Without them a one-off tile run took 8.8-9.4 s against 9.1-9.8 s (three alternating runs,
    docs/benchmarks.md). The cycles a run leaves are collected once it is over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@_gc_paused()
@with_landcover_mosaic
def run_redline_detect(
    before: _PathLike | Sequence[_PathLike],
    after: _PathLike | Sequence[_PathLike],
    out_dir: _PathLike,
    *,
    redlines: _PathLike | None = None,
    redline_columns: RedlineColumns | None = None,
    mmu_px: int | None = None,
    params: ChangeParams | None = None,
    band_map: dict | None = None,
    previous: _PathLike | None = None,
    quicklooks: bool = True,
    max_quicklooks: int = 200,
    checksums: bool = True,
    stream: bool | None = None,
    whole_scene: bool = False,
    margin_m: float | None = None,
    landcover: _PathLike | None = None,
    screen: ScreenParams | None = None,
    season_zones: _PathLike | None = None,
    coregister: bool = True,
    coreg: CoregParams | None = None,
) -> RedlineResult:
    """Detect human-activity change between optical scenes and write the change products.

    Parameters
    ----------
    before, after : path or sequence of paths
        Scenes :func:`rsmon.io.optical.open_optical` reads (OSCD band folder, SAFE or per-band
        Sentinel-2 folder, Landsat C2 L2 folder, ENVI stack, multi-band GeoTIFF with ``band_map``).
    out_dir : path
        Output folder: ``change.tif`` (uint8 1 change / 0 none / 255 no data, on the first after
        scene's grid), ``change_class.tif``, ``confidence.tif``, ``patches.gpkg``,
        ``patches.geojson``, ``quicklooks/<patch_id>.png``, ``summary.json``.
    redlines : path, optional
        Redline / reserve polygons (any vector format and CRS); patches are clipped to them and
        those outside dropped. Without it every patch is kept (``redline_id`` empty).
    mmu_px : int, optional
        Minimum mapping unit in pixels (default ``ChangeParams().mmu_px`` = 4).
    params : ChangeParams, optional
        Every other threshold (one parameter set for all sites, see docs/validation_change.md).
    previous : path, optional
        Patches of an earlier run to keep ids from (default: ``out_dir/patches.gpkg`` if present).
        With ``landcover``, the ``screened.gpkg`` beside it is watched
        (:mod:`rsmon.products.change_screen`): its patches still bare ``crop_cycle_days`` after their
        first detection are re-admitted; ``summary.json`` ``watch`` counts the outcomes.
    quicklooks : bool
        Write one before/after PNG per patch (the largest ``max_quicklooks``).
    stream : bool, optional
        Stream the pass (a pair or a series) through scratch files in the output folder (memory
        that does not grow with the scene's area, only with its width and the number of patches;
        :class:`rsmon.io.spill.ChangeSpill`, patches by windows of :data:`STREAM_WINDOW_ROWS`
        rows); default: when the after grid has more than :data:`STREAM_PIXELS` pixels. The
        outputs are the same either way.
    whole_scene : bool
        With ``redlines``, examine the whole scene. By default only the blocks within
        ``margin_m`` metres of a redline polygon are read and computed (the change rasters are
        no data, 255, elsewhere; :mod:`rsmon.products.change_extent`): the patches are those of
        a whole-scene run unless a change region reaches further than that outside a redline.
    margin_m : float, optional
        That margin, metres (None: :data:`~rsmon.products.change_extent.DEFAULT_MARGIN_M`); at
        least 1.5 x (the clean-up's halo + 1) pixels are used whatever is given.
    landcover : path or sequence of paths, optional
        A categorical land-cover raster (ESA WorldCover, a provincial land-use map; any CRS), or
        several tiles on one grid, or a folder of them (mosaicked, :func:`rsmon.io.landcover.landcover_mosaic`), for the
        crop-cycle screen (:mod:`rsmon.products.change_screen`): patches mostly on its cropland
        that did not persist ``screen.crop_cycle_days`` are moved from ``patches.*`` to
        ``screened.gpkg`` / ``screened.geojson`` (with ``screen_reason``); both tables gain
        ``cropland_fraction``. Checked before the pass.
    screen : ScreenParams, optional
        The screen's cropland codes and thresholds (default WorldCover class 40, majority, 60 days).
    season_zones : path, optional
        Growing-season zones (:mod:`rsmon.io.season_zones`): each patch counts the days of its
        zone's growing season (outside every zone, ``screen.growing_season``). Only with
        ``landcover``.

    coregister : bool
        Co-register every other scene to the first after scene (:mod:`rsmon.products.coregister`):
        a global sub-pixel shift measured on matching windows, corrected when most estimates
        agree and it is between ``coreg.min_shift_px`` and ``coreg.max_shift_px``;
        ``summary.json`` ``coregistration`` gives each scene's shift and what was done.
    coreg : CoregParams, optional
        Its thresholds (default :class:`~rsmon.products.coregister.CoregParams`).

    Raises
    ------
    RsmonError
        Bad scene (named), scenes that do not overlap, bad redline file or geometry, bad
        parameter, unwritable output folder. Nothing is written then.
    """
    out = precheck_output_dir(out_dir)
    before_paths, after_paths = _as_paths(before, "--before"), _as_paths(after, "--after")
    if not after_paths:
        raise InputError("--after: at least one scene is needed")
    p = params or ChangeParams()
    if mmu_px is not None:
        if int(mmu_px) != mmu_px or mmu_px < 1:
            raise InputError(f"--mmu-px: expected a whole number of pixels >= 1, got {mmu_px}")
        p = dataclasses.replace(p, mmu_px=int(mmu_px))
    margin_m = DEFAULT_MARGIN_M if margin_m is None else margin_m
    if not (isinstance(margin_m, (int, float)) and np.isfinite(margin_m) and margin_m >= 0):
        raise InputError(f"--redline-margin-m: expected a distance in metres >= 0, got {margin_m!r}")

    seconds: dict[str, float] = {}
    registration: list[dict] = []
    # 1. read everything (lazily) and align onto the first after scene's grid
    with _stage(seconds, "open"):
        afters = [_open(path, band_map, "after") for path in after_paths]
        befores = [_open(path, band_map, "before") for path in before_paths]
        grid = afters[0]
    # the other scenes on the first after scene's grid, each co-registered to it
    with _stage(seconds, "coregister"):
        cp = (coreg or CoregParams()) if coregister else None
        befores = [_aligned(b, grid, path, ("before", "after"), cp, registration)
                   for b, path in zip(befores, before_paths)]
        afters = [grid] + [_aligned(a, grid, path, ("later after scene", "first after scene"), cp, registration)
                           for a, path in zip(afters[1:], after_paths[1:])]
    with _stage(seconds, "open"):
        # checked, repaired and reprojected to the after grid once, before the pass
        if redlines is not None and grid.rio.crs is None:
            raise InputError(f"--after {after_paths[0]}: the scene has no CRS, so the redlines cannot be placed on it")
        for role, paths, scenes in (("before", before_paths, befores), ("after", after_paths, afters)):
            for path, scene in zip(paths, scenes):
                if not scene.attrs.get("datetime"):  # the patches are dated; say so now, not after the pass
                    raise InputError(f"--{role} {path}: no acquisition date found (not in its metadata or name; a "
                                     "multi-band stack's file name must hold one, e.g. scene_20230601T030551.tif)")
        zones = (prepare_redlines(read_vectors(redlines), grid.rio.crs, redline_columns) if redlines is not None
                 else None)
        sp = screen or ScreenParams()
        if season_zones is not None and landcover is None:
            raise InputError("--season-zones: only with --landcover")
        season_map = read_season_zones(season_zones) if season_zones is not None else None
        if landcover is not None:
            if grid.rio.crs is None:
                raise InputError(f"--after {after_paths[0]}: the scene has no CRS, so the land cover cannot be placed on it")
            check_landcover_raster(landcover, grid.rio.bounds(), grid.rio.crs)
        within = None if zones is None or whole_scene else zones.geometry.to_numpy()
        margin = grid_distance(grid, margin_m) if within is not None else 0.0
        prev = _previous_patches(out, previous)
        watched = _previous_screened(out, previous, prev) if landcover is not None else None
        if watched is not None and len(watched):
            # changes screened last time and detected again keep their id and first detection date
            prev = _with_watched(prev, watched)
        reference = befores[0] if len(befores) == 1 else latest_clear_composite(befores, p)

    # 2. compute the change rasters in one pass over the blocks (a pair, or every pair of a series at once);
    #    the inputs' checksums (SHA-256 of every file, 1-3 s for a tile pair) meanwhile, in the background
    files = [f for scene in [*befores, *afters] for f in _source_files(scene)]
    streamed = _streamed(grid, stream)

    def attempt(extra: np.ndarray | None, passes: int) -> RedlineResult:
        with contextlib.ExitStack() as scratch:
            spill = None
            if streamed:  # scratch files in the output folder, removed at the end whatever happens
                _remove_stale_scratch(out)
                spill = scratch.enter_context(ChangeSpill(scratch.enter_context(staging(out, ".rsmon-scratch-")),
                                                          (grid.sizes["y"], grid.sizes["x"]),
                                                          change_sample_names(reference, series=len(afters) > 1)))
                log.info("streaming the change rasters through %s", spill.folder)
            with ThreadPoolExecutor(1) as hasher:
                inputs = hasher.submit(lambda: [InputRef.from_path(f, checksum=checksums) for f in files])
                with rasterio.Env(**GDAL_READ_ENV), _stage(seconds, "detect"):
                    if len(afters) == 1:
                        blocks = detect_change_blocks(reference, afters[0], p, spill=spill, within=within,
                                                      margin=margin, extra_blocks=extra)
                    else:
                        blocks = series_change_blocks([reference, *afters], p, spill=spill, within=within,
                                                      margin=margin, extra_blocks=extra)
                    ds = blocks.to_dataset(afters[0])
                    watch = None
                    if blocks.examined is not None:
                        ds.attrs["examined_passes"] = passes
                        # change pixels next to the pass's no-data edge: their regions may go on beyond it
                        watch = reaching_pixels(ds["change"], blocks.examined, blocks.block_starts, blocks.halo + 1)
                    n_change, n_valid = blocks.n_change, blocks.n_valid
                prov = Provenance(inputs=inputs.result(),
                                  parameters={"change_params": json.loads(ds.attrs.get("change_params", "{}")),
                                              "threshold": _json_float(ds.attrs.get("threshold")),
                                              "redlines": os.fspath(redlines) if redlines is not None else None,
                                              "landcover": [os.fspath(f) for f in getattr(landcover, "files",
                                                                                          [landcover])]
                                              if landcover is not None else None,
                                              "screen": sp.as_dict() if landcover is not None else None,
                                              "season_zones": os.fspath(season_zones)
                                              if season_zones is not None else None})

            # 3. into a staging folder, then moved into place; the COGs are written in the background while
            #    the patch table is built (both mostly outside the GIL), and this thread helps with those
            #    left once the vector files are written: two threads on two cores
            with staging(out, ".rsmon-redline-") as stage, ThreadPoolExecutor(1) as background:
                t_rasters = time.perf_counter()
                # streamed: the COGs are staged on disk too (the rasters are read from the scratch files;
                # staging them in memory up to 256 MB was not measurably faster on a tile, three warm
                # runs each, and would add up to 0.3 GB)
                profile = dataclasses.replace(CHANGE_COG_PROFILE, num_threads=1,
                                              **({"max_memory_bytes": 0} if spill is not None else {}))
                rasters = ChangeCogJobs(stage, ds, prov, _MASKS, profile=profile)
                background.submit(rasters.work)
                # one thread for the patch table's kernels: the COG writer keeps the other core busy
                with rasterio.Env(**GDAL_READ_ENV), _stage(seconds, "patches"), kernel_threads(1):
                    # the blocks' samples are summed piece by piece in the background while the regions are traced
                    if spill is not None:  # window by window, the samples read back by rows
                        patches = patches_from_change(ds, index_samples=blocks.samples_in_rows, redlines=zones,
                                                      previous=prev, redline_columns=PREPARED_COLUMNS,
                                                      window_rows=STREAM_WINDOW_ROWS, watch=watch)
                    else:
                        patches = patches_from_change(ds, index_samples=lambda: blocks.sample_pieces, redlines=zones,
                                                      previous=prev, redline_columns=PREPARED_COLUMNS, watch=watch)
                reached = patches.attrs.get("watched") if watch is not None else None
                more = (blocks_reached(reached, blocks.examined, blocks.block_starts, blocks.halo + 1)
                        if reached is not None and reached.size else None)
                if more is not None and more.any():
                    # a region with a piece inside a redline reaches the blocks left out: examine those
                    # it touches too and run again, so that its patch is the whole-scene run's
                    log.info("%d change pixel(s) of patches inside the redlines lie at the edge of the examined "
                             "blocks: examining %d more block(s) and running the pass again", reached.size,
                             int(more.sum()))
                    raise _MoreBlocks(blocks.examined | more)
                screened, watch_counts, readmitted, n_parts = None, None, [], None
                if landcover is not None:  # pseudo-change removal: the crop cycle on mapped cropland
                    with _stage(seconds, "screen"):
                        fraction = class_share_of_polygons(patches, landcover, sp.cropland_codes)
                        seasons = (seasons_at(season_map, patches.geometry, patches.crs, sp.growing_season)
                                   if season_map is not None else None)
                        patches, screened = screen_patches(patches, fraction, sp, seasons)
                        n_parts = 0
                        if sp.keep_barren_parts and len(screened):
                            # rock, sand or concrete cut out of screened fields: patches of their own
                            taken = {*patches["patch_id"], *screened["patch_id"],
                                     *(prev["patch_id"] if prev is not None else ())}
                            parts, screened = barren_parts(screened, ds, blocks.samples_in_rows,
                                                           blocks.block_starts[0], sp.barren_ndvi_max, p.mmu_px,
                                                           previous=prev, taken=taken, in_use=set(patches["patch_id"]))
                            n_parts = len(parts)
                            if n_parts:
                                patches = pd.concat([patches, parts[list(patches.columns)]],
                                                    ignore_index=True)
                                patches = patches.sort_values(["area_m2", "patch_id"], ascending=[False, True],
                                                              kind="stable").reset_index(drop=True)
                                log.info("%d barren part(s) of screened patches kept as patches", n_parts)
                    if watched is not None and len(watched):
                        with _stage(seconds, "watch"):
                            patches, screened, watch_counts, readmitted = apply_watch(
                                patches, screened, watched, afters, p, sp,
                                taken=set(prev["patch_id"]) if prev is not None else (),
                                season_of=(lambda geoms: seasons_at(season_map, geoms, patches.crs,
                                                                    sp.growing_season))
                                if season_map is not None else None)
                        if readmitted:
                            log.info("%d patch(es) screened earlier are still bare %d+ days%s after their first "
                                     "detection: re-admitted", len(readmitted), sp.crop_cycle_days,
                                     f" of the growing season {sp.growing_season}" if sp.growing_season else "")
                result = RedlineResult(
                    seconds=seconds, n_patches=len(patches), n_change_pixels=n_change, n_valid_pixels=n_valid,
                    area_m2=float(patches["area_m2"].sum()) if len(patches) else 0.0,
                    reason=ds.attrs.get("no_data_reason"),
                    by_class={str(k): int(v) for k, v in patches["change_class"].value_counts().items()}
                    if len(patches) else {}, examined_fraction=float(ds.attrs.get("examined_fraction", 1.0)),
                    screened={CROP_CYCLE: len(screened)} if screened is not None else {}, watch=watch_counts,
                    barren_parts=n_parts)
                if result.reason is None and result.n_patches == 0:
                    if within is not None and not ds.attrs.get("examined_blocks"):
                        result.reason = "no redline polygon lies on the scene: nothing examined"
                    else:
                        result.reason = ("no change patch inside the redlines" if zones is not None and n_change
                                         else "no change above the automatic threshold and the minimum mapping unit")
                    if screened is not None and len(screened):
                        result.reason = (f"every change patch ({len(screened)}) is the crop cycle on cropland: "
                                         "screened (screened.gpkg)")
                written: dict[str, Path] = {}
                with _stage(seconds, "vectors"):
                    gpkg, geojson = write_patches(patches, stage / "patches.gpkg", stage / "patches.geojson")
                    written["patches_gpkg"], written["patches_geojson"] = gpkg, geojson
                    if screened is not None:
                        written["screened_gpkg"], written["screened_geojson"] = write_patches(
                            screened, stage / "screened.gpkg", stage / "screened.geojson", layer="screened")
                written.update(rasters.result())
                seconds["rasters"] = round(time.perf_counter() - t_rasters, 3)
                log.info("redline stage rasters: %.2f s (alongside the patches)", seconds["rasters"])
                if quicklooks and len(patches):
                    (stage / "quicklooks").mkdir()
                    with _stage(seconds, "quicklooks"):
                        write_quicklooks(patches, reference, afters[-1], stage, max_patches=max_quicklooks)
                        if readmitted:  # their change happened before this run's before scene
                            _earlier_quicklooks(patches, readmitted, afters[-1], stage, band_map, max_quicklooks)
                    written["quicklooks"] = stage / "quicklooks"
                written["summary"] = _write_summary(stage / "summary.json", result, ds, before_paths, after_paths,
                                                    streamed=spill is not None,
                                                    registration=registration if coregister else None)
                if (out / "quicklooks").exists() and "quicklooks" not in written:
                    # an older run's quicklooks would describe patches this run no longer has
                    (stage / "quicklooks").mkdir(exist_ok=True)
                    written["quicklooks"] = stage / "quicklooks"
                result.paths = publish(written, out)
                if screened is None:  # an older run's screened patches would describe patches of another run
                    for name in ("screened.gpkg", "screened.geojson"):
                        if (out / name).exists():
                            log.info("removing %s of an earlier run (this run screened nothing)", out / name)
                            (out / name).unlink()
            return result

    extra, passes = None, 1
    while True:  # once, unless a restricted pass must examine more blocks
        try:
            return attempt(extra, passes)
        except _MoreBlocks as grown:
            extra, passes = grown.blocks, passes + 1


class _MoreBlocks(Exception):
    """A restricted pass must run again with these blocks examined (bool per block)."""

    def __init__(self, blocks: np.ndarray) -> None:
        super().__init__("more blocks to examine")
        self.blocks = blocks


#: A scratch folder older than this was left by a run that was killed (a run takes minutes).
STALE_SCRATCH_S = 24 * 3600


def _remove_stale_scratch(out: Path) -> None:
    """Remove the scratch folders of streamed runs that were killed (older than
    :data:`STALE_SCRATCH_S`) from ``out``: they can hold gigabytes."""
    if not out.is_dir():
        return
    now = time.time()
    for folder in out.glob(".rsmon-scratch-*.partial"):
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > STALE_SCRATCH_S:
                log.warning("removing %s, left by a streamed run that did not end", folder)
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _streamed(grid: xr.Dataset, stream: bool | None) -> bool:
    if stream is not None:
        return bool(stream)
    text = os.environ.get("RSMON_STREAM_PIXELS", "").strip()
    try:
        limit = int(text) if text else STREAM_PIXELS
    except ValueError:
        raise InputError(f"RSMON_STREAM_PIXELS: expected a whole number of pixels, got {text!r}") from None
    return grid.sizes["y"] * grid.sizes["x"] > limit


def _source_files(ds: xr.Dataset) -> list[str]:
    files = ds.attrs.get("source_files") or ds.attrs.get("source") or []
    files = [files] if isinstance(files, str) else list(files)
    return [f for f in files if Path(f).is_file()]


def _json_float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _write_summary(path: Path, result: RedlineResult, ds: xr.Dataset, before, after, *, streamed: bool,
                   registration: list[dict] | None = None) -> Path:
    body = {
        "before": [os.fspath(p) for p in before], "after": [os.fspath(p) for p in after],
        "before_datetime": ds.attrs.get("before_datetime"), "after_datetime": ds.attrs.get("after_datetime"),
        "sensor": ds.attrs.get("sensor"), "threshold": _json_float(ds.attrs.get("threshold")),
        "threshold_method": ds.attrs.get("threshold_method"),
        "n_patches": result.n_patches, "area_m2": result.area_m2, "by_class": result.by_class,
        "n_change_pixels": result.n_change_pixels, "n_valid_pixels": result.n_valid_pixels,
        "reason": result.reason, "stage_seconds": result.seconds, "streamed": streamed,
        "screened": result.screened or None, "watch": result.watch, "barren_parts": result.barren_parts,
        "examined": {"fraction": result.examined_fraction,
                     **{k: ds.attrs[f"examined_{k}"] for k in ("blocks", "margin", "added", "passes")
                        if f"examined_{k}" in ds.attrs},
                     "of_blocks": ds.attrs.get("n_blocks")} if "examined_blocks" in ds.attrs else "whole scene",
        "coregistration": registration if registration is not None else "off",
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# Validation against a reference change map
# --------------------------------------------------------------------------------------------------

@dataclass
class ChangeValidationResult:
    """Scores of a change raster against a reference mask, and the report files."""

    scores: Any
    scored_on: str = "product grid"
    paths: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        s = self.scores
        return (f"pixels scored {s.n_scored} (excluded {s.n_excluded}; {self.scored_on}): precision {s.precision:.3f}, "
                f"recall {s.recall:.3f}, F1 {s.f1:.3f}, IoU {s.iou:.3f}, kappa {s.kappa:.3f}; objects "
                f"(IoU >= {s.object_iou_min:g}) precision {s.object_precision:.3f}, recall {s.object_recall:.3f}")


def run_change_validation(product: _PathLike | Sequence[_PathLike], reference, out_dir: _PathLike | None = None, *,
                          iou_min: float = 0.5, patches: _PathLike | None = None) -> ChangeValidationResult:
    """Score change rasters against a reference mask (pixel P/R/F1/IoU/kappa, object P/R).

    Parameters
    ----------
    product : path or sequence of paths
        A change raster (``rsmon redline detect``'s ``change.tif``), or several (the tiles of a
        multi-tile job), scored together.
    reference : path or sequence of paths
        A mask :func:`rsmon.validate.change.read_reference_mask` reads: an OSCD ``cm.tif``, a
        0/1/255 raster, a ``change.bmp`` + ``unchanged.bmp`` pair (or their folder). Without a
        georeference (the benchmark sets' masks) it must be on the product's pixel grid (same
        shape). A georeferenced one may be on any grid and CRS: the products are resampled onto
        it (:func:`rsmon.validate.change.masks_to_score`).
    out_dir : path, optional
        Folder for ``change_scores.json`` and ``change_scores.md``.
    patches : path, optional
        A patch table (``patches.gpkg``): score its patches, within the products' data, instead of
        the products' change; the rasters hold every change the pass found, the patches what is left
        after the redline clip, the minimum mapping unit and the crop-cycle screen.

    Raises
    ------
    RsmonError
        Unreadable product, patches or reference (named), grids that cannot be matched, bad values.
    """
    from rsmon.validate.change import change_scores, masks_to_score

    refs = [reference] if isinstance(reference, (str, os.PathLike)) else list(reference)
    products = [product] if isinstance(product, (str, os.PathLike)) else list(product)
    table = None
    if patches is not None:
        if not Path(patches).is_file():
            raise InputError(f"--patches {patches}: no such file")
        table = read_vectors(patches)
        if table.crs is None:
            raise InputError(f"--patches {patches}: the patches have no CRS")
    pred, ref, scored_on = masks_to_score(products, refs[0] if len(refs) == 1 else tuple(refs), patches=table)
    if patches is not None:
        scored_on += f"; the patches of {os.fspath(patches)} within the product's data"
    scores = change_scores(pred, ref, iou_min=iou_min)
    result = ChangeValidationResult(scores=scores, scored_on=scored_on)
    if out_dir is None:
        return result
    out = precheck_output_dir(out_dir)
    names = [os.fspath(p) for p in products]
    body = {"product": names[0] if len(names) == 1 else names, "reference": [os.fspath(r) for r in refs],
            "patches": os.fspath(patches) if patches is not None else None, "scored_on": scored_on,
            **scores.as_dict()}
    with staging(out, ".rsmon-change-") as stage:
        written = {}
        with atomic_output(stage / "change_scores.json") as tmp:
            tmp.write_text(json.dumps(body, indent=2, default=_json_float) + "\n", encoding="utf-8")
        written["scores_json"] = stage / "change_scores.json"
        lines = ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in scores.as_dict().items()]
        with atomic_output(stage / "change_scores.md") as tmp:
            tmp.write_text("# Change map scores\n\n" + "".join(f"- product: `{n}`\n" for n in names)
                           + "".join(f"- reference: `{os.fspath(r)}`\n" for r in refs)
                           + f"- scored on: {scored_on}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
        written["scores_md"] = stage / "change_scores.md"
        result.paths = publish(written, out)
    return result
