"""Validation statistics of satellite values against ground truth (matchup pairs).

Satellite values are ``S`` (the y axis of every regression), ground/reference values are ``O``
(the x axis), over ``N`` pairs with both values finite. Every metric is reported with ``N``.

Definitions (``atmos.md`` section 7, names after pyaerocom ``mathutils.calc_statistics``)

=====================  ==========================================================================
``mb``                 mean bias, mean(S - O)
``nmb``                normalised mean bias, sum(S - O) / sum(O)
``nme``                normalised mean error, sum|S - O| / sum(O)
``mnmb``               modified normalised mean bias, (2/N) sum (S - O)/(S + O)
``fge``                fractional gross error, (2/N) sum |S - O|/(S + O)
``rmse``               root mean square error, sqrt(mean((S - O)^2))
``mae``                mean absolute error, mean|S - O|
``r``, ``r_p``         Pearson correlation and its two-sided p-value (Student t, N - 2 dof)
``spearman``           Spearman rank correlation (average ranks for ties) and its p-value
``slope_ols``          least squares of S on O: b = s_xy / s_xx, a = mean(S) - b mean(O)
``slope_rma``          reduced major axis (geometric mean): b = sign(r) s_y/s_x, a = mean(S) - b mean(O)
``median_rel_bias``    median(S - O) / median(O) (TROPOMI validation style, Verhoelst et al. 2021)
``dispersion_mad``     1.4826 * median absolute deviation of S - O (robust spread, ``atmos.md`` 7)
``within_ee``          fraction of pairs with |S - O| <= EE(O); ``above_ee``/``below_ee``: S above
                       O + EE(O) / below O - EE(O) (Dark Target validation,
                       https://darktarget.gsfc.nasa.gov/validation ; ``atmos.md`` 3.1)
=====================  ==========================================================================

Confidence intervals of ``r``, ``slope_ols`` and ``slope_rma`` are bootstrap percentile intervals
(Efron & Tibshirani 1993, ch. 13): pairs are resampled with replacement ``n_boot`` times.

No SciPy at run time: p-values use the regularised incomplete beta function (continued fraction,
Press et al., *Numerical Recipes*, 3rd ed., section 6.4), checked against SciPy in the tests.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import scipy.stats
import pandas as pd

from rsmon.errors import InputError, NoDataError

log = logging.getLogger(__name__)

__all__ = ["ExpectedError", "EE_DEFAULTS", "ValidationStats", "compute_stats", "stats_by"]


@dataclass(frozen=True)
class ExpectedError:
    """Expected-error envelope ``EE(O) = ±(a + b·O)`` around the ground value ``O``.

    Parameters
    ----------
    a : float
        Absolute part, in the units of the values (AOD: unitless).
    b : float
        Relative part (fraction of the ground value).

    References
    ----------
    Dark Target validation, https://darktarget.gsfc.nasa.gov/validation (a product is "validated"
    when at least 67 % of the matchups fall inside its EE); ``atmos.md`` section 3.1.
    """

    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value >= 0):
                raise InputError(f"expected error: {name} must be a finite number >= 0, got {value!r}")

    def envelope(self, ground: np.ndarray) -> np.ndarray:
        """Half-width of the envelope, ``a + b·ground``, in the units of ``ground``."""
        return self.a + self.b * np.asarray(ground, dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        return {"a": float(self.a), "b": float(self.b)}


#: Default envelopes by product kind (``None``: no envelope, ``within_ee`` is NaN).
#:
#: - ``aod`` / ``aod_dt_land``: Dark Target land (MODIS C6.1, VIIRS DT), ±(0.05 + 0.15 τ),
#:   darktarget.gsfc.nasa.gov/validation.
#: - ``aod_dt_ocean``: Dark Target ocean (C5 glossary), ±(0.03 + 0.05 τ).
#: - ``aod_db_land``: Deep Blue land, ±(0.05 + 0.20 τ) after Sayer et al. 2013/2019 -- **unverified**
#:   (``atmos.md`` 3.1 marks it so; check the paper before quoting %within EE for Deep Blue).
#: - ``no2``, ``xch4``: no published envelope of this form.
EE_DEFAULTS: dict[str, ExpectedError | None] = {
    "aod": ExpectedError(0.05, 0.15),
    "aod_dt_land": ExpectedError(0.05, 0.15),
    "aod_dt_ocean": ExpectedError(0.03, 0.05),
    "aod_db_land": ExpectedError(0.05, 0.20),
    "no2": None,
    "xch4": None,
}

# A value this close to the envelope edge counts as inside: AOD is reported to 3 decimals, so
# 1e-9 only absorbs binary rounding (0.05 + 0.15*0.5 != 0.125 exactly), never a real difference.
_EE_EDGE_TOLERANCE = 1e-9

# Bootstrap draws are made in chunks of at most this many resampled values (memory bound).
_BOOT_CHUNK_VALUES = 2_000_000

# Scale factor from the median absolute deviation to a normal standard deviation.
_MAD_TO_SIGMA = 1.4826

_NAN_CI = (math.nan, math.nan)

# Fields that are NaN when bias statistics are switched off (a column is not a concentration).
_BIAS_FIELDS = ("mb", "nmb", "nme", "mnmb", "fge", "rmse", "mae", "median_rel_bias", "dispersion_mad",
                "within_ee", "above_ee", "below_ee")


@dataclass
class ValidationStats:
    """Statistics of satellite (S) against ground (O) matchups; see the module docstring for definitions.

    Fractions (``within_ee``, ``above_ee``, ``below_ee``) are 0..1; ``nmb``, ``nme``, ``mnmb``, ``fge``
    and ``median_rel_bias`` are fractions too (multiply by 100 for %). Biases, errors and intercepts
    are in the units of the values. ``*_ci`` are ``(low, high)`` bootstrap percentile intervals at
    ``confidence``. NaN means "not computable" (N < 3 for correlations, no envelope, bias switched off).
    """

    n: int
    r: float = math.nan
    r_p: float = math.nan
    spearman: float = math.nan
    spearman_p: float = math.nan
    slope_ols: float = math.nan
    intercept_ols: float = math.nan
    slope_rma: float = math.nan
    intercept_rma: float = math.nan
    mb: float = math.nan
    nmb: float = math.nan
    nme: float = math.nan
    mnmb: float = math.nan
    fge: float = math.nan
    rmse: float = math.nan
    mae: float = math.nan
    median_rel_bias: float = math.nan
    dispersion_mad: float = math.nan
    within_ee: float = math.nan
    above_ee: float = math.nan
    below_ee: float = math.nan
    mean_sat: float = math.nan
    mean_ground: float = math.nan
    std_sat: float = math.nan
    std_ground: float = math.nan
    r_ci: tuple[float, float] = _NAN_CI
    slope_ols_ci: tuple[float, float] = _NAN_CI
    slope_rma_ci: tuple[float, float] = _NAN_CI
    kind: str = ""
    ee: ExpectedError | None = None
    bias_stats: bool = True
    confidence: float = 0.95
    n_boot: int = 0
    seed: int | None = 0
    n_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: Python floats, NaN/inf as ``None``, intervals as ``[low, high]`` lists.

        Keys are the field names (``n``, ``r``, ``rmse``, ``mb``, ``within_ee``, ``slope_ols``,
        ``slope_rma``, ``spearman``, ``nmb``, ``mae``, ... -- the CLI contract); ``ee`` is
        ``{"a": .., "b": ..}`` or ``None``.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "ee":
                out["ee"] = None if value is None else value.to_dict()
            elif isinstance(value, tuple):
                out[f.name] = [_json_float(v) for v in value]
            elif isinstance(value, (bool, np.bool_)):
                out[f.name] = bool(value)
            elif isinstance(value, (int, np.integer)):
                out[f.name] = int(value)
            elif isinstance(value, (float, np.floating)):
                out[f.name] = _json_float(value)
            else:
                out[f.name] = value
        return out


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    # a constant series has no correlation (its float mean may differ from its values by rounding)
    if x.size == 0 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(np.dot(dx, dx))
    syy = float(np.dot(dy, dy))
    if sxx <= 0.0 or syy <= 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(np.dot(dx, dy)) / math.sqrt(sxx * syy)))


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------

def _resolve_ee(kind: str, ee: Any) -> ExpectedError | None:
    if isinstance(ee, str) and ee == "default":
        if kind not in EE_DEFAULTS:
            raise InputError(
                f"kind {kind!r}: no default expected error (known kinds: {', '.join(sorted(EE_DEFAULTS))}); "
                "pass ee=None or ee=ExpectedError(a, b)"
            )
        return EE_DEFAULTS[kind]
    if ee is None or isinstance(ee, ExpectedError):
        return ee
    try:
        a, b = ee
    except (TypeError, ValueError):
        raise InputError(f"ee: expected ExpectedError(a, b), an (a, b) pair or None, got {ee!r}") from None
    return ExpectedError(float(a), float(b))


def _regressions(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """OLS and RMA (slope, intercept) of y on x; NaN when x or y is constant."""
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    sxx, syy, sxy = float(np.dot(dx, dx)), float(np.dot(dy, dy)), float(np.dot(dx, dy))
    if sxx <= 0.0:
        return math.nan, math.nan, math.nan, math.nan
    slope_ols = sxy / sxx
    if syy <= 0.0:
        slope_rma = math.nan
    else:
        slope_rma = math.copysign(math.sqrt(syy / sxx), sxy) if sxy != 0.0 else 0.0
    return slope_ols, my - slope_ols * mx, slope_rma, my - slope_rma * mx


def _bootstrap(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int | None, confidence: float):
    """Percentile intervals of (r, slope_ols, slope_rma) from ``n_boot`` resamplings of the pairs."""
    n = x.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_VALUES // n)
    r_all, ols_all, rma_all = [], [], []
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(size, n))
        xs, ys = x[idx], y[idx]
        dx = xs - xs.mean(axis=1, keepdims=True)
        dy = ys - ys.mean(axis=1, keepdims=True)
        sxx = np.einsum("ij,ij->i", dx, dx)
        syy = np.einsum("ij,ij->i", dy, dy)
        sxy = np.einsum("ij,ij->i", dx, dy)
        with np.errstate(divide="ignore", invalid="ignore"):
            # a resample made of one repeated pair has sxx = 0: NaN, ignored by nanpercentile
            r_all.append(np.where((sxx > 0) & (syy > 0), np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0), np.nan))
            ols_all.append(np.where(sxx > 0, sxy / sxx, np.nan))
            rma_all.append(np.where((sxx > 0) & (syy > 0), np.sign(sxy) * np.sqrt(syy / sxx), np.nan))
        done += size
    alpha = 100.0 * (1.0 - confidence) / 2.0
    out = []
    for samples in (r_all, ols_all, rma_all):
        values = np.concatenate(samples)
        if not np.isfinite(values).any():
            out.append(_NAN_CI)
            continue
        lo, hi = np.nanpercentile(values, [alpha, 100.0 - alpha])
        out.append((float(lo), float(hi)))
    return tuple(out)


def compute_stats(
    sat,
    ground,
    *,
    kind: str = "aod",
    ee: ExpectedError | tuple[float, float] | None | Literal["default"] = "default",
    n_boot: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    bias_stats: bool = True,
) -> ValidationStats:
    """Agreement, correlation and regression statistics of satellite against ground values.

    Parameters
    ----------
    sat, ground : array_like
        Paired satellite (S, regression y) and ground/reference (O, regression x) values, same
        length, same units when ``bias_stats`` is true. Pairs where either is NaN are dropped first.
    kind : str
        Product kind (``aod``, ``aod_dt_land``, ``aod_dt_ocean``, ``aod_db_land``, ``no2``, ``xch4``,
        or any label when ``ee`` is given); selects the default envelope from :data:`EE_DEFAULTS`.
    ee : ExpectedError, (a, b), None or "default"
        Expected-error envelope; ``"default"`` takes ``EE_DEFAULTS[kind]``; ``None`` means none
        (``within_ee``/``above_ee``/``below_ee`` are NaN).
    n_boot : int
        Bootstrap resamplings for the confidence intervals (0: intervals are NaN).
    seed : int or None
        Seed of the :class:`numpy.random.Generator` used for the bootstrap (reproducible results).
    confidence : float
        Confidence level of the percentile intervals, in (0, 1).
    bias_stats : bool
        False when S and O are different quantities (a TROPOMI NO2 column against a surface
        concentration: "a column is not a concentration", ``atmos.md`` 5.2): every bias, error
        and envelope field is then NaN, and only correlations and regressions are reported.

    Returns
    -------
    ValidationStats
        With ``n`` the number of pairs used and ``n_dropped`` the pairs dropped for NaN. With
        N < 3, correlations, p-values, regressions and intervals are NaN; bias fields are computed.

    Raises
    ------
    NoDataError
        No pair has both values finite.
    InputError
        Different lengths, bad ``confidence``/``n_boot``, or an unknown ``kind`` with ``ee="default"``.

    References
    ----------
    ``atmos.md`` section 7 (pyaerocom ``mathutils.calc_statistics`` definitions); Dark Target
    validation for the envelope; Efron & Tibshirani (1993) for the percentile bootstrap.
    """
    envelope = _resolve_ee(kind, ee)
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence: expected a level in (0, 1), got {confidence!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise InputError(f"n_boot: expected an integer >= 0, got {n_boot!r}")
    s_all = np.asarray(sat, dtype=np.float64).ravel()
    o_all = np.asarray(ground, dtype=np.float64).ravel()
    if s_all.size != o_all.size:
        raise InputError(f"sat and ground: expected the same number of values, got {s_all.size} and {o_all.size}")
    keep = np.isfinite(s_all) & np.isfinite(o_all)
    s, o = s_all[keep], o_all[keep]
    n = int(s.size)
    if n == 0:
        raise NoDataError(f"no matchups: none of the {s_all.size} pairs has both a satellite and a ground value")

    st = ValidationStats(n=n, kind=kind, ee=envelope, bias_stats=bool(bias_stats), confidence=float(confidence),
                         n_boot=int(n_boot), seed=seed, n_dropped=int(s_all.size - n))
    st.mean_sat, st.mean_ground = float(s.mean()), float(o.mean())
    if n > 1:
        st.std_sat, st.std_ground = float(s.std(ddof=1)), float(o.std(ddof=1))

    if n >= 3:
        st.r = _pearson(o, s)
        if math.isfinite(st.r):
            st.r_p = float(scipy.stats.pearsonr(o, s).pvalue)
            spearman = scipy.stats.spearmanr(o, s)
            st.spearman, st.spearman_p = float(spearman.statistic), float(spearman.pvalue)
        st.slope_ols, st.intercept_ols, st.slope_rma, st.intercept_rma = _regressions(o, s)
        if n_boot > 0:
            st.r_ci, st.slope_ols_ci, st.slope_rma_ci = _bootstrap(o, s, int(n_boot), seed, confidence)

    if bias_stats:
        diff = s - o
        abs_diff = np.abs(diff)
        sum_o = float(o.sum())
        st.mb = float(diff.mean())
        st.mae = float(abs_diff.mean())
        st.rmse = float(np.sqrt(np.mean(diff * diff)))
        # pyaerocom: NMB is 0 when everything agrees even if sum(O) is 0, else undefined
        st.nmb = float(diff.sum() / sum_o) if sum_o != 0 else (0.0 if not diff.any() else math.nan)
        st.nme = float(abs_diff.sum() / sum_o) if sum_o != 0 else (0.0 if not diff.any() else math.nan)
        total = s + o
        ok = total != 0  # a pair with S + O = 0 has no defined relative difference
        if ok.any():
            st.mnmb = float(2.0 * np.mean(diff[ok] / total[ok]))
            st.fge = float(2.0 * np.mean(abs_diff[ok] / total[ok]))
        median_o = float(np.median(o))
        st.median_rel_bias = float(np.median(diff)) / median_o if median_o != 0 else math.nan
        st.dispersion_mad = float(_MAD_TO_SIGMA * np.median(np.abs(diff - np.median(diff))))
        if envelope is not None:
            half_width = envelope.envelope(o) + _EE_EDGE_TOLERANCE
            st.above_ee = float(np.mean(diff > half_width))
            st.below_ee = float(np.mean(diff < -half_width))
            st.within_ee = 1.0 - st.above_ee - st.below_ee
    return st


# --------------------------------------------------------------------------------------------------
# grouped statistics
# --------------------------------------------------------------------------------------------------

# Fields of ValidationStats that describe the run, not the group (left out of stats_by tables).
_CONFIG_FIELDS = ("kind", "ee", "bias_stats", "confidence", "n_boot", "seed")

# Group keys derived from the ``time`` column (UTC).
_TIME_KEYS = {"day": "D", "month": "M", "year": "Y"}


def _group_key_column(matchups: pd.DataFrame, key: str) -> pd.Series:
    if key in matchups.columns:
        return matchups[key]
    if key in _TIME_KEYS and "time" in matchups.columns:
        time = pd.to_datetime(matchups["time"], utc=True)
        if key == "day":
            return time.dt.floor("D")
        if key == "month":
            return time.dt.strftime("%Y-%m")
        return time.dt.year
    raise InputError(
        f"stats_by: no column {key!r} in the matchup table (columns: {', '.join(map(str, matchups.columns))}; "
        f"derived from time: {', '.join(_TIME_KEYS)})"
    )


def stats_by(
    matchups: pd.DataFrame,
    by: str | list[str],
    *,
    min_n: int = 3,
    sat_col: str = "sat_mean",
    ground_col: str = "ground_mean",
    **kw,
) -> pd.DataFrame:
    """:func:`compute_stats` per group of the matchup table, one row per group.

    Parameters
    ----------
    matchups : DataFrame
        Matchup table (``rsmon.validate`` contract: ``sat_mean``, ``ground_mean``, ``time``, ...).
    by : str or list of str
        Column names (``station_id``, ``province``, ...) or ``day``/``month``/``year`` derived from
        ``time`` in UTC (``day`` is the UTC midnight timestamp, ``month`` ``"YYYY-MM"``, ``year`` int).
    min_n : int
        Groups with fewer valid pairs are left out.
    sat_col, ground_col : str
        Columns holding the satellite and ground values.
    **kw
        Passed to :func:`compute_stats` (``kind``, ``ee``, ``bias_stats``, ``n_boot``, ``seed``, ...).

    Returns
    -------
    DataFrame
        The group keys, then (when grouping by ``station_id`` alone) ``station_name``, ``lon``,
        ``lat`` if present, then every statistic; intervals become ``<name>_lo``/``<name>_hi``.
        Sorted by the keys; empty (with these columns) when no group has ``min_n`` pairs.

    Raises
    ------
    InputError
        A key or value column is missing.
    """
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise InputError("stats_by: expected at least one group key")
    for col in (sat_col, ground_col):
        if col not in matchups.columns:
            raise InputError(f"stats_by: no column {col!r} in the matchup table")
    key_cols = {key: _group_key_column(matchups, key) for key in keys}
    frame = pd.DataFrame({**key_cols, "_sat": matchups[sat_col].to_numpy(dtype=np.float64),
                          "_ground": matchups[ground_col].to_numpy(dtype=np.float64)}, index=matchups.index)
    extra = [c for c in ("station_name", "lon", "lat") if keys == ["station_id"] and c in matchups.columns]
    for c in extra:
        frame[c] = matchups[c]

    stat_names: list[str] = []
    for f in fields(ValidationStats):
        if f.name in _CONFIG_FIELDS:
            continue
        if f.name.endswith("_ci"):
            stat_names += [f"{f.name[:-3]}_ci_lo", f"{f.name[:-3]}_ci_hi"]
        else:
            stat_names.append(f.name)
    rows = []
    for group_key, group in frame.groupby(keys, sort=True, dropna=False):
        valid = np.isfinite(group["_sat"].to_numpy()) & np.isfinite(group["_ground"].to_numpy())
        if int(valid.sum()) < max(1, min_n):
            continue
        st = compute_stats(group["_sat"].to_numpy(), group["_ground"].to_numpy(), **kw)
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        row: dict[str, Any] = dict(zip(keys, group_key))
        for c in extra:
            row[c] = group[c].iloc[0]
        for f in fields(st):
            if f.name in _CONFIG_FIELDS:
                continue
            value = getattr(st, f.name)
            if f.name.endswith("_ci"):
                row[f"{f.name[:-3]}_ci_lo"], row[f"{f.name[:-3]}_ci_hi"] = value
            else:
                row[f.name] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + extra + stat_names)
