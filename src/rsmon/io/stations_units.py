"""Gas reference state of CNEMC concentrations and ug m-3 <-> ppb conversions.

On 2018-09-01 China's national network changed the reference state of the gas concentrations
(SO2, NO2, O3, CO) from the standard state (273.15 K, 101.325 kPa) to the reference state
(298.15 K, 101.325 kPa) (Jin et al., Atmosphere 11, 1199, 2020; ``shared/reference/atmos.md``
section 5.2). The same air gives a mass concentration smaller by
273.15/298.15 (= 0.916, the "8.4 % drop") in the new state, because a mass per volume scales as
1/T at fixed pressure. PM moved to actual conditions at the same time; it is not converted here.

Mixing ratios: ``ppb = ug m-3 x Vm / M`` with the molar volume ``Vm = R T / p`` (L mol-1) and the
molar mass ``M`` (g mol-1): ``Vm`` = 24.465 L mol-1 at 298.15 K and 22.414 L mol-1 at 273.15 K,
101.325 kPa (atmos.md 5.2 quotes them rounded: 24.45 and 22.41).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from rsmon.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "GAS_VARIABLES",
    "MOLAR_MASS_G_MOL",
    "REFERENCE_STATE_CHANGE",
    "REFERENCE_TEMPERATURES_K",
    "harmonise_reference_state",
    "molar_volume_l_mol",
    "no2_ppb_to_ugm3",
    "no2_ugm3_to_ppb",
    "ppb_to_ugm3",
    "reference_state_of",
    "ugm3_to_ppb",
]

#: Molar gas constant, J mol-1 K-1 (CODATA 2018, exact).
R_J_MOL_K = 8.314462618
#: Standard atmosphere, Pa.
P_STANDARD_PA = 101325.0

#: Reference states by name -> temperature (K).
REFERENCE_TEMPERATURES_K: Mapping[str, float] = {"273K": 273.15, "298K": 298.15}

#: Instant of the CNEMC change: 2018-09-01 00:00 Beijing time (UTC+8) = 2018-08-31 16:00 UTC.
#: A row is in the new (298 K) state when its interval ends after this instant; the hour labelled
#: 2018-09-01 00 (23:00-24:00 on 31 August) is still in the old state.
REFERENCE_STATE_CHANGE = pd.Timestamp("2018-08-31T16:00:00Z")

#: Molar masses, g mol-1 (IUPAC 2013 standard atomic weights: N 14.007, O 15.999, S 32.06, C 12.011).
MOLAR_MASS_G_MOL: Mapping[str, float] = {"no2": 46.0055, "so2": 64.064, "o3": 47.997, "co": 28.010}

#: Base variables whose CNEMC concentrations depend on the reference state (rolling variants too).
GAS_VARIABLES: tuple[str, ...] = ("no2", "so2", "o3", "co")

_MASS_UNITS = ("ug m-3", "mg m-3")


def _state(reference_state: str, what: str = "reference_state") -> str:
    key = str(reference_state).strip().upper().replace(" ", "")
    key = {"298": "298K", "298.15K": "298K", "298.15": "298K", "273": "273K", "273.15K": "273K",
           "273.15": "273K"}.get(key, key)
    if key not in REFERENCE_TEMPERATURES_K:
        raise InputError(f"{what}: {reference_state!r} is not a reference state; expected '298K' or '273K'")
    return key


def molar_volume_l_mol(temperature_k: float, pressure_pa: float = P_STANDARD_PA) -> float:
    """Ideal-gas molar volume ``R T / p`` in L mol-1 (22.414 at 273.15 K, 24.465 at 298.15 K)."""
    if temperature_k <= 0 or pressure_pa <= 0:
        raise InputError(f"temperature_k/pressure_pa: must be positive, got {temperature_k}, {pressure_pa}")
    return R_J_MOL_K * temperature_k / pressure_pa * 1000.0


def _scaled(values, factor: float):
    """``values x factor``: a float for a scalar, a float64 array (or Series, index kept) otherwise."""
    if isinstance(values, pd.Series):
        return values.astype("float64") * factor
    if np.isscalar(values):
        return float(values) * factor
    return np.asarray(values, dtype="float64") * factor


def ugm3_to_ppb(values, molar_mass_g_mol: float, reference_state: str = "298K"):
    """Mass concentration (ug m-3) -> mixing ratio (ppb = nmol mol-1) in ``reference_state``.

    ``ppb = ug m-3 x Vm / M``, ``Vm = R T / p`` (L mol-1) at T of the state and 101.325 kPa.
    """
    vm = molar_volume_l_mol(REFERENCE_TEMPERATURES_K[_state(reference_state)])
    return _scaled(values, vm / molar_mass_g_mol)


def ppb_to_ugm3(values, molar_mass_g_mol: float, reference_state: str = "298K"):
    """Mixing ratio (ppb) -> mass concentration (ug m-3) in ``reference_state`` (inverse of :func:`ugm3_to_ppb`)."""
    vm = molar_volume_l_mol(REFERENCE_TEMPERATURES_K[_state(reference_state)])
    return _scaled(values, molar_mass_g_mol / vm)


def no2_ugm3_to_ppb(values, reference_state: str = "298K"):
    """NO2 ug m-3 -> ppb: x 24.465/46.0055 = 0.5318 at 298.15 K, x 22.414/46.0055 = 0.4872 at 273.15 K.

    Parameters
    ----------
    values : float or array-like
        NO2 mass concentrations, ug m-3, in ``reference_state``.
    reference_state : {"298K", "273K"}
        The state the concentrations are expressed in (CNEMC: 273K before 2018-09-01, 298K after).

    Returns
    -------
    float or ndarray
        NO2 mixing ratio, ppb (nmol mol-1).

    References
    ----------
    ``ppb = ug m-3 x (R T / p) / M``; atmos.md 5.2 quotes the rounded factors 24.45/46.01 (298 K)
    and 22.41/46.01 (273 K).
    """
    return ugm3_to_ppb(values, MOLAR_MASS_G_MOL["no2"], reference_state)


def no2_ppb_to_ugm3(values, reference_state: str = "298K"):
    """NO2 ppb -> ug m-3 in ``reference_state`` (inverse of :func:`no2_ugm3_to_ppb`)."""
    return ppb_to_ugm3(values, MOLAR_MASS_G_MOL["no2"], reference_state)


def reference_state_of(time_end: pd.Series) -> str:
    """``"273K"``, ``"298K"`` or ``"as_reported"`` (rows on both sides) for CNEMC rows ending at ``time_end``."""
    t = pd.Series(time_end)
    if len(t) == 0:
        return "as_reported"
    new = (t > REFERENCE_STATE_CHANGE).to_numpy()
    if new.all():
        return "298K"
    if not new.any():
        return "273K"
    return "as_reported"


def _base_variable(variable: pd.Series) -> pd.Series:
    return variable.astype(str).str.split("_", n=1).str[0]


def harmonise_reference_state(df: pd.DataFrame, to: str = "298K") -> pd.DataFrame:
    """Express the CNEMC gas concentrations of a Station table in one reference state.

    Rows of ``no2``, ``so2``, ``o3``, ``co`` (and their rolling variants) with mass units
    (ug m-3, mg m-3) on the other side of the 2018-09-01 change are converted; PM, AQI and rows in
    other units (ppb) are left untouched.

    * to ``"298K"``: rows in the 273 K state are multiplied by 273.15/298.15 (= 0.9161);
    * to ``"273K"``: rows in the 298 K state are multiplied by 298.15/273.15 (= 1.0915).

    The state of a row comes from ``df.attrs["reference_state"]`` when it is ``"273K"`` or
    ``"298K"`` (already uniform, e.g. after a previous harmonisation); otherwise (``"as_reported"``
    or absent) from its time: rows ending after 2018-09-01 00:00 Beijing time
    (:data:`REFERENCE_STATE_CHANGE`) are in the 298 K state, earlier rows in the 273 K state.

    Parameters
    ----------
    df : DataFrame
        Station table of CNEMC data (any reader of :mod:`rsmon.io.stations_cnemc`).
    to : {"298K", "273K"}
        Target state (default 298 K, the state of current CNEMC data).

    Returns
    -------
    DataFrame
        A copy; ``attrs["reference_state"]`` is set to ``to`` and ``attrs["reference_state_note"]``
        says how many rows were converted.

    Raises
    ------
    InputError
        ``to`` is not a reference state, or ``df`` lacks the Station-table columns.

    References
    ----------
    Jin et al., Atmosphere 11, 1199, 2020; atmos.md section 5.2.
    """
    target = _state(to, "to")
    missing = [c for c in ("variable", "value", "units", "time_end") if c not in df.columns]
    if missing:
        raise InputError(f"df: not a Station table (missing column {missing[0]!r})")
    out = df.copy()
    gas = _base_variable(out["variable"]).isin(GAS_VARIABLES) & out["units"].isin(_MASS_UNITS)
    declared = str(df.attrs.get("reference_state", "as_reported"))
    if declared in REFERENCE_TEMPERATURES_K:
        in_298 = pd.Series(declared == "298K", index=out.index)
    else:
        in_298 = pd.Series(out["time_end"] > REFERENCE_STATE_CHANGE, index=out.index)
    if target == "298K":
        rows = gas & ~in_298
        factor = REFERENCE_TEMPERATURES_K["273K"] / REFERENCE_TEMPERATURES_K["298K"]
    else:
        rows = gas & in_298
        factor = REFERENCE_TEMPERATURES_K["298K"] / REFERENCE_TEMPERATURES_K["273K"]
    out.loc[rows, "value"] = out.loc[rows, "value"] * factor
    out.attrs = dict(df.attrs)
    out.attrs["reference_state"] = target
    out.attrs["reference_state_note"] = (
        f"{int(rows.sum())} gas rows converted x{factor:.6f} to the {target} state "
        "(CNEMC changed 273.15 K -> 298.15 K on 2018-09-01; Jin et al. 2020)")
    log.debug("harmonise_reference_state: %s", out.attrs["reference_state_note"])
    return out
