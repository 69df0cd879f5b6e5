"""Synthetic optical scenes with planted changes of known class, for the change-detection tests.

Scenes follow the ``rsmon.io.optical.open_optical`` contract: float32 bands ``blue .. swir2`` on
("y", "x") with UTM coordinates, attrs ``datetime``, ``sensor``, ``radiometry``. Spectra are
typical top-of-atmosphere reflectances; each planted block is 10 x 10 pixels.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")

SPECTRA = {
    "vegetation": (0.04, 0.08, 0.05, 0.40, 0.20, 0.10),
    "bare": (0.10, 0.14, 0.18, 0.25, 0.32, 0.28),
    "built": (0.10, 0.11, 0.12, 0.17, 0.20, 0.18),
    "rock": (0.33, 0.36, 0.38, 0.41, 0.45, 0.41),
    "cleared": (0.06, 0.09, 0.12, 0.20, 0.17, 0.12),
    "water": (0.06, 0.07, 0.05, 0.03, 0.02, 0.01),
    "wet_bare": (0.05, 0.07, 0.09, 0.13, 0.16, 0.14),
    "cloud": (0.45, 0.43, 0.42, 0.45, 0.35, 0.25),
}

SIZE = 120
BLOCK = 10
#: planted block -> (top-left row, col, before cover, after cover, expected change_class code)
PLANTED = {
    "construction": (10, 10, "vegetation", "built", 1),
    "mining": (10, 40, "vegetation", "rock", 2),
    "farmland": (10, 70, "bare", "vegetation", 3),
    "clearing": (40, 10, "vegetation", "cleared", 4),
    "water": (40, 40, "vegetation", "water", 5),
    "other": (70, 70, "bare", "wet_bare", 6),
}
#: the before date is bare soil here (so "farmland" and "other" have their before cover)
BARE_FIELD = (0, 110, 60, 120)  # rows 0..110, cols 60..120
CLOUD_BLOCK = (90, 10)  # after scene only


def _block(row: int, col: int, size: int = BLOCK) -> tuple[slice, slice]:
    return slice(row, row + size), slice(col, col + size)


def background(seed: int = 0) -> np.ndarray:
    """(6, SIZE, SIZE) before-date cover: vegetation, a bare field, a lake; with 0.004 noise."""
    cube = np.empty((6, SIZE, SIZE), np.float32)
    cube[:] = np.array(SPECTRA["vegetation"], np.float32)[:, None, None]
    r0, r1, c0, c1 = BARE_FIELD
    cube[:, r0:r1, c0:c1] = np.array(SPECTRA["bare"], np.float32)[:, None, None]
    cube[:, 100:115, 20:50] = np.array(SPECTRA["water"], np.float32)[:, None, None]
    return cube


def texture(seed: int = 0) -> np.ndarray:
    """A smooth brightness factor 0.85..1.15 that both dates share (soil, canopy and relief
    variability that does not change), so that unchanged pixels span a range of values."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.85, 1.15, (SIZE // 8 + 2, SIZE // 8 + 2))
    fine = np.kron(coarse, np.ones((8, 8)))[:SIZE, :SIZE]
    kernel = np.ones(5) / 5
    fine = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 0, fine)
    fine = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 1, fine)
    return fine.astype(np.float32)


def noisy(cube: np.ndarray, seed: int, sigma: float = 0.004) -> np.ndarray:
    """``cube`` x the shared :func:`texture` + independent noise of ``sigma``."""
    rng = np.random.default_rng(seed)
    return (cube * texture()[None] + rng.normal(0.0, sigma, cube.shape)).astype(np.float32)


def scene(cube: np.ndarray, date: str, sensor: str = "S2", chunks: int | None = None,
          gain: float = 1.0, offset: float = 0.0) -> xr.Dataset:
    """Dataset of a (6, y, x) reflectance cube; ``gain``/``offset`` fake a radiometric difference."""
    data = cube * np.float32(gain) + np.float32(offset)
    y = 3_600_005.0 - 10.0 * np.arange(cube.shape[1])
    x = 500_005.0 + 10.0 * np.arange(cube.shape[2])
    bands = {}
    for i, b in enumerate(BANDS):
        arr = data[i].astype(np.float32)
        bands[b] = (("y", "x"), da.from_array(arr, chunks=chunks) if chunks else arr)
    return xr.Dataset(bands, coords={"y": y, "x": x},
                      attrs={"datetime": f"{date}T03:00:00Z", "sensor": sensor, "radiometry": "reflectance"})


def planted_after(blocks=None, cloud: bool = True, cloud_over: str | None = None) -> np.ndarray:
    """After-date cover: the background with the given planted blocks (default all), a cloud at
    :data:`CLOUD_BLOCK` and optionally one over the planted block ``cloud_over``."""
    cube = background()
    for name in (PLANTED if blocks is None else blocks):
        row, col, _, after, _ = PLANTED[name]
        cube[(slice(None),) + _block(row, col)] = np.array(SPECTRA[after], np.float32)[:, None, None]
    cloud_spectrum = np.array(SPECTRA["cloud"], np.float32)[:, None, None]
    if cloud:
        cube[(slice(None),) + _block(*CLOUD_BLOCK)] = cloud_spectrum
    if cloud_over:
        cube[(slice(None),) + _block(*PLANTED[cloud_over][:2])] = cloud_spectrum
    return cube


def expected_masks(blocks=None, cloud: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(change uint8 1/0/255, change_class uint8) expected for :func:`planted_after`."""
    change = np.zeros((SIZE, SIZE), np.uint8)
    classes = np.zeros((SIZE, SIZE), np.uint8)
    for name in (PLANTED if blocks is None else blocks):
        row, col, _, _, code = PLANTED[name]
        change[_block(row, col)] = 1
        classes[_block(row, col)] = code
    if cloud:
        change[_block(*CLOUD_BLOCK)] = 255
        classes[_block(*CLOUD_BLOCK)] = 255
    return change, classes


def pair(chunks: int | None = None, seed: int = 1):
    """(before, after) with all planted changes, a cloud in the after scene and a radiometric
    difference (after = 1.05 x + 0.01) that relative normalisation must remove."""
    before = scene(noisy(background(), seed), "2020-05-01", chunks=chunks)
    after = scene(noisy(planted_after(), seed + 1), "2021-05-01", chunks=chunks, gain=1.05, offset=0.01)
    return before, after


#: A series: reference + three later dates; which blocks show their change on each date, and
#: which block a cloud hides.
SERIES = (
    ("2021-01-10", ("construction", "other", "clearing", "farmland"), None),
    ("2021-02-10", ("construction", "other", "mining"), "farmland"),
    ("2021-03-10", ("construction", "other", "mining", "farmland", "water"), None),
)
#: expected (confidence, change_class) per block after the series, default ChangeParams
SERIES_EXPECTED = {
    "construction": (3, 1),  # confirmed at t2, the index rule agrees (NDVI falls) -> highest
    "other": (2, 6),         # confirmed, no index rule (wet soil darkens evenly) -> high
    "mining": (3, 2),        # first at t2, confirmed at t3 -> highest
    "farmland": (3, 3),      # t1, hidden by cloud at t2, confirmed at t3 -> highest
    "water": (1, 5),         # first seen at t3 -> low
    "clearing": (1, 3),      # t1 only, regrown at t2/t3: pending low; clearing then regrowth -> farmland
}


def series(chunks: int | None = None) -> list:
    """Reference scene and the later scenes of :data:`SERIES` (no radiometric difference)."""
    scenes = [scene(noisy(background(), 100), "2020-12-10", chunks=chunks)]
    for i, (date, blocks, cloud_over) in enumerate(SERIES):
        cube = planted_after(blocks, cloud=False, cloud_over=cloud_over)
        scenes.append(scene(noisy(cube, 101 + i), date, chunks=chunks))
    return scenes
