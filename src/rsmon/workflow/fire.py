"""The fire jobs: VIIRS L1B granules -> fire points (CSV, GeoJSON, GeoPackage, map, admin counts),
and fire-point validation against a reference (FIRMS CSV or simulator truth).

Glue only: readers (:func:`rsmon.io.viirs.open_viirs_l1b`), the detector
(:func:`rsmon.products.fire.detect_fires`), the straw-burning classification
(:mod:`rsmon.products.straw`), the matcher (:func:`rsmon.validate.fire.match_fires`) and the writers
(:mod:`rsmon.io.fire_output`). Both CLI commands (``rsmon fire detect``, ``rsmon validate --kind
fire``) call these functions.

Failure rules
-------------
* Every input is opened and every computation done before the first byte is written: a bad granule
  (truncated file, mismatched 02/03 pair, missing variable) raises an :class:`~rsmon.errors.RsmonError`
  naming it and leaves the output folder as it was.
* Outputs are written into a hidden staging folder inside ``out_dir`` (each file itself through
  :func:`rsmon.io.atomic.atomic_output`) and renamed into place at the end; on any error the staging
  folder is removed, so a run leaves either all its files or none (existing files under the same
  names are replaced only at the final rename).
* No fire in any granule is a valid answer, not an error: every file is written with zero rows
  (a header-only CSV, an empty GeoJSON FeatureCollection and GeoPackage layer, a map without points).

Without a land-cover raster the straw-burning classification cannot run: every fire gets the
category ``"unclassified"`` (no ``landcover_class``/``cropland_fraction``/``static_source``/
``low_conf_day`` columns), and ``counts_by_admin.csv`` then has one count column ``unclassified``
plus ``n_fires`` (no cropland area or per-1000-ha intensity).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from rsmon.errors import FormatError, InputError, NoDataError, OutputError, RsmonError
from rsmon.io.atomic import atomic_output, check_output_dir
from rsmon.io.landcover import with_landcover_mosaic
from rsmon.io.maps import save_figure
from rsmon.workflow.staging import precheck_output_dir, publish, staging

log = logging.getLogger(__name__)

__all__ = ["FireResult", "FireValidationResult", "UNCLASSIFIED", "read_fire_table", "run_fire_detection",
           "run_fire_validation"]

#: Category of every fire when no land-cover raster is given.
UNCLASSIFIED = "unclassified"

_PathLike = str | os.PathLike


@dataclass
class FireResult:
    """What a fire-detection run found and wrote."""

    fires: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)
    granules: list[str] = field(default_factory=list)
    counts: pd.DataFrame | None = None

    @property
    def n_fires(self) -> int:
        return len(self.fires)

    def summary(self) -> str:
        """One line: fires per category, or the zero-detection statement."""
        n_gran = len(self.granules)
        gran = f"{n_gran} granule{'s' if n_gran != 1 else ''}"
        if not self.n_fires:
            return (f"0 fires in {gran}: no fire detected; files written with zero rows "
                    "(a valid result, not an error)")
        cats = self.fires["category"].astype(str).value_counts()
        parts = ", ".join(f"{k}={v}" for k, v in cats.items())
        return f"{self.n_fires} fires in {gran} ({parts})"


@dataclass
class FireValidationResult:
    """What a fire validation computed and wrote."""

    stats: dict
    pairs: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        st = self.stats

        def fmt(v):
            return "nan" if v is None else f"{v:.3f}"
        return (f"n_detections={st['n_detections']}, n_reference={st['n_reference']}, "
                f"n_matched={st['n_matched']}, precision={fmt(st['precision'])}, "
                f"recall={fmt(st['recall'])}, f1={fmt(st['f1'])}")


# --------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------

def _as_list(value, name: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    out = list(value)
    return out


def _named(exc: RsmonError, name: str) -> RsmonError:
    """The same error class with ``name`` in front of the message, unless it already names it."""
    msg = str(exc)
    if name in msg:
        return exc
    try:
        return type(exc)(f"{name}: {msg}")
    except Exception:  # pragma: no cover - exotic subclass signature
        return exc


def _read_history(history) -> pd.DataFrame | None:
    """``history``: None, a DataFrame, or FIRMS CSV paths (read with read_firms)."""
    if history is None or isinstance(history, pd.DataFrame):
        return history
    from rsmon.io.stations import read_firms

    frames = []
    for path in _as_list(history, "history"):
        try:
            frames.append(read_firms(path))
        except NoDataError:
            log.info("history %s: no fire rows", path)
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)


def _empty_fires() -> pd.DataFrame:
    from rsmon.products.fire import FIRE_COLUMNS

    return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES.get(c, object)) for c in FIRE_COLUMNS})


_EMPTY_DTYPES = {"line": np.int64, "sample": np.int64, "latitude": float, "longitude": float,
                 "bright_ti4": float, "bright_ti5": float, "frp": float, "scan": float, "track": float,
                 "bg_n": np.int64, "bg_window": np.int64, "bg_mean_i4": float, "bg_mad_i4": float,
                 "bg_mean_dt": float, "bg_mad_dt": float, "saturated": bool, "folded": bool}


def _classify(fires: pd.DataFrame, landcover, history, straw_params) -> pd.DataFrame:
    from rsmon.products import straw

    if landcover is None:
        out = fires.copy()
        out["category"] = pd.Series([UNCLASSIFIED] * len(out), index=out.index, dtype=object)
        return out
    if not len(fires):
        out = fires.copy()
        out["landcover_class"] = pd.Series(dtype=np.int32)
        out["cropland_fraction"] = pd.Series(dtype=float)
        out["static_source"] = pd.Series(dtype=bool)
        out["low_conf_day"] = pd.Series(dtype=bool)
        out["category"] = pd.Series(dtype=object)
        return out
    return straw.classify(fires, landcover, history=history, params=straw_params)


def _counts(fires: pd.DataFrame, admin_gdf, level_name: str, landcover, straw_params) -> pd.DataFrame:
    from rsmon.products import straw

    area = None
    if landcover is not None:
        classes = (straw_params or straw.StrawParams()).cropland_classes
        try:
            area = straw.cropland_area_by_admin(admin_gdf, landcover, classes, level_name=level_name)
        except NoDataError as exc:
            # a land-cover tile that misses every unit: counts still stand, per-area rates do not
            log.warning("%s; fires per 1000 ha of cropland not computed", exc)
            area = None
    if landcover is None:
        cats = [UNCLASSIFIED]
        work = fires.copy()
        # counts_by_admin knows the classify() categories only: count under one of them, rename
        work["category"] = "other_fire"
    else:
        cats = list(straw.CATEGORIES)
        work = fires
    columns = [level_name, "date", *cats, "n_fires"]
    if area is not None:
        columns += ["cropland_area_ha", "straw_per_1000ha", "fires_per_1000ha"]
    if not len(work):
        return pd.DataFrame(columns=columns)
    counts = straw.counts_by_admin(work, admin_gdf, level_name=level_name, cropland_area_ha=area)
    if landcover is None:
        counts = counts.rename(columns={"other_fire": UNCLASSIFIED})
    return counts[[c for c in columns if c in counts.columns]]


@with_landcover_mosaic
def run_fire_detection(img_paths: Sequence[_PathLike] | _PathLike, out_dir: _PathLike, *,
                       geo_paths: Sequence[_PathLike] | None = None, landcover: _PathLike | None = None,
                       admin=None, admin_level_name: str = "name", history=None, params=None,
                       straw_params=None, map_png: bool = True) -> FireResult:
    """Detect active fires in VIIRS L1B I-band granules and write the fire-point products.

    Parameters
    ----------
    img_paths : path or sequence of paths
        ``VNP02IMG``/``VJ102IMG``/``VJ202IMG`` files, one per granule.
    out_dir : path
        Output folder (created if needed).
    geo_paths : sequence of paths, optional
        The matching ``03IMG`` files, in the same order (default: found beside each 02 file).
    landcover : path or sequence of paths, optional
        Categorical land-cover raster (e.g. ESA WorldCover), or several tiles on one grid, or a
        folder of them (mosaicked, :func:`rsmon.io.landcover.landcover_mosaic`), for the
        straw-burning categories (:func:`rsmon.products.straw.classify`). Without it every fire is
        ``"unclassified"``.
    admin : path or GeoDataFrame, optional
        Administrative polygons; writes ``counts_by_admin.csv`` (with cropland area and the
        per-1000-ha intensities when ``landcover`` is given) and draws their outlines on the map.
    admin_level_name : str
        Column of ``admin`` naming the units (default ``name``).
    history : DataFrame or FIRMS CSV path(s), optional
        Earlier detections for the static-source persistence rule (needs ``landcover``).
    params : FireParams, optional
        Detector thresholds.
    straw_params : StrawParams, optional
        Classification rules (also the cropland classes of the area per unit).
    map_png : bool
        Write ``fires_map.png``.

    Returns
    -------
    FireResult
        ``fires`` (one row per fire pixel: detector columns, ``granule_id``, classification
        columns), ``paths`` (name -> file), ``granules``, ``counts``.

    Output files (in ``out_dir``)
    -----------------------------
    ``fires.csv`` (exactly the 14 FIRMS VIIRS columns), ``fires_rsmon.csv`` (FIRMS columns then all
    rsmon columns), ``fires.geojson``, ``fires.gpkg`` (layer ``fires``), ``counts_by_admin.csv``
    (with ``admin``), ``fires_map.png`` (with ``map_png``).

    Raises
    ------
    InputError
        No granule, ``geo_paths`` of another length, bad parameters, ``history`` without
        ``landcover``.
    FormatError, UnsupportedFormatError, NoDataError
        A granule (named in the message), the land cover or the admin file cannot be read.
    OutputError
        ``out_dir`` cannot be created or written.
    """
    from rsmon.io.viirs import open_viirs_l1b
    from rsmon.products.fire import detect_fires

    imgs = _as_list(img_paths, "img_paths")
    if not imgs:
        raise InputError("fire detect: no granule (02IMG file) given")
    geos = _as_list(geo_paths, "geo_paths")
    if geos and len(geos) != len(imgs):
        raise InputError(f"fire detect: {len(imgs)} 02IMG file(s) but {len(geos)} --geo file(s); "
                         "give one 03IMG file per 02IMG file, in the same order")
    if history is not None and landcover is None:
        raise InputError("fire detect: --history is used by the straw-burning classification; give --landcover too")
    out = precheck_output_dir(out_dir)  # fail before any work, create nothing yet
    if landcover is not None and not Path(landcover).is_file():
        raise InputError(f"--landcover {landcover}: no such file")
    admin_gdf = None
    if admin is not None:
        if isinstance(admin, (str, os.PathLike)):
            from rsmon.io.maps import read_outlines

            if not Path(admin).is_file():
                raise InputError(f"--admin {admin}: no such file")
            admin_gdf = read_outlines(admin)
        else:
            admin_gdf = admin
        if admin_level_name not in admin_gdf.columns:
            raise InputError(f"--admin {admin if not hasattr(admin, 'columns') else 'polygons'}: no column "
                             f"{admin_level_name!r} (columns: "
                             f"{', '.join(str(c) for c in admin_gdf.columns if c != 'geometry')}); "
                             "choose one with --admin-level-name")
    hist = _read_history(history)

    # 1. open + detect every granule (nothing written yet)
    frames, granules = [], []
    for i, img in enumerate(imgs):
        geo = geos[i] if geos else None
        name = str(img)
        try:
            ds = open_viirs_l1b(img, geo)
            try:
                df = detect_fires(ds, params)
            finally:
                ds.close()
        except RsmonError as exc:
            raise _named(exc, Path(name).name) from None
        gid = str(ds.attrs.get("granule_id") or Path(name).name)
        df["granule_id"] = gid
        granules.append(gid)
        log.info("%s: %d fire pixels", gid, len(df))
        frames.append(df)
    nonempty = [f for f in frames if len(f)]
    if nonempty:
        fires = pd.concat(nonempty, ignore_index=True)
    else:
        fires = _empty_fires()
        fires["granule_id"] = pd.Series(dtype=object)

    # 2. classify + counts
    fires = _classify(fires, landcover, hist, straw_params)
    counts = (_counts(fires, admin_gdf, admin_level_name, landcover, straw_params)
              if admin_gdf is not None else None)

    # 3. write everything into a staging folder, then move into place
    result = FireResult(fires=fires, granules=granules, counts=counts)
    title = f"VIIRS active fires: {len(fires)} in {len(granules)} granule(s)"
    with staging(out, ".rsmon-fire-") as stage:  # creates out_dir now (removed again if the run fails and it is empty)
        from rsmon.io.fire_output import (write_fire_geojson, write_fire_gpkg, write_fire_map_png,
                                          write_firms_csv)

        written = {
            "fires_csv": write_firms_csv(stage / "fires.csv", fires),
            "fires_rsmon_csv": write_firms_csv(stage / "fires_rsmon.csv", fires, extra=True),
            "geojson": write_fire_geojson(stage / "fires.geojson", fires),
            "gpkg": write_fire_gpkg(stage / "fires.gpkg", fires),
        }
        if counts is not None:
            written["counts_by_admin"] = _write_csv(stage / "counts_by_admin.csv", counts)
        if map_png:
            written["map_png"] = write_fire_map_png(stage / "fires_map.png", fires, admin_gdf, title=title)
        result.paths = publish(written, out)
    return result


# --------------------------------------------------------------------------------------------------
# Staged writing
# --------------------------------------------------------------------------------------------------

def _write_csv(path: Path, table: pd.DataFrame) -> Path:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8", date_format="%Y-%m-%d")
    return path


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

def _empty_table(path: Path) -> pd.DataFrame:
    return pd.DataFrame({"latitude": pd.Series(dtype=float), "longitude": pd.Series(dtype=float),
                         "time": pd.Series(dtype="datetime64[ns, UTC]"), "frp": pd.Series(dtype=float),
                         "source": pd.Series(dtype=object)})


def read_fire_table(path: _PathLike, role: str = "fire table") -> pd.DataFrame:
    """Read fire points: a FIRMS-style CSV (rsmon ``fires.csv`` or a FIRMS download) or a simulator
    ``*.truth.csv`` (columns ``latitude, longitude, ..., frp_mw``).

    Simulator truth has no time column: its time is the granule start in its file name
    (``VJ102IMG.A2023161.0524...truth.csv``), or a ``time`` column when present. A header-only
    FIRMS CSV (e.g. rsmon's output for a granule without fires) is an empty table, not an error.

    Raises
    ------
    FormatError
        Missing, empty or unreadable file, missing columns, truth without a time.
    """
    from rsmon.io.stations import read_firms
    from rsmon.io.stations_common import source_file

    p = source_file(path)
    try:
        with open(p, encoding="utf-8-sig", errors="replace") as fh:
            header = [c.strip() for c in fh.readline().strip().split(",")]
    except OSError as exc:
        raise FormatError(f"{role} {p}: cannot read ({exc.strerror or exc})") from None
    if "frp_mw" in header and "acq_date" not in header:
        return _read_truth(p, role)
    try:
        table = read_firms(p)
    except NoDataError:
        log.info("%s %s: no fire rows", role, p)
        return _empty_table(p)
    return table


def _read_truth(p: Path, role: str) -> pd.DataFrame:
    from rsmon.io.viirs import parse_viirs_filename

    try:
        df = pd.read_csv(p)
    except Exception as exc:  # pandas raises several classes
        raise FormatError(f"{role} {p}: cannot read as CSV ({exc})") from None
    missing = [c for c in ("latitude", "longitude", "frp_mw") if c not in df.columns]
    if missing:
        raise FormatError(f"{role} {p}: missing column(s) {', '.join(missing)}")
    if "time" in df.columns:
        try:
            df["time"] = pd.to_datetime(df["time"], utc=True)
        except (ValueError, TypeError) as exc:
            raise FormatError(f"{role} {p}: column 'time' does not parse ({exc})") from None
    else:
        parsed = parse_viirs_filename(p.name)
        if parsed is None:
            raise FormatError(f"{role} {p}: simulator truth without a 'time' column needs the granule "
                              "name (e.g. VJ102IMG.A2023161.0524.021.2023161123456.truth.csv) for its time")
        df["time"] = pd.Timestamp(parsed.start)
    df["source"] = str(p)
    return df


def _read_many(paths, role: str) -> pd.DataFrame:
    frames = [read_fire_table(p, role) for p in _as_list(paths, role)]
    if not frames:
        raise InputError(f"{role}: no file given")
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True)


def _json_value(v):
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def run_fire_validation(products, references, out_dir: _PathLike, max_distance_m: float = 375.0,
                        max_dt_min: float = 20.0) -> FireValidationResult:
    """Match fire detections to reference fires; write ``matches.csv``, ``stats.json`` and
    ``recall_vs_frp.png``.

    Parameters
    ----------
    products : path or paths
        Detections: rsmon ``fires.csv`` or any FIRMS-style CSV.
    references : path or paths
        Reference fires: a FIRMS CSV (:func:`rsmon.io.stations.read_firms`) or simulator
        ``*.truth.csv`` (FRP in ``frp_mw``).
    out_dir : path
        Output folder.
    max_distance_m, max_dt_min : float
        Match limits (:func:`rsmon.validate.fire.match_fires`).

    Returns
    -------
    FireValidationResult
        ``stats``: ``precision``, ``recall``, ``f1`` (None when undefined), ``n_detections``,
        ``n_reference``, ``n_matched``, ``max_distance_m``, ``max_dt_min``, ``reference_frp_column``,
        ``recall_by_frp`` (list of ``{frp_min_mw, frp_max_mw, n_reference, n_matched, recall}``;
        ``frp_max_mw`` None for the open class), ``products``, ``references``.

    Raises
    ------
    NoDataError
        Neither detections nor reference fires (nothing is written).
    FormatError, InputError, OutputError
        Unreadable input, bad limits, unwritable folder.
    """
    from rsmon.validate.fire import match_fires

    out = precheck_output_dir(out_dir)
    det = _read_many(products, "--product")
    ref = _read_many(references, "--stations")
    if not len(det) and not len(ref):
        raise NoDataError("validate fire: no detection in --product and no reference fire in --stations; "
                          "nothing to compare")
    pairs, summary = match_fires(det, ref, max_distance_m=max_distance_m, max_dt_min=max_dt_min)
    by_frp = summary.pop("recall_by_frp")
    stats = {k: _json_value(v) for k, v in summary.items()}
    stats["recall_by_frp"] = ([] if by_frp is None else
                              [{k: _json_value(v) for k, v in row.items()} for row in by_frp.to_dict("records")])
    stats["products"] = [str(p) for p in _as_list(products, "")]
    stats["references"] = [str(p) for p in _as_list(references, "")]

    matches = pairs.copy()
    if len(matches):
        d = det.loc[matches["detection_index"]]
        r = ref.loc[matches["reference_index"]]
        matches["det_latitude"] = d["latitude"].to_numpy(float)
        matches["det_longitude"] = d["longitude"].to_numpy(float)
        matches["det_frp_mw"] = pd.to_numeric(d["frp"], errors="coerce").to_numpy(float) if "frp" in d else np.nan
        matches["ref_latitude"] = r["latitude"].to_numpy(float)
        matches["ref_longitude"] = r["longitude"].to_numpy(float)

    with staging(out, ".rsmon-fire-") as stage:
        written = {"matches": _write_csv(stage / "matches.csv", matches)}
        with atomic_output(stage / "stats.json") as tmp:
            tmp.write_text(json.dumps(stats, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        written["stats"] = stage / "stats.json"
        written["recall_plot"] = _plot_recall(stage / "recall_vs_frp.png", by_frp, stats)
        paths = publish(written, out)
    return FireValidationResult(stats=stats, pairs=pairs, paths=paths)


def _plot_recall(path: Path, by_frp: pd.DataFrame | None, stats: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0), dpi=110)
    if by_frp is not None and len(by_frp):
        labels = [f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">={lo:g}"
                  for lo, hi in zip(by_frp["frp_min_mw"], by_frp["frp_max_mw"])]
        recall = by_frp["recall"].to_numpy(float)
        x = np.arange(len(labels))
        ax.bar(x, np.nan_to_num(recall), color="#d7301f")
        for xi, (r, n) in enumerate(zip(recall, by_frp["n_reference"])):
            ax.text(xi, (0 if not np.isfinite(r) else r) + 0.02, f"n={n}", ha="center", fontsize=8)
        ax.set_xticks(x, labels)
    else:
        ax.text(0.5, 0.5, "reference has no FRP column", ha="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("reference FRP (MW)")
    ax.set_ylabel("recall (fraction of reference fires detected)")
    p, r = stats.get("precision"), stats.get("recall")
    ax.set_title(f"precision {p if p is None else round(p, 3)}, recall {r if r is None else round(r, 3)}, "
                 f"n_ref={stats['n_reference']}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
