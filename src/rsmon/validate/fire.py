"""Fire-point validation: one-to-one matching of detections to reference fires, precision/recall/F1.

A detection and a reference fire match when they are within ``max_distance_m`` (great-circle,
haversine on a sphere of radius 6371008.8 m) and ``|dt| <= max_dt_min`` (the same overpass).
Matching is greedy and one-to-one: all candidate pairs are sorted by distance (ties: time
difference, then detection and reference order) and accepted while neither side is taken. This
is the usual rule for point-fire validation (``shared/reference/fire.md`` section 5: same
platform, distance <= 375 m (<= 750 m at scan edge), |dt| within the granule); greedy nearest
matching can differ from the optimal assignment only where candidate pairs chain, which at
375 m and 20 min is rare.

Scores: ``precision`` = matched detections / detections (1 - commission), ``recall`` = matched
references / references (1 - omission), ``f1`` = 2PR/(P+R); recall by reference FRP class
(default bins [0, 5), [5, 10), [10, 20), [20, 50), [50, inf) MW; the simulator truth names FRP
``frp_mw``, FIRMS ``frp``).

One-to-one counting under-states agreement between sensors of different pixel size: one MODIS
1 km pixel covers ~7 VIIRS 375 m pixels, so at most one of them can match it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rsmon.errors import InputError
from rsmon.io.stations_firms import fire_times_utc

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_FRP_BINS_MW", "EARTH_RADIUS_M", "fraction_matched_by", "haversine_m", "match_fires"]

#: FRP class edges, MW (reference FRP); the last class is open.
DEFAULT_FRP_BINS_MW: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0, 50.0, math.inf)

#: Mean Earth radius (IUGG), m.
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance, metres (haversine formula, sphere of radius :data:`EARTH_RADIUS_M`)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _times(df: pd.DataFrame, name: str) -> np.ndarray:
    """UTC acquisition times as int64 nanoseconds (``time`` or ``acq_date`` + ``acq_time``)."""
    return fire_times_utc(df, name).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _coords(df: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    for c in ("latitude", "longitude"):
        if c not in df.columns:
            raise InputError(f"{name}: missing column {c!r}")
    return (pd.to_numeric(df["longitude"], errors="coerce").to_numpy(float),
            pd.to_numeric(df["latitude"], errors="coerce").to_numpy(float))


def _candidates(det_lon, det_lat, ref_lon, ref_lat, max_distance_m) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, reference) index pairs closer than max_distance_m (KD-tree on the unit sphere)."""
    from scipy.spatial import cKDTree

    dok = np.flatnonzero(np.isfinite(det_lon) & np.isfinite(det_lat))
    rok = np.flatnonzero(np.isfinite(ref_lon) & np.isfinite(ref_lat))
    if dok.size == 0 or rok.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # chord length of the arc max_distance_m, with a hair of slack; haversine decides exactly
    chord = 2 * math.sin(min(max_distance_m / EARTH_RADIUS_M, math.pi) / 2) * (1 + 1e-9)
    tree_d = cKDTree(_unit_vectors(det_lon[dok], det_lat[dok]))
    tree_r = cKDTree(_unit_vectors(ref_lon[rok], ref_lat[rok]))
    sdm = tree_d.sparse_distance_matrix(tree_r, chord, output_type="coo_matrix")
    return dok[sdm.row], rok[sdm.col]


def match_fires(detections: pd.DataFrame, reference: pd.DataFrame, *, max_distance_m: float = 375.0,
                max_dt_min: float = 20.0, frp_bins: Sequence[float] = DEFAULT_FRP_BINS_MW,
                reference_frp: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Greedy one-to-one nearest matching of fire detections to reference fires.

    Parameters
    ----------
    detections, reference : DataFrame
        One row per fire pixel: ``latitude``, ``longitude`` (degrees) and ``time`` (UTC) or
        ``acq_date`` + ``acq_time`` (HHMM UTC) -- the FIRMS/detector tables, or simulator truth.
    max_distance_m : float
        Largest centre-to-centre distance of a match, metres (default 375, one VIIRS I-band
        pixel at nadir; ``fire.md`` 5).
    max_dt_min : float
        Largest |time difference| of a match, minutes (default 20: the same overpass; FIRMS times
        are granule minutes).
    frp_bins : sequence of float
        FRP class edges for recall by FRP, MW, increasing (default :data:`DEFAULT_FRP_BINS_MW`).
    reference_frp : str, optional
        Reference FRP column (default ``frp_mw`` if present, else ``frp``; none: no FRP table).

    Returns
    -------
    pairs : DataFrame
        One row per match: ``detection_index``, ``reference_index`` (labels of the input
        tables), ``distance_m``, ``dt_min`` (detection minus reference, minutes) and
        ``reference_frp_mw`` when an FRP column exists; sorted by detection index.
    summary : dict
        ``n_detections``, ``n_reference``, ``n_matched``, ``precision``, ``recall``, ``f1``
        (NaN when undefined), ``max_distance_m``, ``max_dt_min``, and ``recall_by_frp``: a
        DataFrame with one row per FRP class (all classes, empty ones included: the whole
        curve) -- ``frp_min_mw``, ``frp_max_mw``, ``n_reference``, ``n_matched``, ``recall``.

    Raises
    ------
    InputError
        Missing coordinates/times, non-positive limits, bad bins or an unknown FRP column.
    """
    if not (max_distance_m > 0 and max_dt_min >= 0):
        raise InputError(f"match_fires: need max_distance_m > 0 and max_dt_min >= 0, got "
                         f"{max_distance_m!r}, {max_dt_min!r}")
    edges = np.asarray(frp_bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InputError(f"match_fires: frp_bins must be >= 2 increasing edges, got {list(frp_bins)!r}")
    dlon, dlat = _coords(detections, "detections")
    rlon, rlat = _coords(reference, "reference")
    dt_ns = _times(detections, "detections")
    rt_ns = _times(reference, "reference")

    di, ri = _candidates(dlon, dlat, rlon, rlat, max_distance_m)
    dist = haversine_m(dlon[di], dlat[di], rlon[ri], rlat[ri])
    dt = (dt_ns[di] - rt_ns[ri]) / 6e10  # minutes
    keep = (dist <= max_distance_m) & (np.abs(dt) <= max_dt_min)
    di, ri, dist, dt = di[keep], ri[keep], dist[keep], dt[keep]
    order = np.lexsort((ri, di, np.abs(dt), dist))
    used_d = np.zeros(len(detections), bool)
    used_r = np.zeros(len(reference), bool)
    take = []
    for k in order:
        if not used_d[di[k]] and not used_r[ri[k]]:
            used_d[di[k]] = used_r[ri[k]] = True
            take.append(k)
    take = np.asarray(sorted(take, key=lambda k: (di[k], ri[k])), dtype=np.int64)

    pairs = pd.DataFrame({
        "detection_index": detections.index.to_numpy()[di[take]],
        "reference_index": reference.index.to_numpy()[ri[take]],
        "distance_m": dist[take],
        "dt_min": dt[take],
    })
    if reference_frp is None:
        reference_frp = next((c for c in ("frp_mw", "frp") if c in reference.columns), None)
    elif reference_frp not in reference.columns:
        raise InputError(f"reference: no FRP column {reference_frp!r}")
    ref_frp = (pd.to_numeric(reference[reference_frp], errors="coerce").to_numpy(float)
               if reference_frp else None)
    if ref_frp is not None:
        pairs["reference_frp_mw"] = ref_frp[ri[take]]

    n_det, n_ref, n_match = len(detections), len(reference), int(take.size)
    precision = n_match / n_det if n_det else math.nan
    recall = n_match / n_ref if n_ref else math.nan
    f1 = (2 * precision * recall / (precision + recall)
          if n_det and n_ref and (precision + recall) > 0 else (0.0 if n_det and n_ref else math.nan))
    summary = {
        "n_detections": n_det, "n_reference": n_ref, "n_matched": n_match,
        "precision": precision, "recall": recall, "f1": f1,
        "max_distance_m": float(max_distance_m), "max_dt_min": float(max_dt_min),
        "recall_by_frp": _recall_by_frp(ref_frp, used_r, edges) if ref_frp is not None else None,
        "reference_frp_column": reference_frp,
    }
    log.info("matched %d of %d detections and %d references (P=%.3f R=%.3f)", n_match, n_det, n_ref,
             precision, recall)
    return pairs, summary


def _recall_by_frp(frp: np.ndarray, matched: np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = (frp >= lo) & (frp < hi)
        n, m = int(inb.sum()), int((inb & matched).sum())
        rows.append({"frp_min_mw": float(lo), "frp_max_mw": float(hi), "n_reference": n, "n_matched": m,
                     "recall": m / n if n else math.nan})
    return pd.DataFrame(rows)


def fraction_matched_by(table: pd.DataFrame, matched_index, by: str) -> pd.DataFrame:
    """Matched fraction of a table's rows per class of one column (e.g. MODIS confidence class).

    Parameters
    ----------
    table : DataFrame
        The detections or the reference table given to :func:`match_fires`.
    matched_index : array-like
        Labels of the matched rows (``pairs["detection_index"]`` or ``pairs["reference_index"]``).
    by : str
        Column to group by.

    Returns
    -------
    DataFrame
        ``by``, ``n``, ``n_matched``, ``fraction_matched``, one row per class (observed classes
        of a categorical column included even when empty), plus a final ``all`` row.
    """
    if by not in table.columns:
        raise InputError(f"fraction_matched_by: no column {by!r}")
    matched = pd.Series(table.index.isin(pd.Index(matched_index)), index=table.index)
    g = pd.DataFrame({"key": table[by], "m": matched}).groupby("key", observed=False, sort=True)["m"]
    out = pd.DataFrame({"n": g.size(), "n_matched": g.sum().astype(np.int64)})
    out.loc["all"] = [len(table), int(matched.sum())]
    out["fraction_matched"] = np.where(out["n"] > 0, out["n_matched"] / out["n"].where(out["n"] > 0), np.nan)
    out.index.name = by
    return out.reset_index()
