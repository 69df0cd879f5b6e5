"""Background scene and radiometry of :mod:`rsmon.sim.viirs`: Planck functions, surfaces, clouds, glint.

The scene is laid out in track coordinates relative to the granule centre (``s`` km along track,
``q`` km right of track), so every granule, small or full, day or night, crosses the same kinds of
ground: cropland with temperature and reflectance texture, hills to the left, a hot bright desert-like
surface far left, two lakes (one placed under the daytime sun-glint spot), a meandering river, the
coast and sea on the right, and broken clouds. Smooth fields come from hash-seeded value noise on a
2 km raster (ground-fixed, the same for any granule size); per-pixel heterogeneity and sensor noise
are white.

Radiometry, per band at the band centre (3.74 um for I4, 11.45 um for I5; monochromatic, no atmosphere):
``L = eps * B(T_surface) + rho * E_sun * cos(sza) / pi`` with ``rho = 1 - eps`` (Kirchhoff) plus specular
sun glint on water, mixed linearly in radiance with the cloud fraction. ``E_sun`` is the 5778 K
blackbody sun at 1 AU (11.7 W m-2 um-1 at 3.74 um); the reflected term makes daytime land ~8 K warmer in
I4 than its kinetic temperature and bright surfaces (desert, clouds, glint) much warmer, as in real
VIIRS data. I1-I3 are reflectance factors (not divided by cos(sza)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "I4_WAVELENGTH_UM",
    "I5_WAVELENGTH_UM",
    "PLANCK_C1",
    "PLANCK_C2",
    "STEFAN_BOLTZMANN",
    "Scene",
    "brightness_temperature",
    "planck_radiance",
]

#: First and second radiation constants for spectral radiance per um: 2hc^2 in W m-2 sr-1 um4 and
#: hc/k in um K (CODATA 2018 values of h, c, k).
PLANCK_C1 = 1.191042972e8
PLANCK_C2 = 1.438776877e4
#: Stefan-Boltzmann constant, W m-2 K-4 (CODATA 2018).
STEFAN_BOLTZMANN = 5.670374419e-8
#: Band centres, um (VIIRS I4 3.55-3.93, I5 10.5-12.4; shared/reference/fire.md section 1.1).
I4_WAVELENGTH_UM = 3.74
I5_WAVELENGTH_UM = 11.45
#: Solar spectral irradiance at 1 AU at the I4 centre: pi B(3.74 um, 5778 K) (R_sun / 1 AU)^2.
SUN_TEMPERATURE_K = 5778.0
SUN_SOLID_ANGLE_FACTOR = (6.957e5 / 1.495978707e8) ** 2


def planck_radiance(wavelength_um: float, temperature_k) -> np.ndarray:
    """Blackbody spectral radiance, W m-2 sr-1 um-1, at ``wavelength_um`` and ``temperature_k`` (K)."""
    t = np.asarray(temperature_k, dtype=np.float64)
    with np.errstate(over="ignore"):
        return PLANCK_C1 / (wavelength_um ** 5 * np.expm1(PLANCK_C2 / (wavelength_um * t)))


def brightness_temperature(wavelength_um: float, radiance) -> np.ndarray:
    """Inverse of :func:`planck_radiance`: the temperature (K) of a blackbody of that radiance."""
    rad = np.asarray(radiance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return PLANCK_C2 / (wavelength_um * np.log1p(PLANCK_C1 / (wavelength_um ** 5 * rad)))


def solar_irradiance(wavelength_um: float) -> float:
    """Top-of-atmosphere solar spectral irradiance at 1 AU, W m-2 um-1 (5778 K blackbody sun)."""
    return math.pi * float(planck_radiance(wavelength_um, SUN_TEMPERATURE_K)) * SUN_SOLID_ANGLE_FACTOR


# --------------------------------------------------------------------------------------------------
# Surfaces (emissivities of the 3.7 and 11 um windows and reflectance factors of I1/I2/I3): typical
# values for cropland, sand, water and water clouds; not tuned to a particular scene.
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Surface:
    eps4: float
    eps5: float
    rho: tuple[float, float, float]


LAND = _Surface(0.94, 0.975, (0.09, 0.28, 0.26))
DESERT = _Surface(0.80, 0.95, (0.30, 0.36, 0.48))
WATER = _Surface(0.975, 0.99, (0.035, 0.020, 0.008))
CLOUD = _Surface(0.85, 0.98, (0.65, 0.62, 0.45))

#: land_water_mask codes (VNP03IMG flag_values/flag_meanings).
LWM_SHALLOW_OCEAN, LWM_LAND, LWM_COASTLINE, LWM_SHALLOW_INLAND, LWM_DEEP_INLAND, LWM_DEEP_OCEAN = 0, 1, 2, 3, 5, 7

# Layout in track coordinates (km): (s, q) centre and (s, q) semi-axes.
LAKES = (((20.0, -240.0), (22.0, 12.0)), ((-60.0, 150.0), (15.0, 9.0)))
DESERT_CENTRE, DESERT_AXES = (30.0, -820.0), (80.0, 110.0)
RIVER_WIDTH_KM = 0.9
SHALLOW_SEA_KM = 60.0
RASTER_KM = 2.0
#: Cloud noise level above which a pixel is partly cloudy (~25 % of pixels).
CLOUD_THRESHOLD = 0.7
_LATTICES = {  # channel: ((lattice spacing km, weight), ...)
    "temp": ((64.0, 0.6), (16.0, 0.6), (4.0, 0.5)),
    "cloud": ((128.0, 0.8), (32.0, 0.6), (8.0, 0.35)),
    "refl": ((32.0, 0.6), (8.0, 0.6), (4.0, 0.4)),
    "hill": ((128.0, 0.7), (32.0, 0.5), (8.0, 0.3)),
    "ctop": ((64.0, 0.7), (16.0, 0.5)),
}
_CHANNELS = tuple(_LATTICES)


def _coast_q(s):
    return 520.0 + 40.0 * np.sin(s / 70.0) + 15.0 * np.sin(s / 23.0 + 1.3)


def _river_s(q):
    return -40.0 + 25.0 * np.sin(q / 60.0) + 8.0 * np.sin(q / 17.0 + 0.7)


def _hash_uniform(i: np.ndarray, j: np.ndarray, key: int) -> np.ndarray:
    """Uniform [-sqrt(3), sqrt(3)] (unit variance) from integer lattice coordinates (splitmix64 mix)."""
    with np.errstate(over="ignore"):
        z = (i.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ (j.astype(np.uint64) + np.uint64(0x632BE59BD9B4E019)) * np.uint64(0xBF58476D1CE4E5B9)
             ^ np.uint64(key & 0xFFFFFFFFFFFFFFFF))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (2.0 * u - 1.0) * math.sqrt(3.0)


class Scene:
    """Ground-fixed fields of one simulated granule (see the module docstring).

    Parameters
    ----------
    seed : int
        Seed of the noise lattices.
    s_range, q_range : (float, float)
        Extent (km) of the granule in track coordinates; the raster covers it with a margin.
    """

    def __init__(self, seed: int, s_range: tuple[float, float], q_range: tuple[float, float]):
        self.seed = int(seed)
        big = max(spacing for layers in _LATTICES.values() for spacing, _ in layers)
        self.s0 = math.floor((s_range[0] - 20.0) / big) * big
        self.q0 = math.floor((q_range[0] - 20.0) / big) * big
        ns = int(math.ceil((s_range[1] + 20.0 - self.s0) / RASTER_KM)) + 2
        nq = int(math.ceil((q_range[1] + 20.0 - self.q0) / RASTER_KM)) + 2
        s = self.s0 + RASTER_KM * np.arange(ns)
        q = self.q0 + RASTER_KM * np.arange(nq)
        self.raster = np.stack([self._channel(name, k, s, q) for k, name in enumerate(_CHANNELS)],
                               axis=-1).astype(np.float32)

    def _channel(self, name: str, index: int, s: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Value noise of unit variance on the raster nodes (s, q): bilinear lattices summed."""
        out = np.zeros((s.size, q.size))
        total = 0.0
        for level, (spacing, weight) in enumerate(_LATTICES[name]):
            fs, fq = s / spacing, q / spacing
            i0, j0 = np.floor(fs).astype(np.int64), np.floor(fq).astype(np.int64)
            ws, wq = (fs - i0)[:, None], (fq - j0)[None, :]
            ii = np.arange(i0.min(), i0.max() + 2)
            jj = np.arange(j0.min(), j0.max() + 2)
            key = ((self.seed + 1) * 1_000_003 + index * 7919 + level * 104729) * 2654435761
            lattice = _hash_uniform(ii[:, None], jj[None, :], key)
            a = lattice[(i0 - ii[0])[:, None], (j0 - jj[0])[None, :]]
            b = lattice[(i0 - ii[0] + 1)[:, None], (j0 - jj[0])[None, :]]
            c = lattice[(i0 - ii[0])[:, None], (j0 - jj[0] + 1)[None, :]]
            d = lattice[(i0 - ii[0] + 1)[:, None], (j0 - jj[0] + 1)[None, :]]
            # smoothstep weights hide the lattice
            ws3, wq3 = ws * ws * (3 - 2 * ws), wq * wq * (3 - 2 * wq)
            out += weight * ((a * (1 - ws3) + b * ws3) * (1 - wq3) + (c * (1 - ws3) + d * ws3) * wq3)
            total += weight * weight
        return out / math.sqrt(total) * 1.3  # smoothstep interpolation loses ~40 % of the variance

    def sample(self, s_km: np.ndarray, q_km: np.ndarray) -> dict[str, np.ndarray]:
        """The noise channels (float32) bilinearly interpolated at track coordinates (km)."""
        fs = (s_km - self.s0) / RASTER_KM
        fq = (q_km - self.q0) / RASTER_KM
        i0 = np.clip(np.floor(fs).astype(np.int64), 0, self.raster.shape[0] - 2)
        j0 = np.clip(np.floor(fq).astype(np.int64), 0, self.raster.shape[1] - 2)
        ws = (fs - i0).astype(np.float32)[..., None]
        wq = (fq - j0).astype(np.float32)[..., None]
        r = self.raster
        val = ((r[i0, j0] * (1 - ws) + r[i0 + 1, j0] * ws) * (1 - wq)
               + (r[i0, j0 + 1] * (1 - ws) + r[i0 + 1, j0 + 1] * ws) * wq)
        return {name: val[..., k] for k, name in enumerate(_CHANNELS)}

    # -- surfaces -----------------------------------------------------------------------------------

    @staticmethod
    def water(s_km: np.ndarray, q_km: np.ndarray, pixel_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Water fraction of each pixel (0..1) and its land_water_mask code."""
        to_coast = q_km - _coast_q(s_km)
        f_sea = np.clip(0.5 + to_coast / pixel_km, 0.0, 1.0)
        f_river = np.clip(0.5 + (RIVER_WIDTH_KM / 2.0 - np.abs(s_km - _river_s(q_km))) / pixel_km, 0.0, 1.0)
        f_river = np.where(to_coast < 0.0, f_river, 0.0)
        f_lake = np.zeros_like(f_sea)
        for (sc, qc), (a, b) in LAKES:
            rho = np.hypot((s_km - sc) / a, (q_km - qc) / b)
            f_lake = np.maximum(f_lake, np.clip(0.5 + (1.0 - rho) * min(a, b) / pixel_km, 0.0, 1.0))
        frac = np.maximum(np.maximum(f_sea, f_river), f_lake)
        code = np.full(s_km.shape, LWM_LAND, dtype=np.uint8)
        code[f_river > 0.5] = LWM_SHALLOW_INLAND
        code[f_lake > 0.5] = LWM_DEEP_INLAND
        deep = to_coast > SHALLOW_SEA_KM
        code[f_sea > 0.5] = np.where(deep, LWM_DEEP_OCEAN, LWM_SHALLOW_OCEAN)[f_sea > 0.5]
        code[(f_sea > 0.05) & (f_sea < 0.95)] = LWM_COASTLINE
        return frac, code

    @staticmethod
    def desert(s_km: np.ndarray, q_km: np.ndarray, refl_noise: np.ndarray) -> np.ndarray:
        """Weight (0..1) of the hot bright desert-like surface."""
        rho = np.hypot((s_km - DESERT_CENTRE[0]) / DESERT_AXES[0], (q_km - DESERT_CENTRE[1]) / DESERT_AXES[1])
        return np.clip(3.0 * (1.0 - rho) + 0.3 * refl_noise, 0.0, 1.0)

    def masks(self, s_km: np.ndarray, q_km: np.ndarray, pixel_km) -> dict[str, np.ndarray]:
        """Water fraction, desert weight and cloud fraction at track coordinates (no radiometry)."""
        noise = self.sample(s_km, q_km)
        frac_w, _ = self.water(s_km, q_km, pixel_km)
        return {"frac_water": frac_w, "desert": self.desert(s_km, q_km, noise["refl"]),
                "cloud": np.clip((noise["cloud"] - CLOUD_THRESHOLD) * 1.2, 0.0, 1.0)}

    def render(self, g: dict[str, np.ndarray], pixel_km: np.ndarray, rng: np.random.Generator,
               with_reflectance: bool) -> dict[str, np.ndarray]:
        """Background radiances (I4, I5), reflectances (I1-I3), masks and height at ground points ``g``.

        ``g`` is the output of :meth:`ScanGeometry.ground`; ``pixel_km`` the along-scan pixel size
        (broadcastable). Returns float64 radiances ``l4``/``l5`` (W m-2 sr-1 um-1), float32
        ``rho1..3``, ``cloud`` and ``desert`` weights, water ``frac_water``, ``lwm`` (uint8) and
        ``height`` (m).
        """
        s, q = g["s_km"], g["q_km"]
        noise = self.sample(s, q)
        frac_w, lwm = self.water(s, q, pixel_km)
        w_des = self.desert(s, q, noise["refl"])
        cloud = np.clip((noise["cloud"] - CLOUD_THRESHOLD) * 1.2, 0.0, 1.0)
        hill = np.clip((-400.0 - q) / 250.0, 0.0, 1.0)
        height = np.clip(hill * (900.0 + 350.0 * noise["hill"]) + 30.0 + 20.0 * noise["hill"], 0.0, None)
        height = np.where(frac_w > 0.5, 0.0, height)

        mu = np.cos(np.radians(g["sza"]))
        sun = np.clip(mu, 0.0, None)  # cos(sza), 0 at night
        shape = s.shape
        field = rng.standard_normal(shape, dtype=np.float32)  # per-pixel surface heterogeneity
        t_land = 290.0 + 24.0 * np.sqrt(sun) + 3.0 * noise["temp"] + 0.8 * field - 0.0065 * height
        t_des = 291.0 + 42.0 * np.sqrt(sun) + 1.5 * noise["temp"] + 0.5 * field
        t_water = np.where(lwm == LWM_DEEP_OCEAN, 292.5, 295.0) + 0.4 * noise["temp"]
        t_cloud = 255.0 - 14.0 * noise["ctop"]

        out: dict[str, np.ndarray] = {}
        for band, wl, eps_name in (("l4", I4_WAVELENGTH_UM, "eps4"), ("l5", I5_WAVELENGTH_UM, "eps5")):
            e_sun = solar_irradiance(wl) * sun / math.pi if band == "l4" else 0.0

            def surf(t, kind: _Surface, extra_rho=0.0):
                eps = getattr(kind, eps_name)
                return eps * planck_radiance(wl, t) + ((1.0 - eps) + extra_rho) * e_sun

            glint = 0.15 * np.exp(-(g["glint"] / 10.0) ** 2) if band == "l4" else 0.0
            land = (1.0 - w_des) * surf(t_land, LAND) + w_des * surf(t_des, DESERT)
            ground = (1.0 - frac_w) * land + frac_w * surf(t_water, WATER, glint)
            out[band] = (1.0 - cloud) * ground + cloud * surf(t_cloud, CLOUD)

        if with_reflectance:
            glint_vis = 0.35 * np.exp(-(g["glint"] / 10.0) ** 2)
            tex = 1.0 + 0.15 * noise["refl"]
            for k in range(3):
                land = ((1.0 - w_des) * LAND.rho[k] * tex + w_des * DESERT.rho[k] * (1.0 + 0.05 * noise["refl"]))
                ground = (1.0 - frac_w) * land + frac_w * (WATER.rho[k] + glint_vis)
                out[f"rho{k + 1}"] = ((1.0 - cloud) * ground + cloud * CLOUD.rho[k]).astype(np.float32)
        out.update(cloud=cloud, desert=w_des, frac_water=frac_w, lwm=lwm, height=height)
        return out
