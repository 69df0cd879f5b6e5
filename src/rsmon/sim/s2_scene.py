"""The landscape of the simulated Sentinel-2 pair: land cover, vegetation, clouds and reflectances.

Every field is a function of the global 10 m pixel (row, col), evaluated on any set of rows x cols
(strips while writing, patch boxes while planning), so a tile is produced window by window with
identical results whatever the window size. Smooth fields are sums of bilinearly interpolated
coarse random grids (value noise); thresholds are quantiles of a coarse sample so the cover shares
hold at any tile size.

Land cover (10 m): water (lakes at low terrain and one meandering river), forest (high terrain),
built-up (towns), natural bare ground, and cropland in rectangular parcels with per-parcel green
fraction. Between the two dates (May -> June, North China plain) crops grow, a share of the winter
wheat parcels is harvested (green fraction drops to stubble: a real, non-human-activity change that
a detector must not report as clearing), and the radiometry shifts slightly (gain and offset).

Surface reflectances of the end members (B02, B03, B04, B08, B11, B12) are typical values of the
USGS and ECOSTRESS spectral libraries convolved to MSI bands, rounded [assumed, representative].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["CHANGE_CLASSES", "COVER_NAMES", "S2_SIM_BANDS", "Landscape", "SPECTRA"]

#: Bands written by the simulator, in order: 10 m then 20 m.
S2_SIM_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")

# Cover classes (internal codes, also indexes into SPECTRA).
WATER, CROP, FOREST, BUILT, BARE, CONSTRUCTION, MINING, POND, CLEARED = range(9)
COVER_NAMES = ("water", "cropland", "forest", "built-up", "bare", "construction", "mining", "pond", "cleared")
#: Truth codes of the change classes (0 = no change) -> (name, cover after the change).
CHANGE_CLASSES = {1: ("construction", CONSTRUCTION), 2: ("mining", MINING), 3: ("new_water", POND),
                  4: ("vegetation_clearing", CLEARED)}

#: Per cover class: (green end member, background end member) surface reflectance, B02..B12.
_VEG = (0.030, 0.065, 0.035, 0.380, 0.200, 0.095)
_CANOPY = (0.025, 0.045, 0.025, 0.300, 0.150, 0.070)
_SOIL = (0.090, 0.125, 0.160, 0.230, 0.310, 0.270)
_WATER = (0.050, 0.060, 0.040, 0.020, 0.010, 0.006)
_BUILT = (0.110, 0.120, 0.130, 0.170, 0.210, 0.190)
_BARE = (0.120, 0.160, 0.200, 0.260, 0.340, 0.300)
_CONCRETE = (0.190, 0.210, 0.230, 0.260, 0.300, 0.270)
_QUARRY = (0.170, 0.210, 0.250, 0.290, 0.400, 0.350)
_TURBID = (0.070, 0.090, 0.070, 0.040, 0.015, 0.008)
SPECTRA = np.array([
    (_WATER, _WATER), (_VEG, _SOIL), (_CANOPY, _SOIL), (_VEG, _BUILT), (_VEG, _BARE),
    (_VEG, _CONCRETE), (_VEG, _QUARRY), (_TURBID, _TURBID), (_VEG, _SOIL),
], dtype=np.float32).transpose(2, 0, 1)  # (band, class, end member)
CLOUD = np.array((0.45, 0.46, 0.47, 0.52, 0.38, 0.28), dtype=np.float32)
#: Sensor noise, reflectance standard deviation per band [assumed; S2 MSI SNR > 100 at reference radiance].
NOISE = np.array((0.004, 0.004, 0.004, 0.006, 0.005, 0.005), dtype=np.float32)
#: Shadow offset (rows, cols) from a cloud: sun in the south-east at 10:30 local time, cloud ~1.5 km high.
SHADOW_OFFSET = (40, 30)

# Target cover shares (the rest is cropland).
_WATER_SHARE, _FOREST_SHARE, _BUILT_SHARE, _BARE_SHARE = 0.04, 0.20, 0.08, 0.04
_PARCEL = (30, 42)  # cropland parcel size, rows x cols of 10 m pixels


class _Field:
    """Value noise: a coarse random grid (``cell`` pixels apart) bilinearly interpolated."""

    def __init__(self, rng: np.random.Generator, size: int, cell: float) -> None:
        n = int(math.ceil(size / cell)) + 2
        self.grid = rng.random((n, n), dtype=np.float32) - np.float32(0.5)
        self.cell = float(cell)

    @staticmethod
    def _weights(index: np.ndarray, cell: float):
        pos = index / cell
        lo = np.floor(pos).astype(np.intp)
        return lo, (pos - lo).astype(np.float32)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        i, wy = self._weights(rows, self.cell)
        j, wx = self._weights(cols, self.cell)
        tmp = self.grid[i] * (1 - wy)[:, None] + self.grid[i + 1] * wy[:, None]
        return tmp[:, j] * (1 - wx) + tmp[:, j + 1] * wx


class _Fbm:
    """A weighted sum of value-noise octaves."""

    def __init__(self, rng: np.random.Generator, size: int, cells, weights) -> None:
        self.octaves = [(_Field(rng, size, c), np.float32(w)) for c, w in zip(cells, weights)]

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = None
        for field, weight in self.octaves:
            value = field(rows, cols) * weight
            out = value if out is None else out + value
        return out


@dataclass
class Cover:
    """Land cover of a window: class codes, green fraction at the two dates, brightness texture."""

    cls: np.ndarray
    green_before: np.ndarray
    green_after: np.ndarray
    texture: np.ndarray


class Landscape:
    """The simulated landscape of a ``size`` x ``size`` tile (10 m pixels), deterministic in ``seed``."""

    def __init__(self, size: int, seed: int, *, cloud_fraction: float = 0.08, harvest_fraction: float = 0.1) -> None:
        rng = np.random.default_rng([seed, 1])
        self.size = size
        self.terrain = _Fbm(rng, size, (1500, 400, 100), (0.55, 0.3, 0.15))
        self.towns = _Fbm(rng, size, (700, 160), (0.7, 0.3))
        self.barren = _Fbm(rng, size, (500, 120), (0.7, 0.3))
        self.texture = _Field(rng, size, 9)
        self.clouds = _Fbm(rng, size, (900, 220, 50), (0.55, 0.3, 0.15))
        prow, pcol = _PARCEL
        shape = (size // prow + 2, size // pcol + 2)
        self.parcel_green = rng.uniform(0.25, 0.9, shape).astype(np.float32)
        self.parcel_growth = rng.uniform(-0.03, 0.15, shape).astype(np.float32)
        self.parcel_harvest = rng.random(shape) < harvest_fraction
        self.parcel_shift = rng.integers(0, pcol, shape[0])  # staggered parcel columns per parcel row
        self.river = (rng.uniform(0.3, 0.7) * size, rng.uniform(0.02, 0.05) * size, rng.uniform(0.3, 0.8) * size,
                      rng.uniform(0, 2 * math.pi), 3 + 4 * rng.random())
        self.gain, self.offset = np.float32(rng.uniform(1.01, 1.05)), np.float32(rng.uniform(0.0, 0.006))
        sample = np.linspace(0, size - 1, 256).astype(np.intp)
        q = np.quantile
        t, u, b, c = (f(sample, sample) for f in (self.terrain, self.towns, self.barren, self.clouds))
        self.water_max, self.forest_min = q(t, _WATER_SHARE), q(t, 1 - _FOREST_SHARE)
        self.town_min, self.bare_min = q(u, 1 - _BUILT_SHARE), q(b, 1 - _BARE_SHARE)
        cloud_fraction = min(max(cloud_fraction, 0.0), 0.99)
        self.cloud_min = q(c, 1 - cloud_fraction) if cloud_fraction > 0 else np.inf
        self.cloud_soft = max(float(q(c, 0.999) - self.cloud_min), 1e-6) * 0.35

    # ---------------------------------------------------------------------------------- cover
    def _river(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        centre, amplitude, wavelength, phase, half_width = self.river
        axis = centre + amplitude * np.sin(2 * math.pi * rows / wavelength + phase)
        return np.abs(cols[None, :] - axis[:, None]) <= half_width

    def _parcels(self, rows: np.ndarray, cols: np.ndarray):
        prow, pcol = _PARCEL
        pr = rows // prow
        pc = (cols[None, :] + self.parcel_shift[pr][:, None]) // pcol
        return pr[:, None], pc

    def cover(self, rows: np.ndarray, cols: np.ndarray) -> Cover:
        """Land cover of the window ``rows`` x ``cols`` (1-D arrays of global pixel indexes)."""
        terrain, towns, barren = self.terrain(rows, cols), self.towns(rows, cols), self.barren(rows, cols)
        texture = self.texture(rows, cols)
        cls = np.full(terrain.shape, CROP, dtype=np.uint8)
        cls[barren > self.bare_min] = BARE
        cls[terrain > self.forest_min] = FOREST
        cls[towns > self.town_min] = BUILT
        cls[(terrain < self.water_max) | self._river(rows, cols)] = WATER
        pr, pc = self._parcels(rows, cols)
        green = self.parcel_green[pr, pc] + np.float32(0.1) * texture
        after = np.where(self.parcel_harvest[pr, pc], np.float32(0.08), green + self.parcel_growth[pr, pc])
        forest = np.float32(0.88) + np.float32(0.2) * texture
        town = np.float32(0.15) + np.float32(0.3) * texture
        for code, value in ((FOREST, forest), (BUILT, town)):
            mask = cls == code
            green[mask] = value[mask]
            after[mask] = value[mask] + np.float32(0.02)
        for code in (WATER, BARE):
            mask = cls == code
            green[mask] = 0.0
            after[mask] = 0.0
        return Cover(cls, np.clip(green, 0, 1), np.clip(after, 0, 1), texture)

    # ---------------------------------------------------------------------------------- sky
    def cloud_opacity(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Cloud opacity 0..1 of the after scene."""
        return np.clip((self.clouds(rows, cols) - self.cloud_min) / self.cloud_soft, 0, 1)

    def shadow_depth(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Cloud-shadow depth 0..1 of the after scene (the cloud opacity displaced by the sun angle)."""
        dr, dc = SHADOW_OFFSET
        return self.cloud_opacity(np.minimum(rows + dr, self.size - 1), np.minimum(cols + dc, self.size - 1))

    # ---------------------------------------------------------------------------------- radiometry
    def render(self, cover: Cover, cls: np.ndarray, green: np.ndarray, seed: int, row0: int, after: bool,
               sky: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """L2A DN of a window: (4, h, w) uint16 for the 10 m bands and (2, h/2, w/2) float32 20 m
        reflectance (2 x 2 means, to be encoded by the caller).

        ``sky`` = (cloud opacity, shadow depth, no-data mask) for the after scene. Noise is a hash of
        (seed, scene, band, global row, col): the same pixel gets the same noise in any window.
        """
        h, w = cls.shape
        dn10 = np.empty((4, h, w), dtype=np.uint16)
        sum20 = np.zeros((2, h // 2, w // 2), dtype=np.float32)
        if sky is None:
            zeros = np.zeros((1, 1), dtype=np.float32)
            sky = (zeros, zeros, np.zeros((1, 1), dtype=bool))
        gain, offset = (self.gain, self.offset) if after else (np.float32(1), np.float32(0))
        _render(cls, green, cover.texture, sky[0], sky[1], sky[2], SPECTRA, CLOUD, NOISE, gain, offset,
                np.uint64(2 * seed + int(after)), row0, sky[0].shape == cls.shape, dn10, sum20)
        return dn10, sum20


@njit(cache=True, nogil=True, inline="always")
def _uniform(key):
    """Uniform [0, 1) float32 from a 64-bit key (splitmix64 finaliser, Steele et al. 2014)."""
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float32((z >> np.uint64(40)) * (1.0 / 16777216.0))


@njit(cache=True, nogil=True)
def _render(cls, green, texture, opacity, shadow, nodata, spectra, cloud, noise, gain, offset, key0, row0, sky,
            dn10, sum20):
    """Mix end members by green fraction, add texture and noise, apply gain, shadow and cloud; encode
    10 m bands as L2A DN (offset +1000, 0 at no data) and accumulate 20 m means."""
    h, w = cls.shape
    one = np.float32(1)
    for i in range(h):
        row_key = key0 * np.uint64(2097152) + np.uint64(row0 + i)
        for j in range(w):
            c, g = cls[i, j], green[i, j]
            shade = one + np.float32(0.12) * texture[i, j]
            base = (row_key * np.uint64(2097152) + np.uint64(j)) * np.uint64(8)
            op, dark, missing = np.float32(0), one, False
            if sky:
                op = opacity[i, j]
                dark = one - np.float32(0.7) * shadow[i, j] * (one - op)
                missing = nodata[i, j]
            for b in range(spectra.shape[0]):
                v = (spectra[b, c, 0] * g + spectra[b, c, 1] * (one - g)) * shade
                v += (_uniform(base + np.uint64(b)) - np.float32(0.5)) * np.float32(3.4641016) * noise[b]
                v = (v * gain + offset) * dark
                v = v * (one - op) + op * cloud[b]
                if b < 4:
                    if missing:
                        dn10[b, i, j] = 0
                    else:
                        dn = v * np.float32(10000) + np.float32(1000.5)
                        dn10[b, i, j] = np.uint16(min(max(dn, one), np.float32(65534)))
                elif i // 2 < sum20.shape[1] and j // 2 < sum20.shape[2]:
                    sum20[b - 4, i // 2, j // 2] += v * np.float32(0.25)
