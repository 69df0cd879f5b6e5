"""Validation report: matchup table, statistics JSON, figures and a self-contained HTML page.

:func:`write_report` renders everything in memory first (figures as PNG bytes through matplotlib's
object-oriented API with the Agg renderer -- no pyplot state, safe in threads and servers), then
writes each file through :func:`~rsmon.io.atomic.atomic_output`, so a failure never leaves a
partial file under a final name.

Files (in ``out_dir``)
----------------------
``matchups.csv``     the matchup table (``rsmon.validate`` contract), times ISO 8601 UTC (``...Z``)
``stations.csv``     per-station statistics (:func:`~rsmon.validate.stats.stats_by`), when ``by_station``
``stats.json``       :meth:`ValidationStats.to_dict` + ``units`` + ``meta`` (command, inputs, parameters,
                     ``rsmon_version``)
``scatter.png``      satellite against ground: hexbin density above 500 pairs, points below; 1:1 line,
                     expected-error envelope, OLS and RMA fits, a box with N and the key metrics
``timeseries.png``   ground and satellite per station (up to 12 panels, the rest as one mean panel)
``map.png``          stations coloured by mean bias (by Pearson R when bias statistics are off)
``report.html``      title, run metadata, statistics, per-station table and the three figures
                     (embedded as base64 PNG, each linked to its file)
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import io
import json
import logging
import math
import os
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

import rsmon
from rsmon.errors import InputError, NoDataError
from rsmon.io.atomic import atomic_output, check_output_dir
from rsmon.validate.stats import ExpectedError, ValidationStats, stats_by

log = logging.getLogger(__name__)

__all__ = ["write_report", "REPORT_FILES"]

#: File names by key of the dict :func:`write_report` returns.
REPORT_FILES = {
    "matchups": "matchups.csv",
    "stations": "stations.csv",
    "stats": "stats.json",
    "scatter": "scatter.png",
    "timeseries": "timeseries.png",
    "map": "map.png",
    "report": "report.html",
}

#: Columns of the matchup table the report needs (``rsmon.validate`` contract).
REQUIRED_COLUMNS = ("station_id", "lon", "lat", "time", "sat_mean", "ground_mean")

#: Above this many pairs the scatter plot is a hexbin density (points overlap into a blot).
HEXBIN_MIN_PAIRS = 500

#: At most this many time-series panels; stations beyond are summarised in the last one.
MAX_STATION_PANELS = 12

#: At most this many station names are written on the map.
MAX_MAP_LABELS = 15

_DPI = 110
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_GROUND_COLOUR = "#1f77b4"
_SAT_COLOUR = "#d62728"


def write_report(
    out_dir: str | os.PathLike,
    matchups: pd.DataFrame,
    stats: ValidationStats,
    *,
    kind: str,
    title: str,
    meta: dict,
    ee: ExpectedError | None = None,
    by_station: bool = True,
    outlines=None,
    units_sat: str = "",
    units_ground: str = "",
) -> dict[str, Path]:
    """Write the validation report of ``matchups`` (with their ``stats``) into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder, created when missing.
    matchups : DataFrame
        Matchup table (``rsmon.validate`` contract); needs ``station_id``, ``lon``, ``lat``,
        ``time``, ``sat_mean``, ``ground_mean`` (``station_name`` used when present).
    stats : ValidationStats
        :func:`~rsmon.validate.stats.compute_stats` of ``sat_mean`` against ``ground_mean`` of this
        table; its ``n`` must equal the number of pairs with both values finite.
    kind : str
        Product kind, used in axis labels (``aod``, ``no2``, ``xch4``, ...).
    title : str
        Report title (HTML heading, figure titles).
    meta : dict or None
        Run metadata stored in ``stats.json`` and shown in the HTML: ``command``, ``inputs``,
        ``parameters``, anything else JSON-serialisable; ``rsmon_version`` is added.
    ee : ExpectedError, optional
        Envelope drawn on the scatter plot; defaults to the one the statistics used (``stats.ee``)
        and must equal it when they used one (when they did not, it is drawn only, with no %within EE).
        Not drawn when bias statistics are off.
    by_station : bool
        Write ``stations.csv`` and the per-station table of the HTML page.
    outlines : GeoDataFrame, optional
        Administrative boundaries (EPSG:4326, e.g. from :func:`rsmon.io.maps.read_outlines`) for the map.
    units_sat, units_ground : str
        Units of the satellite and ground values (axis labels; the time series gets two y axes when
        they differ or when bias statistics are off).

    Returns
    -------
    dict of str to Path
        Paths by key of :data:`REPORT_FILES` (``stations`` only when ``by_station``).

    Raises
    ------
    NoDataError
        No matchup has both values finite; nothing is written.
    InputError
        A required column is missing, or ``stats``/``ee`` do not belong to this table.
    OutputError
        ``out_dir`` cannot be created or written (raised before anything is rendered).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in matchups.columns]
    if missing:
        raise InputError(f"matchup table: missing column(s) {', '.join(missing)} "
                         f"(expected {', '.join(REQUIRED_COLUMNS)})")
    valid = _valid_pairs(matchups)
    if valid.empty:
        raise NoDataError(f"no matchups: none of the {len(matchups)} rows has both a satellite and a ground value; "
                          "no report written")
    if stats.n != len(valid):
        raise InputError(f"stats: computed on {stats.n} pairs but the matchup table has {len(valid)} valid pairs")
    if ee is None:
        ee = stats.ee
    elif stats.ee is not None and ee != stats.ee:
        raise InputError(f"ee: {ee} differs from the envelope the statistics used ({stats.ee})")
    out_dir = check_output_dir(out_dir)

    meta = dict(meta or {})
    meta.setdefault("rsmon_version", rsmon.__version__)
    station_table = stats_by(valid, "station_id", min_n=1, kind=stats.kind, ee=stats.ee,
                             bias_stats=stats.bias_stats, n_boot=0)
    # no intervals per station (n_boot=0) and nothing dropped (valid pairs only): leave those columns out
    station_table = station_table.drop(columns=[c for c in station_table.columns if "_ci_" in c or c == "n_dropped"])
    labels = _Labels(kind=kind, units_sat=units_sat, units_ground=units_ground)

    pngs = {
        "scatter": _png(_scatter_figure(valid, stats, ee if stats.bias_stats else None, labels, title)),
        "timeseries": _png(_timeseries_figure(valid, stats, labels, title)),
        "map": _png(_map_figure(station_table, stats, labels, title, outlines)),
    }
    payload = {**stats.to_dict(), "units": {"sat": units_sat, "ground": units_ground}, "meta": meta}
    stats_text = json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"
    page = _html_page(title, meta, stats, station_table if by_station else None, pngs, labels, valid)

    paths = {key: out_dir / name for key, name in REPORT_FILES.items()}
    if not by_station:
        del paths["stations"]
    _write_text(paths["matchups"], _csv_text(matchups))
    if by_station:
        _write_text(paths["stations"], _csv_text(station_table))
    for key, data in pngs.items():
        with atomic_output(paths[key]) as tmp:
            tmp.write_bytes(data)
    _write_text(paths["stats"], stats_text)
    _write_text(paths["report"], page)
    log.info("validation report: %d matchups, %d files in %s", stats.n, len(paths), out_dir)
    return paths


# --------------------------------------------------------------------------------------------------
# tables and text
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Labels:
    kind: str
    units_sat: str
    units_ground: str

    def sat(self) -> str:
        return f"satellite {self.kind}" + (f" ({self.units_sat})" if self.units_sat else "")

    def ground(self) -> str:
        return f"ground {self.kind}" + (f" ({self.units_ground})" if self.units_ground else "")


def _valid_pairs(matchups: pd.DataFrame) -> pd.DataFrame:
    """Rows with both values finite, ``time`` as UTC timestamps."""
    sat = pd.to_numeric(matchups["sat_mean"], errors="coerce").to_numpy(dtype=np.float64)
    ground = pd.to_numeric(matchups["ground_mean"], errors="coerce").to_numpy(dtype=np.float64)
    valid = matchups.loc[np.isfinite(sat) & np.isfinite(ground)].copy()
    valid["time"] = pd.to_datetime(valid["time"], utc=True)
    return valid


def _csv_text(table: pd.DataFrame) -> str:
    """CSV with datetime columns as ISO 8601 UTC (naive times are taken as UTC)."""
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = pd.to_datetime(out[col], utc=True).dt.strftime(_TIME_FORMAT)
    return out.to_csv(index=False, lineterminator="\n")


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_safe(obj: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, numpy -> Python, paths/times -> strings."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in (sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj)]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, datetime):
        stamp = pd.Timestamp(obj)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime(_TIME_FORMAT)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _json_safe(dataclasses.asdict(obj))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _json_safe(to_dict())
    return str(obj)


def _fmt(value: Any, digits: int = 4) -> str:
    """A number for people: ``–`` for NaN/None, ``digits`` significant digits otherwise."""
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100.0 * value:.1f} %"


# Families tried, in order, for text the default font cannot draw (CNEMC station names are Chinese).
_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
                 "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "AR PL UMing CN")


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[frozenset[int], str, str | None]:
    """(code points of the default font, its family, an installed CJK family or None)."""
    from matplotlib import font_manager, rcParams
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"]))
    default = FT2Font(path)
    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = next((fam for fam in _CJK_FAMILIES if fam in installed), None)
    return frozenset(default.get_charmap()), default.family_name, cjk


def _text(text: str, fallback: str | None = None) -> tuple[str, dict]:
    """Text for a figure and the keyword arguments to draw it without missing glyphs.

    Text the default font covers is returned as is. Otherwise an installed CJK font is added as a
    fallback family; without one, ``fallback`` (e.g. the station id) replaces the text, or the
    characters that cannot be drawn are dropped (they would show as empty boxes).
    """
    charmap, family, cjk = _fonts()
    if all(ord(ch) in charmap or ch.isspace() for ch in text):
        return text, {}
    if cjk is not None:
        return text, {"fontfamily": [family, cjk]}
    if fallback is not None:
        return fallback, {}
    return " ".join("".join(ch for ch in text if ord(ch) in charmap or ch.isspace()).split()), {}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------

def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    fig.clear()  # not registered with pyplot: clearing frees the artists, no global state to close
    return buf.getvalue()


def _padded_range(*arrays: np.ndarray, start_at_zero: bool = False) -> tuple[float, float]:
    values = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
    lo, hi = float(values.min()), float(values.max())
    if start_at_zero and lo >= 0 and lo < 0.25 * hi:
        lo = 0.0
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - (0.03 * span if lo != 0 else 0.0), hi + 0.04 * span


def _scatter_text(stats: ValidationStats) -> str:
    rows = [("N", _fmt(stats.n)), ("R", _fmt(stats.r, 3))]
    if stats.bias_stats:
        rows += [("RMSE", _fmt(stats.rmse, 3)), ("MB", _fmt(stats.mb, 3))]
        if stats.ee is not None:
            rows.append(("within EE", _pct(stats.within_ee)))
        else:
            rows.append(("NMB", _pct(stats.nmb)))
    else:
        rows += [("rho", _fmt(stats.spearman, 3)), ("OLS slope", _fmt(stats.slope_ols, 3)),
                 ("RMA slope", _fmt(stats.slope_rma, 3))]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}} = {value}" for name, value in rows)


def _scatter_figure(valid: pd.DataFrame, stats: ValidationStats, ee: ExpectedError | None, labels: _Labels,
                    title: str):
    x = valid["ground_mean"].to_numpy(dtype=np.float64)
    y = valid["sat_mean"].to_numpy(dtype=np.float64)
    fig = _new_figure(6.6, 6.0)
    ax = fig.add_subplot()
    same_quantity = stats.bias_stats
    if same_quantity:
        lo, hi = _padded_range(x, y, start_at_zero=True)
        xlim = ylim = (lo, hi)
    else:
        xlim, ylim = _padded_range(x, start_at_zero=True), _padded_range(y, start_at_zero=True)
    if len(x) > HEXBIN_MIN_PAIRS:
        hb = ax.hexbin(x, y, gridsize=50, extent=(*xlim, *ylim), mincnt=1, bins="log", cmap="viridis",
                       linewidths=0.2)
        fig.colorbar(hb, ax=ax, shrink=0.8, label="matchups per cell")
    else:
        ax.scatter(x, y, s=14, color="0.25", alpha=0.6, edgecolors="none", label=f"matchups (N = {len(x)})")
    line_x = np.linspace(xlim[0], xlim[1], 200)
    if same_quantity:
        ax.plot(line_x, line_x, color="black", lw=1.0, ls="--", label="1:1")
        if ee is not None:
            half = ee.envelope(line_x)
            ax.plot(line_x, line_x + half, color="0.35", lw=0.9, ls=":",
                    label=f"EE ±({ee.a:g} + {ee.b:g}·ground)")
            ax.plot(line_x, line_x - half, color="0.35", lw=0.9, ls=":")
    if math.isfinite(stats.slope_ols):
        ax.plot(line_x, stats.intercept_ols + stats.slope_ols * line_x, color=_SAT_COLOUR, lw=1.4,
                label=f"OLS y = {stats.slope_ols:.3g}x {_signed(stats.intercept_ols)}")
    if math.isfinite(stats.slope_rma):
        ax.plot(line_x, stats.intercept_rma + stats.slope_rma * line_x, color="#ff7f0e", lw=1.4,
                label=f"RMA y = {stats.slope_rma:.3g}x {_signed(stats.intercept_rma)}")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    if same_quantity:
        ax.set_aspect("equal", adjustable="box")
    ax.text(0.03, 0.97, _scatter_text(stats), transform=ax.transAxes, va="top", ha="left", family="monospace",
            fontsize=9, bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "0.6", "alpha": 0.9})
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    text, font = _text(labels.ground())
    ax.set_xlabel(text, **font)
    text, font = _text(labels.sat())
    ax.set_ylabel(text, **font)
    ax.grid(True, lw=0.3, color="0.85")
    text, font = _text(title)
    ax.set_title(text, fontsize=11, **font)
    fig.tight_layout()
    return fig


def _signed(value: float) -> str:
    return f"- {abs(value):.3g}" if value < 0 else f"+ {value:.3g}"


def _station_label(frame: pd.DataFrame, station_id: Any) -> tuple[str, dict]:
    """``name (id)`` and its font keywords for a figure; the id alone when the name is missing or undrawable."""
    sid = str(station_id)
    name = ""
    if "station_name" in frame.columns and not frame.empty:
        first = frame["station_name"].iloc[0]
        name = "" if first is None or (isinstance(first, float) and math.isnan(first)) else str(first)
    if not name or name == sid:
        return sid, {}
    text, font = _text(name, fallback="")
    return (f"{text} ({sid})", font) if text else (sid, {})


def _timeseries_figure(valid: pd.DataFrame, stats: ValidationStats, labels: _Labels, title: str):
    import matplotlib.dates as mdates
    from matplotlib.lines import Line2D

    data = valid.assign(time=valid["time"].dt.tz_convert("UTC").dt.tz_localize(None))
    counts = data.groupby("station_id").size()
    order = sorted(counts.index, key=lambda sid: (-int(counts[sid]), str(sid)))
    if len(order) > MAX_STATION_PANELS:
        shown, rest = order[: MAX_STATION_PANELS - 1], order[MAX_STATION_PANELS - 1:]
    else:
        shown, rest = order, []
    panels = []
    for sid in shown:
        frame = data[data["station_id"] == sid].sort_values("time")
        label, font = _station_label(frame, sid)
        panels.append((f"{label}, N = {len(frame)}", font, frame))
    if rest:
        others = data[data["station_id"].isin(rest)]
        daily = (others.assign(time=others["time"].dt.floor("D")).groupby("time")[["ground_mean", "sat_mean"]]
                 .mean().reset_index())
        panels.append((f"other {len(rest)} stations (daily mean), N = {len(others)}", {}, daily))

    twin = (labels.units_sat != labels.units_ground) or not stats.bias_stats
    ncols = 1 if len(panels) == 1 else 2 if len(panels) <= 4 else 3
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.6 * ncols, 2.3 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (label, font, frame) in zip(axes.flat, panels):
        marker_size = 2.5 if len(frame) <= 150 else 0.0  # long series: markers would hide the lines
        ax.plot(frame["time"], frame["ground_mean"], "-o", color=_GROUND_COLOUR, lw=0.8, ms=marker_size)
        sat_ax = ax.twinx() if twin else ax
        sat_ax.plot(frame["time"], frame["sat_mean"], "-s", color=_SAT_COLOUR, lw=0.8, ms=marker_size, alpha=0.85)
        if twin:
            ax.tick_params(axis="y", colors=_GROUND_COLOUR, labelsize=8)
            sat_ax.tick_params(axis="y", colors=_SAT_COLOUR, labelsize=8)
        else:
            ax.tick_params(axis="y", labelsize=8)
        ax.set_title(label, fontsize=9, **font)
        ax.grid(True, lw=0.3, color="0.85")
        locator = mdates.AutoDateLocator()  # one per axis: a locator tracks its axis
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.tick_params(axis="x", labelsize=8)
    handles = [Line2D([], [], color=_GROUND_COLOUR, marker="o", ms=3, lw=0.8,
                      label=labels.ground() + (" – left axis" if twin else "")),
               Line2D([], [], color=_SAT_COLOUR, marker="s", ms=3, lw=0.8,
                      label=labels.sat() + (" – right axis" if twin else ""))]
    text, font = _text(title)
    fig.suptitle(f"{text}: time series (UTC)", fontsize=11, **font)
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1.0 - 0.3 / height))
    fig.tight_layout(rect=(0, 0, 1, 1.0 - 0.55 / height))
    return fig


def _map_figure(station_table: pd.DataFrame, stats: ValidationStats, labels: _Labels, title: str, outlines):
    value_col = "mb" if stats.bias_stats else "r"
    located = np.isfinite(station_table["lon"].astype(float)) & np.isfinite(station_table["lat"].astype(float))
    table = station_table[located]
    lon = table["lon"].to_numpy(dtype=np.float64)
    lat = table["lat"].to_numpy(dtype=np.float64)
    value = table[value_col].to_numpy(dtype=np.float64)
    fig = _new_figure(7.2, 6.2)
    ax = fig.add_subplot()
    if lon.size == 0:
        ax.text(0.5, 0.5, "no station coordinates", transform=ax.transAxes, ha="center", va="center")
        text, font = _text(title)
        ax.set_title(text, fontsize=11, **font)
        return fig
    pad = max(0.5, 0.15 * max(np.ptp(lon), np.ptp(lat)))
    west, east, south, north = lon.min() - pad, lon.max() + pad, lat.min() - pad, lat.max() + pad
    if outlines is not None:
        outlines.boundary.plot(ax=ax, color="0.35", linewidth=0.5, zorder=1)
    finite = np.isfinite(value)
    if stats.bias_stats:
        vmax = float(np.max(np.abs(value[finite]))) if finite.any() else 1.0
        vmax = vmax if vmax > 0 else 1.0
        vmin = -vmax
        cbar_label = "mean bias, satellite − ground" + (f" ({labels.units_sat})" if labels.units_sat else "")
    else:
        vmin, vmax, cbar_label = -1.0, 1.0, "Pearson R per station"
    sc = ax.scatter(lon[finite], lat[finite], c=value[finite], cmap="RdBu_r", vmin=vmin, vmax=vmax, s=70,
                    edgecolors="black", linewidths=0.6, zorder=3)
    if (~finite).any():
        ax.scatter(lon[~finite], lat[~finite], s=70, facecolors="none", edgecolors="0.4", linewidths=0.9,
                   zorder=3, label=f"{'R' if value_col == 'r' else 'bias'} not computable (N < 3)")
        ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(sc, ax=ax, shrink=0.8, label=cbar_label)
    if len(table) <= MAX_MAP_LABELS:
        names = table["station_name"] if "station_name" in table.columns else table["station_id"]
        for x, y, name, sid, n in zip(lon, lat, names.astype(str), table["station_id"].astype(str), table["n"]):
            text, font = _text(name, fallback=sid)
            ax.annotate(f"{text} (N={int(n)})", (x, y), xytext=(5, 5), textcoords="offset points", fontsize=7,
                        zorder=4, **font)
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(1.0 / max(math.cos(math.radians((south + north) / 2)), 0.2))
    ax.set_xlabel("longitude (degrees east)")
    ax.set_ylabel("latitude (degrees north)")
    ax.grid(True, lw=0.3, color="0.85")
    text, font = _text(title)
    ax.set_title(f"{text}: {'mean bias' if stats.bias_stats else 'correlation'} by station", fontsize=11, **font)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

# (field, label, definition, is a fraction shown in %)
_STAT_ROWS = (
    ("n", "N", "pairs with both values", False),
    ("r", "Pearson R", "linear correlation", False),
    ("r_p", "p-value of R", "two-sided, Student t with N − 2 dof", False),
    ("spearman", "Spearman ρ", "rank correlation", False),
    ("slope_ols", "OLS slope", "least squares of satellite on ground, s_xy/s_xx", False),
    ("intercept_ols", "OLS intercept", "", False),
    ("slope_rma", "RMA slope", "reduced major axis, sign(R)·s_sat/s_ground", False),
    ("intercept_rma", "RMA intercept", "", False),
    ("mb", "MB", "mean(S − O)", False),
    ("nmb", "NMB", "Σ(S − O)/ΣO", True),
    ("nme", "NME", "Σ|S − O|/ΣO", True),
    ("mnmb", "MNMB", "(2/N)Σ(S − O)/(S + O)", True),
    ("fge", "FGE", "(2/N)Σ|S − O|/(S + O)", True),
    ("rmse", "RMSE", "√mean((S − O)²)", False),
    ("mae", "MAE", "mean|S − O|", False),
    ("median_rel_bias", "median relative bias", "median(S − O)/median(O)", True),
    ("dispersion_mad", "dispersion", "1.4826 · MAD(S − O)", False),
    ("within_ee", "within EE", "|S − O| ≤ EE(O)", True),
    ("above_ee", "above EE", "S − O > EE(O)", True),
    ("below_ee", "below EE", "S − O < −EE(O)", True),
)
_BIAS_ROWS = {"mb", "nmb", "nme", "mnmb", "fge", "rmse", "mae", "median_rel_bias", "dispersion_mad"}
_EE_ROWS = {"within_ee", "above_ee", "below_ee"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f6f6f6;padding:.1em .3em}figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.9em}
"""


def _html_page(title: str, meta: dict, stats: ValidationStats, station_table: pd.DataFrame | None,
               pngs: dict[str, bytes], labels: _Labels, valid: pd.DataFrame) -> str:
    e = html.escape
    t0, t1 = valid["time"].min(), valid["time"].max()
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="summary">N = {stats.n} matchups at {valid["station_id"].nunique()} stations, '
        f"{e(t0.strftime(_TIME_FORMAT))} to {e(t1.strftime(_TIME_FORMAT))}; "
        f"satellite {e(labels.units_sat or '–')}, ground {e(labels.units_ground or '–')}.</p>",
        "<h2>Run</h2>", _meta_html(meta),
        "<h2>Statistics</h2>", _stats_html(stats),
        "<h2>Figures</h2>",
    ]
    captions = {
        "scatter": "Satellite against ground" + (", with the 1:1 line" if stats.bias_stats else "")
                   + (", the expected-error envelope" if stats.bias_stats and stats.ee is not None else "")
                   + " and the OLS and RMA fits.",
        "timeseries": "Ground and satellite values per station (UTC).",
        "map": "Stations coloured by " + ("mean bias (satellite − ground)." if stats.bias_stats
                                          else "Pearson R (bias is not defined between these quantities)."),
    }
    for key in ("scatter", "timeseries", "map"):
        encoded = base64.b64encode(pngs[key]).decode("ascii")
        parts.append(f'<figure><a href="{REPORT_FILES[key]}"><img src="data:image/png;base64,{encoded}" '
                     f'alt="{e(key)}"></a><figcaption>{e(captions[key])}</figcaption></figure>')
    if station_table is not None:
        parts += ["<h2>Per station</h2>", _station_html(station_table, stats)]
    files = [name for key, name in REPORT_FILES.items()
             if key != "report" and (key != "stations" or station_table is not None)]
    parts.append("<h2>Files</h2><ul>" + "".join(f'<li><a href="{n}">{n}</a></li>' for n in files) + "</ul>")
    parts.append(f'<p class="note">rsmon {e(str(meta.get("rsmon_version", rsmon.__version__)))}</p></body></html>\n')
    return "\n".join(parts)


def _meta_html(meta: dict) -> str:
    e = html.escape
    rows = []
    first = ("command", "inputs", "parameters")
    for key in [k for k in first if k in meta] + [k for k in meta if k not in first]:
        value = _json_safe(meta[key])
        if key == "inputs" and isinstance(value, list):
            cell = "<ul>" + "".join(f"<li><code>{e(str(v))}</code></li>" for v in value) + "</ul>"
        elif key == "parameters" and isinstance(value, dict):
            cell = "<table>" + "".join(f"<tr><th>{e(str(k))}</th><td><code>{e(json.dumps(v))}</code></td></tr>"
                                       for k, v in value.items()) + "</table>"
        elif isinstance(value, str):
            cell = f"<code>{e(value)}</code>"
        else:
            cell = f"<code>{e(json.dumps(value))}</code>"
        rows.append(f"<tr><th>{e(str(key))}</th><td>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _stats_html(stats: ValidationStats) -> str:
    e = html.escape
    level = f"{100 * stats.confidence:g} %"
    intervals = {"r": stats.r_ci, "slope_ols": stats.slope_ols_ci, "slope_rma": stats.slope_rma_ci}
    rows = [f"<tr><th>statistic</th><th>value</th><th>{level} bootstrap interval</th><th>definition</th></tr>"]
    for name, label, definition, is_fraction in _STAT_ROWS:
        if not stats.bias_stats and (name in _BIAS_ROWS or name in _EE_ROWS):
            continue
        if name in _EE_ROWS and stats.ee is None:
            continue
        value = getattr(stats, name)
        shown = _pct(value) if is_fraction else _fmt(value)
        ci = intervals.get(name)
        ci_text = f"{_fmt(ci[0], 3)} – {_fmt(ci[1], 3)}" if ci is not None else ""
        if name == "within_ee":
            definition += f", EE = ±({stats.ee.a:g} + {stats.ee.b:g}·O)"
        rows.append(f'<tr><td>{e(label)}</td><td class="num">{e(shown)}</td><td class="num">{e(ci_text)}</td>'
                    f"<td>{e(definition)}</td></tr>")
    notes = []
    if not stats.bias_stats:
        notes.append("Bias statistics are not computed: the satellite and ground values are different quantities "
                     "(a column is not a concentration).")
    if stats.n_boot:
        notes.append(f"Intervals: percentile bootstrap, {stats.n_boot} resamplings of the pairs, seed {stats.seed}.")
    if stats.n_dropped:
        notes.append(f"{stats.n_dropped} pairs with a missing value were dropped.")
    return "<table>" + "".join(rows) + "</table>" + "".join(f'<p class="note">{e(n)}</p>' for n in notes)


def _station_html(table: pd.DataFrame, stats: ValidationStats) -> str:
    e = html.escape
    columns = [("station_id", "station", None), ("station_name", "name", None), ("n", "N", "int"),
               ("r", "R", "num"), ("slope_rma", "RMA slope", "num")]
    if stats.bias_stats:
        columns += [("mb", "MB", "num"), ("rmse", "RMSE", "num"), ("nmb", "NMB", "pct")]
        if stats.ee is not None:
            columns.append(("within_ee", "within EE", "pct"))
    else:
        columns += [("spearman", "Spearman ρ", "num"), ("slope_ols", "OLS slope", "num")]
    columns = [c for c in columns if c[0] in table.columns]
    rows = ["<tr>" + "".join(f"<th>{e(label)}</th>" for _, label, _ in columns) + "</tr>"]
    for record in table.to_dict("records"):
        cells = []
        for name, _, style in columns:
            value = record[name]
            if style is None:
                cells.append(f"<td>{e(str(value))}</td>")
            else:
                text = _pct(float(value)) if style == "pct" else _fmt(value, 3 if style == "num" else 4)
                cells.append(f'<td class="num">{e(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"
