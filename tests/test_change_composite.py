"""Known answer for the latest-clear-pixel reference composite (several --before scenes)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_composite import latest_clear_composite
from rsmon.products.change_indices import BANDS


def scene(value: float, date: str, clear: np.ndarray) -> xr.Dataset:
    shape = clear.shape
    ds = xr.Dataset({b: (("y", "x"), np.full(shape, value + 0.01 * i, np.float32)) for i, b in enumerate(BANDS)},
                    coords={"y": np.arange(shape[0]), "x": np.arange(shape[1])},
                    attrs={"datetime": date, "radiometry": "reflectance", "source": f"scene-{date}"})
    ds["clear"] = (("y", "x"), clear)
    return ds


def test_latest_clear_observation_wins_per_pixel():
    shape = (2, 3)
    old = scene(0.10, "2023-03-01", np.ones(shape, bool))
    mid = scene(0.20, "2023-04-01", np.array([[True, False, True], [False, False, True]]))
    new = scene(0.30, "2023-05-01", np.array([[True, True, False], [False, False, False]]))
    # given out of date order on purpose
    out = latest_clear_composite([new, old, mid])
    red = out["red"].values
    expected = np.array([[0.30, 0.30, 0.20], [0.10, 0.10, 0.20]], np.float32) + 0.02
    np.testing.assert_allclose(red, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["observation_index"].values, [[2, 2, 1], [0, 0, 1]])
    assert out["clear"].values.all()
    assert out.attrs["datetime"] == "2023-05-01"


def test_pixel_never_clear_is_nan_and_not_clear():
    shape = (1, 2)
    a = scene(0.1, "2023-03-01", np.array([[True, False]]))
    b = scene(0.2, "2023-04-01", np.array([[False, False]]))
    out = latest_clear_composite([a, b])
    assert np.isnan(out["nir"].values[0, 1]) and not out["clear"].values[0, 1]
    assert out["nir"].values[0, 0] == pytest.approx(0.13)


def test_scenes_on_different_grids_are_refused():
    a = scene(0.1, "2023-03-01", np.ones((2, 2), bool))
    b = scene(0.2, "2023-04-01", np.ones((3, 2), bool))
    with pytest.raises(InputError, match="align"):
        latest_clear_composite([a, b])
