"""Fire radiative power (FRP) and the along-scan pixel geometry of VIIRS and MODIS.

FRP by the MIR radiance method (Wooster et al. 2003, RSE 86:83-107; Wooster et al. 2005)::

    FRP = A_pix * sigma / a * (L4 - L4_bg)

with ``A_pix`` the pixel area, ``sigma`` the Stefan-Boltzmann constant, ``L4`` the fire pixel's
middle-infrared spectral radiance, ``L4_bg`` the background radiance and ``a`` the band's constant
of the fit ``L(T) ~ a T^4`` over 650-1300 K. :func:`mir_a_coefficient` computes that fit for a
rectangular band; it gives 3.02e-9 for MODIS bands 21/22 (3.929-3.989 um) where MOD14 C6 uses 3.0e-9
(Giglio, Schroeder & Justice 2016, via ``kirstenbarrett/FRP``, ../shared/reference/fire.md §1.2) and
2.91e-9 for VIIRS M13 where a re-implementation uses 2.88e-9 (fire.md §1.1 item 11, unverified).
No published ``a`` for VIIRS I4 was found; :data:`VIIRS_I4_MIR_A` = 3.32e-9 is this fit for the I4
band (3.55-3.93 um, fire.md §1.1). The operational VNP14IMG FRP uses the 750 m M13 radiance instead
(fire.md §1.1 item 11), so rsmon's I4 FRP is not expected to equal FIRMS' ``frp``.

MOD14 Collection 5 used ``FRP[MW] = 4.34e-19 (T4^8 - T4b^8) A[km2]`` (Kaufman et al. 1998) with the
pixel area growing along the scan (:func:`modis_pixel_size_km`); :func:`frp_mod14_c5` reproduces the
official FP_power of granule MOD14.A2004178.2120.005 to 0.01 % (tests/test_frp.py).

VIIRS pixel size (:func:`viirs_pixel_size_km`): the I-band scan has 12608 native samples,
aggregated on board 3:1 near nadir, 2:1 in the middle and 1:1 at the edges into 6400 samples
(zone starts 0, 1280, 2016, 4384, 5120 in aggregated samples: twice the M-band table
``ag_px_st = {0, 640, 1008, 2192, 2560, 3200}``, ``ag_fact = {1, 2, 3, 2, 1}`` of NASA OBPG
``viirs_pxcvt.c``). The zone edges lie at 31.59 and 44.68 deg and the swath edge at 56.06 deg scan
angle, which puts every native sample 56.06 deg / 6304 apart. Along-scan and along-track sizes follow
the spherical-Earth scan geometry of Ichoku & Kaufman (2005) (the same formulas as MODIS), the
along-scan size divided by the aggregation factor's ratio to nadir (3). The nadir sizes
0.3845 km (scan) x 0.3605 km (track) at 824 km altitude were fitted to FIRMS: they reproduce the
``scan``/``track`` pair of all 16,480 S-NPP detections of the FIRMS 2023 Germany archive to the file's
0.01 km rounding (tests/test_frp.py).
"""

from __future__ import annotations

import numpy as np

#: Stefan-Boltzmann constant, W m-2 K-4 (CODATA 2018).
STEFAN_BOLTZMANN = 5.670374419e-8
#: First and second radiation constants for spectral radiance in W m-2 sr-1 um-1: 2hc^2, hc/k.
PLANCK_C1 = 1.191042972e8  # W m-2 sr-1 um4
PLANCK_C2 = 1.438776877e4  # um K

#: MIR-method constant of MODIS bands 21/22 (W m-2 sr-1 um-1 K-4), MOD14 C6 (Giglio et al. 2016).
MODIS_MIR_A = 3.0e-9
#: MIR-method constant of VIIRS I4, fitted here (see module docstring); W m-2 sr-1 um-1 K-4.
VIIRS_I4_MIR_A = 3.32e-9
#: VIIRS I4 band edges (um), Schroeder et al. 2014 / fire.md §1.1.
VIIRS_I4_BAND_UM = (3.55, 3.93)

#: MOD14 C5 FRP constant (MW km-2 K-8), Kaufman et al. 1998.
MOD14_C5_FRP_COEFF = 4.34e-19

EARTH_RADIUS_KM = 6378.137

# MODIS (Ichoku & Kaufman 2005; fire.md §1.2, verified against FP_power)
MODIS_ALTITUDE_KM = 705.0
MODIS_SAMPLES = 1354

# VIIRS I-band scan geometry (see module docstring)
VIIRS_ALTITUDE_KM = 824.0
VIIRS_I_SAMPLES = 6400
VIIRS_I_NATIVE_SAMPLES = 12608
VIIRS_SWATH_HALF_ANGLE_DEG = 56.06
VIIRS_I_NADIR_ALONG_SCAN_KM = 0.3845
VIIRS_I_NADIR_ALONG_TRACK_KM = 0.3605
_I_ZONE_START = np.array([0, 1280, 2016, 4384, 5120, 6400])
_I_ZONE_FACTOR = np.array([1, 2, 3, 2, 1])
_I_ZONE_NATIVE_START = np.concatenate([[0], np.cumsum(np.diff(_I_ZONE_START) * _I_ZONE_FACTOR)])


def planck_radiance(wavelength_um, temperature_k):
    """Spectral radiance (W m-2 sr-1 um-1) of a black body at ``temperature_k`` and ``wavelength_um``."""
    wl = np.asarray(wavelength_um, dtype=np.float64)
    t = np.asarray(temperature_k, dtype=np.float64)
    return PLANCK_C1 / (wl ** 5 * np.expm1(PLANCK_C2 / (wl * t)))


def mir_a_coefficient(wavelength_min_um, wavelength_max_um, t_min_k=650.0, t_max_k=1300.0):
    """Least-squares ``a`` of ``L(T) = a T^4`` for a rectangular band (Wooster et al. 2003).

    Parameters
    ----------
    wavelength_min_um, wavelength_max_um : float
        Band edges (um); equal values give a monochromatic fit.
    t_min_k, t_max_k : float
        Fire temperature range of the fit (650-1300 K in Wooster et al. 2003).

    Returns
    -------
    float
        ``a`` in W m-2 sr-1 um-1 K-4.
    """
    t = np.linspace(t_min_k, t_max_k, 651)
    wl = np.linspace(wavelength_min_um, wavelength_max_um, 381)
    rad = planck_radiance(wl[:, None], t[None, :]).mean(axis=0)
    x = t ** 4
    return float((x * rad).sum() / (x * x).sum())


def frp_mir(rad_fire, rad_background, pixel_area_m2, a=VIIRS_I4_MIR_A):
    """Fire radiative power by the MIR radiance method (Wooster et al. 2003), MW.

    Parameters
    ----------
    rad_fire, rad_background : array_like
        MIR spectral radiance of the fire pixel and of its background, W m-2 sr-1 um-1.
    pixel_area_m2 : array_like
        Pixel area, m2.
    a : float
        Band constant, W m-2 sr-1 um-1 K-4 (:data:`VIIRS_I4_MIR_A`, :data:`MODIS_MIR_A`).

    Returns
    -------
    ndarray or float
        FRP in MW (negative where the pixel is darker than its background; callers decide).
    """
    delta = np.asarray(rad_fire, dtype=np.float64) - np.asarray(rad_background, dtype=np.float64)
    return np.asarray(pixel_area_m2, dtype=np.float64) * STEFAN_BOLTZMANN / a * delta / 1e6


def _scan_sizes(theta, altitude_km):
    """Relative along-scan and along-track growth (1 at nadir) on a spherical Earth (Ichoku & Kaufman)."""
    r = EARTH_RADIUS_KM + altitude_km
    q = np.sqrt((EARTH_RADIUS_KM / r) ** 2 - np.sin(theta) ** 2)
    along_scan = EARTH_RADIUS_KM * (np.cos(theta) / q - 1.0) / altitude_km
    along_track = r * (np.cos(theta) - q) / altitude_km
    return along_scan, along_track


def modis_scan_angle_rad(sample):
    """MODIS 1 km scan angle (rad) of 0-based ``sample``: (sample - 676.5) / 705 (1 km / 705 km)."""
    return (np.asarray(sample, dtype=np.float64) - (MODIS_SAMPLES - 1) / 2.0) / MODIS_ALTITUDE_KM


def modis_pixel_size_km(sample):
    """MODIS 1 km pixel size (along scan, along track), km, of 0-based ``sample`` (Ichoku & Kaufman 2005)."""
    s, t = _scan_sizes(modis_scan_angle_rad(sample), MODIS_ALTITUDE_KM)
    return s, t


def frp_mod14_c5(t4_k, t4_background_k, sample):
    """MOD14 Collection 5 FRP, MW: 4.34e-19 (T4^8 - T4b^8) A[km2] (Kaufman et al. 1998).

    ``sample`` is the 0-based 1 km swath sample (FP_sample); the area follows :func:`modis_pixel_size_km`.
    """
    s, t = modis_pixel_size_km(sample)
    t4 = np.asarray(t4_k, dtype=np.float64)
    tb = np.asarray(t4_background_k, dtype=np.float64)
    return MOD14_C5_FRP_COEFF * (t4 ** 8 - tb ** 8) * s * t


def viirs_aggregation(sample):
    """On-board aggregation factor (3 nadir, 2 middle, 1 edge) of 0-based I-band ``sample``."""
    j = np.asarray(sample)
    zone = np.clip(np.searchsorted(_I_ZONE_START, j, side="right") - 1, 0, 4)
    return _I_ZONE_FACTOR[zone]


def viirs_scan_angle_rad(sample):
    """Scan angle (rad, negative before nadir) of the centre of 0-based I-band ``sample`` (0..6399)."""
    j = np.asarray(sample, dtype=np.float64)
    zone = np.clip(np.searchsorted(_I_ZONE_START, j, side="right") - 1, 0, 4)
    native = _I_ZONE_NATIVE_START[zone] + (j - _I_ZONE_START[zone] + 0.5) * _I_ZONE_FACTOR[zone]
    step = np.radians(VIIRS_SWATH_HALF_ANGLE_DEG) / (VIIRS_I_NATIVE_SAMPLES / 2)
    return (native - VIIRS_I_NATIVE_SAMPLES / 2) * step


def viirs_pixel_size_km(sample):
    """VIIRS I-band pixel size (along scan, along track), km, of 0-based ``sample``.

    These are FIRMS' ``scan`` and ``track`` (see the module docstring for the model and its check).
    """
    s, t = _scan_sizes(viirs_scan_angle_rad(sample), VIIRS_ALTITUDE_KM)
    agg = viirs_aggregation(sample)
    return VIIRS_I_NADIR_ALONG_SCAN_KM * s * agg / 3.0, VIIRS_I_NADIR_ALONG_TRACK_KM * t


def viirs_pixel_area_m2(sample):
    """VIIRS I-band pixel area (m2) of 0-based ``sample``: along-scan x along-track size."""
    s, t = viirs_pixel_size_km(sample)
    return s * t * 1e6
