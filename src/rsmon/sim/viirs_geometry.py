"""VIIRS I-band scan geometry for :mod:`rsmon.sim.viirs`: aggregation zones, bow-tie deletion, ground points.

What is modelled
----------------
* **Scan.** A whisk-broom scan of +-56.28 deg with 32 I-band detectors side by side along track; a scan
  every 1.7864 s. Along scan, the 12 608 native samples are aggregated on board 3:1 near nadir, 2:1
  in the middle zones and not at all at the edges, giving 6400 pixels with boundaries at pixels 1280,
  2016, 4384 and 5120 (SeaDAS ``viirs_pxcvt.c``: M-band starts 0/640/1008/2192/2560 with factors
  1/2/3/2/1, the I-band is twice that; the same I-band boundaries in the NASA geolocation ATBD pp. 55-56).
  The native sample angle is 56.28 deg / 6304, so a pixel is ~385 m wide at nadir, ~580 m at the
  end of the 3:1 zone, and ~820 m at the swath edge; along track a detector sees ~370 m at nadir and
  ~810 m at the edge (the slant range grows), which makes the scans overlap there: the bow tie.
* **Bow-tie deletion.** On board, detector rows 0, 1, 30, 31 are deleted outside the 3:1 zone
  (pixels < 2016 or >= 4384) and rows 2, 3, 28, 29 as well in the unaggregated edge zones (< 1280 or
  >= 5120): 4 and 8 of 32 detectors (NASA VIIRS L1B User Guide section 2.3; the row/column table is
  the one measured on real granules in a public audit script).
* **Orbit.** The sub-satellite point runs on a great circle through the granule centre, with the
  heading and speed of a sun-synchronous orbit of inclination 98.79 deg and period 101.44 min (NOAA-20;
  S-NPP and NOAA-21 fly the same orbit) seen from the rotating Earth: ascending by day, descending by
  night. Altitude 824 km, spherical Earth of radius 6371 km.
* **Angles.** Sensor zenith/azimuth from the line of sight; solar zenith/azimuth from the low-precision
  solar coordinates of the Astronomical Almanac (~0.01 deg) and Greenwich mean sidereal time; sun-glint
  angle between the view direction and the specular reflection of the sun.

Simplifications: every pixel of a scan is seen at the scan start time; no terrain parallax; sample 0
lies left of the ground track (west on an ascending pass; not checked against real files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

__all__ = [
    "AGGREGATION_BOUNDARIES",
    "AGGREGATION_FACTORS",
    "ALTITUDE_KM",
    "DETECTORS_PER_SCAN",
    "EARTH_RADIUS_KM",
    "MAX_SCAN_ANGLE_DEG",
    "N_PIXELS_FULL",
    "SCAN_PERIOD_S",
    "ScanGeometry",
    "aggregation_factor",
    "bowtie_deleted",
    "pixel_scan_angles",
    "pixel_size_km",
    "solar_unit_vector",
]

EARTH_RADIUS_KM = 6371.0
#: Nominal JPSS orbit altitude (S-NPP, NOAA-20, NOAA-21), km.
ALTITUDE_KM = 824.0
#: NOAA-20 orbit inclination (deg) and period (s) (Wikipedia NOAA-20 infobox: 98.79 deg, 101.44 min).
INCLINATION_DEG = 98.79
ORBIT_PERIOD_S = 101.44 * 60.0
EARTH_ROTATION_RAD_S = 7.2921159e-5
#: VIIRS scan period (s) and scan half-angle (deg).
SCAN_PERIOD_S = 1.7864
MAX_SCAN_ANGLE_DEG = 56.28
DETECTORS_PER_SCAN = 32
N_PIXELS_FULL = 6400
#: I-band aggregation zones: first pixel of zones 2..5 and the native samples per pixel in zones 1..5.
AGGREGATION_BOUNDARIES = (1280, 2016, 4384, 5120)
AGGREGATION_FACTORS = (1, 2, 3, 2, 1)
_NATIVE_PER_SIDE = 6304  # 1184 x 3 + 736 x 2 + 1280 x 1 native samples from nadir to the edge
#: Native along-scan sample angle, rad.
NATIVE_SAMPLE_RAD = math.radians(MAX_SCAN_ANGLE_DEG) / _NATIVE_PER_SIDE
#: Bow-tie deletion: (rows deleted, pixels where they are deleted: < first or >= second).
BOWTIE_TABLE = (((0, 1, 30, 31), 2016, 4384), ((2, 3, 28, 29), 1280, 5120))


def aggregation_factor(sample) -> np.ndarray:
    """Native samples aggregated into full-resolution I-band pixel ``sample`` (1, 2 or 3)."""
    sample = np.asarray(sample)
    zone = np.searchsorted(np.asarray(AGGREGATION_BOUNDARIES), sample, side="right")
    return np.asarray(AGGREGATION_FACTORS)[zone]


def pixel_scan_angles() -> tuple[np.ndarray, np.ndarray]:
    """Centre scan angle and angular width (rad) of the 6400 full-resolution I-band pixels.

    Negative angles are left of the ground track; pixel 0 is at -56.28 deg.
    """
    factors = aggregation_factor(np.arange(N_PIXELS_FULL))
    edges = np.concatenate([[0], np.cumsum(factors)]) - _NATIVE_PER_SIDE
    centre = 0.5 * (edges[:-1] + edges[1:]) * NATIVE_SAMPLE_RAD
    return centre, factors * NATIVE_SAMPLE_RAD


def _scan_advance_km(latitude_deg: float, ascending: bool) -> tuple[float, float]:
    """Ground-track heading (deg clockwise from north) and ground speed (km/s) at a latitude."""
    lat = math.radians(latitude_deg)
    ratio = math.cos(math.radians(INCLINATION_DEG)) / max(math.cos(lat), 1e-6)
    if abs(ratio) > 1.0:
        raise ValueError(f"latitude {latitude_deg} is beyond the orbit's reach")
    az0 = math.asin(ratio)  # inertial heading of an ascending pass (west of north: retrograde orbit)
    if not ascending:
        az0 = math.pi - az0
    speed = EARTH_RADIUS_KM * 2.0 * math.pi / ORBIT_PERIOD_S
    east = speed * math.sin(az0) - EARTH_RADIUS_KM * EARTH_ROTATION_RAD_S * math.cos(lat)
    north = speed * math.cos(az0)
    return math.degrees(math.atan2(east, north)), math.hypot(east, north)


def along_track_ifov_rad(latitude_deg: float = 35.0) -> float:
    """Along-track angular size of one detector, rad: 32 detectors tile one scan advance at nadir."""
    _, speed = _scan_advance_km(latitude_deg, True)
    return speed * SCAN_PERIOD_S / (DETECTORS_PER_SCAN * ALTITUDE_KM)


def pixel_size_km(sample, ifov_track_rad: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Along-scan and along-track footprint (km) of full-resolution I-band pixels (centre detector).

    Along scan: ``R * w * (k cos(t) / sqrt(1 - k^2 sin^2(t)) - 1)`` with ``k = (R + h) / R``, ``t`` the
    scan angle and ``w`` the pixel's angular width (1, 2 or 3 native samples); along track: the slant
    range times the detector's angular size.
    """
    theta_all, width_all = pixel_scan_angles()
    sample = np.asarray(sample, dtype=np.int64)
    theta, width = theta_all[sample], width_all[sample]
    k = (EARTH_RADIUS_KM + ALTITUDE_KM) / EARTH_RADIUS_KM
    s = np.sin(np.abs(theta))
    along_scan = EARTH_RADIUS_KM * width * (k * np.cos(theta) / np.sqrt(1.0 - (k * s) ** 2) - 1.0)
    slant = _slant_range_km(np.cos(theta))
    ifov = along_track_ifov_rad() if ifov_track_rad is None else ifov_track_rad
    return along_scan, slant * ifov


def _slant_range_km(cos_off_nadir: np.ndarray) -> np.ndarray:
    """Distance from the satellite to the ground along a ray ``acos(cos_off_nadir)`` off nadir."""
    r = EARTH_RADIUS_KM + ALTITUDE_KM
    b = r * cos_off_nadir
    return b - np.sqrt(b * b - (r * r - EARTH_RADIUS_KM ** 2))


def bowtie_deleted(detector, sample) -> np.ndarray:
    """True where detector row ``detector`` (0..31) of full-resolution pixel ``sample`` is deleted."""
    detector = np.asarray(detector)
    sample = np.asarray(sample)
    out = np.zeros(np.broadcast_shapes(detector.shape, sample.shape), dtype=bool)
    for rows, first, stop in BOWTIE_TABLE:
        out |= np.isin(detector, rows) & ((sample < first) | (sample >= stop))
    return out


def solar_unit_vector(t: datetime) -> np.ndarray:
    """Earth-fixed unit vector towards the sun at ``t`` (UTC).

    Low-precision solar coordinates of the Astronomical Almanac (good to ~0.01 deg for 1950-2050) and
    Greenwich mean sidereal time; the sub-solar point is (declination, right ascension - GMST).
    """
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    n = (t - datetime(2000, 1, 1, 12, tzinfo=timezone.utc)).total_seconds() / 86400.0
    mean_lon = math.radians((280.460 + 0.9856474 * n) % 360.0)
    anomaly = math.radians((357.528 + 0.9856003 * n) % 360.0)
    ecl_lon = mean_lon + math.radians(1.915) * math.sin(anomaly) + math.radians(0.020) * math.sin(2 * anomaly)
    obliquity = math.radians(23.439 - 4.0e-7 * n)
    ra = math.atan2(math.cos(obliquity) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(obliquity) * math.sin(ecl_lon))
    gmst = math.radians((280.46061837 + 360.98564736629 * n) % 360.0)
    lon = ra - gmst
    return np.array([math.cos(dec) * math.cos(lon), math.cos(dec) * math.sin(lon), math.sin(dec)])


def _unit(lon_deg: float, lat_deg: float) -> np.ndarray:
    lon, lat = math.radians(lon_deg), math.radians(lat_deg)
    return np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])


@dataclass
class ScanGeometry:
    """Ground geometry of a granule: ``n_scans`` scans of 32 detectors x the pixels in ``samples``.

    Parameters
    ----------
    center : (lon, lat)
        Sub-satellite point at the middle of the granule, degrees.
    start : datetime
        Start of the first scan (UTC).
    n_scans : int
        Scans in the granule.
    samples : numpy.ndarray
        Full-resolution pixel index (0..6399) of each output column (all 6400 for a real granule,
        every 8th for a decimated test granule).
    ascending : bool
        Ascending (day) or descending (night) pass.
    """

    center: tuple[float, float]
    start: datetime
    n_scans: int
    samples: np.ndarray
    ascending: bool = True

    def __post_init__(self) -> None:
        lon0, lat0 = self.center
        self.heading_deg, speed = _scan_advance_km(lat0, self.ascending)
        self.omega = speed / EARTH_RADIUS_KM  # rad/s of the sub-satellite point
        self.ifov_track = speed * SCAN_PERIOD_S / (DETECTORS_PER_SCAN * ALTITUDE_KM)
        c = _unit(lon0, lat0)
        east = np.array([-math.sin(math.radians(lon0)), math.cos(math.radians(lon0)), 0.0])
        north = np.cross(c, east)
        az = math.radians(self.heading_deg)
        self.c0 = c
        self.h0 = math.cos(az) * north + math.sin(az) * east  # along-track direction at the centre
        self.r0 = np.cross(self.h0, c)  # right of track at the centre
        theta_all, width_all = pixel_scan_angles()
        self.samples = np.asarray(self.samples, dtype=np.int64)
        theta = theta_all[self.samples]
        self.width = width_all[self.samples]
        alpha = (np.arange(DETECTORS_PER_SCAN) - (DETECTORS_PER_SCAN - 1) / 2.0) * self.ifov_track
        ca, sa = np.cos(alpha)[:, None], np.sin(alpha)[:, None]
        ct, st = np.cos(theta)[None, :], np.sin(theta)[None, :]
        r = EARTH_RADIUS_KM + ALTITUDE_KM
        # ray u = cos(a) (cos(t) down + sin(t) right) + sin(a) along; ground point G = S + range * u
        self.range_km = _slant_range_km(ca * ct)
        self.P = r - self.range_km * ca * ct  # G = P n + Q right + R along (per detector x column)
        self.Q = self.range_km * ca * st
        self.R = self.range_km * sa * np.ones_like(ct)
        self.cos_vza = (r * self.P - EARTH_RADIUS_KM ** 2) / (EARTH_RADIUS_KM * self.range_km)
        # along-scan size: derivative of the ground distance with scan angle (spherical Earth)
        k = r / EARTH_RADIUS_KM
        along_scan = EARTH_RADIUS_KM * self.width * (k * np.cos(theta) / np.sqrt(1.0 - (k * np.sin(theta)) ** 2) - 1.0)
        self.along_scan_km = along_scan
        self.pixel_area_km2 = along_scan[None, :] * self.range_km * self.ifov_track
        self.bowtie = bowtie_deleted(np.arange(DETECTORS_PER_SCAN)[:, None], self.samples[None, :])

    # -- orbit -------------------------------------------------------------------------------------

    def scan_time(self, scan) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(seconds=float(scan) * SCAN_PERIOD_S)

    def frame(self, scan: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors (nadir point n, along-track a, right c) at the start of ``scan``."""
        phi = self.omega * (scan - self.n_scans / 2.0) * SCAN_PERIOD_S
        n = self.c0 * math.cos(phi) + self.h0 * math.sin(phi)
        a = -self.c0 * math.sin(phi) + self.h0 * math.cos(phi)
        return n, a, np.cross(a, n)

    # -- ground points -----------------------------------------------------------------------------

    def ground(self, scan: int) -> dict[str, np.ndarray]:
        """Ground points and angles of every pixel of one scan, arrays of shape (32, n_columns).

        Returns
        -------
        dict
            ``lat``, ``lon``, ``sza``, ``saa``, ``vza``, ``vaa``, ``glint`` (degrees; azimuths clockwise
            from north in -180..180) and ``s_km``/``q_km`` (along-track and right-of-track coordinates of
            the ground point relative to the granule centre, km).
        """
        n, a, c = (v[:, None, None] for v in self.frame(scan))
        s = solar_unit_vector(self.scan_time(scan))[:, None, None]
        return self._ground(self.P, self.Q, self.R, self.range_km, self.cos_vza, n, a, c, s)

    def ground_points(self, scans, detectors, columns) -> dict[str, np.ndarray]:
        """Like :meth:`ground` for scattered pixels (1-D arrays of scan, detector and column)."""
        scans, detectors, columns = (np.asarray(v, dtype=np.int64) for v in (scans, detectors, columns))
        frames = {int(k): self.frame(int(k)) for k in np.unique(scans)}
        suns = {int(k): solar_unit_vector(self.scan_time(int(k))) for k in frames}
        n, a, c = (np.stack([frames[int(k)][i] for k in scans], axis=1) for i in range(3))
        s = np.stack([suns[int(k)] for k in scans], axis=1)
        idx = (detectors, columns)
        return self._ground(self.P[idx], self.Q[idx], self.R[idx], self.range_km[idx], self.cos_vza[idx],
                            n, a, c, s)

    def _ground(self, P, Q, R, rng, cos_vza, n, a, c, s) -> dict[str, np.ndarray]:
        rad = EARTH_RADIUS_KM
        G = [P * n[i] + Q * c[i] + R * a[i] for i in range(3)]
        h = np.hypot(G[0], G[1])
        lat = np.degrees(np.arctan2(G[2], h))
        lon = np.degrees(np.arctan2(G[1], G[0]))
        # local east/north unit vectors at G
        ex, ey = -G[1] / h, G[0] / h
        nx, ny, nz = -G[2] * G[0] / (rad * h), -G[2] * G[1] / (rad * h), h / rad
        r_sat = EARTH_RADIUS_KM + ALTITUDE_KM
        v = [(r_sat * n[i] - G[i]) for i in range(3)]  # towards the satellite
        vaa = np.degrees(np.arctan2(v[0] * ex + v[1] * ey, v[0] * nx + v[1] * ny + v[2] * nz))
        s_up = (G[0] * s[0] + G[1] * s[1] + G[2] * s[2]) / rad
        sza = np.degrees(np.arccos(np.clip(s_up, -1.0, 1.0)))
        saa = np.degrees(np.arctan2(s[0] * ex + s[1] * ey, s[0] * nx + s[1] * ny + s[2] * nz))
        # glint: angle between the view direction and the specular reflection of the sun
        s_dot_v = (s[0] * v[0] + s[1] * v[1] + s[2] * v[2]) / rng
        cos_glint = 2.0 * s_up * cos_vza - s_dot_v
        glint = np.degrees(np.arccos(np.clip(cos_glint, -1.0, 1.0)))
        s_km = rad * np.arctan2(G[0] * self.h0[0] + G[1] * self.h0[1] + G[2] * self.h0[2],
                                G[0] * self.c0[0] + G[1] * self.c0[1] + G[2] * self.c0[2])
        q_km = rad * np.arcsin(np.clip((G[0] * self.r0[0] + G[1] * self.r0[1] + G[2] * self.r0[2]) / rad,
                                       -1.0, 1.0))
        vza = np.degrees(np.arccos(np.clip(cos_vza, -1.0, 1.0))) * np.ones_like(lat)
        return {"lat": lat, "lon": lon, "sza": sza, "saa": saa, "vza": vza, "vaa": vaa, "glint": glint,
                "s_km": s_km, "q_km": q_km}

    def orbit_state(self, scan: int) -> tuple[np.ndarray, np.ndarray]:
        """Satellite position (m) and velocity (m/s), Earth-fixed, at the start of ``scan``."""
        n, a, _ = self.frame(scan)
        r = (EARTH_RADIUS_KM + ALTITUDE_KM) * 1000.0
        return r * n, r * self.omega * a
