"""detect_fires in line blocks with a halo gives exactly the whole-granule result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.fire import FireParams, detect_fires
from rsmon.products.fire_frp import planck_radiance

I4_UM = 3.74


def _scene(ny: int, nx: int, seed: int = 0) -> xr.Dataset:
    """Day granule contract: 300/295 K vegetation with noise (as tests/test_fire_detect.py)."""
    rng = np.random.default_rng(seed)
    shape = (ny, nx)

    def field(v, sd=0.0):
        a = np.full(shape, v, np.float64)
        if sd:
            a += rng.normal(0.0, sd, shape)
        return a.astype(np.float32)

    bt4 = field(300.0, 0.5)
    ds = xr.Dataset(
        {
            "bt_i4": (("y", "x"), bt4),
            "bt_i5": (("y", "x"), field(295.0, 0.5)),
            "rad_i4": (("y", "x"), planck_radiance(I4_UM, bt4).astype(np.float32)),
            "refl_i1": (("y", "x"), field(0.08)),
            "refl_i2": (("y", "x"), field(0.25)),
            "refl_i3": (("y", "x"), field(0.20)),
            "latitude": (("y", "x"), field(34.0) + np.arange(ny, dtype=np.float32)[:, None] * 0.003),
            "longitude": (("y", "x"), field(115.0) + np.arange(nx, dtype=np.float32)[None, :] * 0.004),
            "solar_zenith": (("y", "x"), field(30.0)),
            "solar_azimuth": (("y", "x"), field(150.0)),
            "sensor_zenith": (("y", "x"), field(20.0)),
            "sensor_azimuth": (("y", "x"), field(150.0)),
            "land_water_mask": (("y", "x"), np.ones(shape, np.uint8)),
            "i4_status": (("y", "x"), np.zeros(shape, np.uint8)),
            "i5_status": (("y", "x"), np.zeros(shape, np.uint8)),
            "i4_saturated": (("y", "x"), np.zeros(shape, bool)),
        },
        attrs={"platform": "NOAA-20", "satellite": "1", "instrument": "VIIRS",
               "time_coverage_start": "2023-10-05T05:30:00Z", "granule_id": "TEST.BLOCKS"},
    )
    return ds


def _put(ds, y, x, bt4=None, bt5=None, **values):
    if bt4 is not None:
        ds["bt_i4"].values[y, x] = bt4
        ds["rad_i4"].values[y, x] = planck_radiance(I4_UM, np.float32(bt4))
    if bt5 is not None:
        ds["bt_i5"].values[y, x] = bt5
    for k, v in values.items():
        ds[k].values[y, x] = v


def _boundary_scene() -> xr.Dataset:
    """Fires on and around the line-128/256 block boundaries, with every neighbourhood crossing them."""
    ds = _scene(400, 160)
    # A hot desert (BT4 ~ 328 K) in the lower half with a cool oasis: BT4s (~328 K, median of a
    # 501 x 501 window spanning all blocks) decides the ambiguous day pixels of the oasis.
    hot = np.zeros(ds["bt_i4"].shape, bool)
    hot[200:, :] = True
    hot[236:277, 100:141] = False
    ds["bt_i4"].values[hot] += np.float32(28.0)
    ds["bt_i5"].values[hot] += np.float32(27.0)
    ds["rad_i4"].values[:] = planck_radiance(I4_UM, ds["bt_i4"].values)
    # Adjacent pair across the 127/128 boundary: a strong fire and a weak one (dT 27 K; nominal
    # only because it is adjacent to another fire).
    _put(ds, 127, 20, bt4=345.0, bt5=300.0)
    _put(ds, 128, 21, bt4=322.0, bt5=295.0)
    # Weak stand-alone fires on the boundary: nominal (ring 22 K cooler), and low (a 310 K ring
    # neighbour on the other side of the boundary).
    _put(ds, 128, 60, bt4=322.0, bt5=295.0)
    _put(ds, 127, 100, bt4=310.0, bt5=300.0)
    _put(ds, 128, 100, bt4=322.0, bt5=295.0)
    # Background window crossing the boundary that must grow: clouds fill the lines above it.
    _put(ds, slice(110, 128), slice(125, 147), bt5=260.0)
    _put(ds, slice(129, 140), slice(125, 147), bt5=260.0)
    _put(ds, 128, 135, bt4=340.0, bt5=300.0)
    # Saturated and folded fixed fires at the boundary lines.
    _put(ds, 255, 30, bt4=367.0, bt5=320.0, i4_saturated=True, refl_i1=0.05, refl_i2=0.2)
    _put(ds, 256, 80, bt4=330.0, bt5=345.0)
    # Ambiguous day pixels in the oasis (325 < BT4 <= 330, dT <= 25): candidates by BT4s only.
    _put(ds, 255, 120, bt4=329.5, bt5=305.0)
    _put(ds, 256, 121, bt4=326.5, bt5=305.0)
    _put(ds, 257, 110, bt4=329.0, bt5=305.0)
    # A background fire just across the boundary.
    _put(ds, 126, 140, bt4=330.0, bt5=305.0)
    return ds


def _assert_same(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert got.attrs == ref.attrs


@pytest.mark.parametrize("block_lines", [128, 64, 100, 7])
def test_blocks_equal_whole_granule_at_block_boundaries(block_lines):
    ds = _boundary_scene()
    ref = detect_fires(ds, block_lines=None)
    got = detect_fires(ds, block_lines=block_lines)
    assert len(ref) >= 8
    assert {127, 128, 255, 256} <= set(ref.line)
    assert set(ref.confidence) == {"low", "nominal", "high"}
    _assert_same(got, ref)
    # also with dask input (chunks not aligned with the blocks)
    _assert_same(detect_fires(ds.chunk({"y": 90, "x": 160}), block_lines=block_lines), ref)


def test_blocks_equal_whole_granule_other_params():
    ds = _boundary_scene()
    p = FireParams(candidate_day_bt4_hi_k=327.5, window_max_px=41, candidate_day_median_block_px=1)
    _assert_same(detect_fires(ds, p, block_lines=128), detect_fires(ds, p, block_lines=None))


def test_block_lines_argument():
    ds = _scene(40, 40)
    for bad in (0, -5, 1.5, True, "128"):
        with pytest.raises(InputError, match="block_lines"):
            detect_fires(ds, block_lines=bad)
    # a block larger than the granule is the whole-granule run
    _assert_same(detect_fires(ds, block_lines=4096), detect_fires(ds, block_lines=None))


def test_blocks_equal_whole_granule_simulated_full_width(tmp_path):
    from rsmon.io.viirs import open_viirs_l1b
    from rsmon.sim.viirs import simulate_granule

    g = simulate_granule(tmp_path, seed=4, n_lines=640, n_pixels=6400, n_fires=300)
    ds = open_viirs_l1b(g.img_path)
    ref = detect_fires(ds, block_lines=None)
    assert len(ref) > 0
    got = detect_fires(ds, block_lines=128)
    _assert_same(got, ref)
