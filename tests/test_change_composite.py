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


@pytest.mark.parametrize("radiometry", ["reflectance", "dn"])
def test_composite_kernel_equals_the_lazy_composite(radiometry):
    """The block kernel of the direct composite (numba) against the xarray composite on random
    spectra crossing every mask test (clouds, shadows, snow, water, NaN, saturation; with and
    without a QA layer; reflectance and DN)."""
    from rsmon.kernels import change as kernel
    from rsmon.products.change_params import ChangeParams
    from rsmon.products.change_pixels import pack_thresholds

    rng = np.random.default_rng(7)
    shape, n = (40, 50), 3
    scale = 1.0 if radiometry == "reflectance" else 200.0  # 8-bit DN: 255 and above saturated
    scenes = []
    for k in range(n):
        values = rng.choice([0.02, 0.05, 0.12, 0.3, 0.45, 0.8, 1.3], size=(len(BANDS), *shape)).astype(np.float32)
        values *= rng.uniform(0.8, 1.2, size=values.shape).astype(np.float32)
        values = (values * scale).astype(np.float32)
        values[:, rng.random(shape) < 0.03] = np.nan
        ds = xr.Dataset({b: (("y", "x"), values[i]) for i, b in enumerate(BANDS)},
                        attrs={"datetime": f"2023-0{k + 3}-01", "radiometry": radiometry})
        if k != 1:  # the middle scene has no QA layer
            ds["clear"] = (("y", "x"), rng.random(shape) < 0.8)
            ds["water"] = (("y", "x"), rng.random(shape) < 0.1)
        scenes.append(ds)
    lazy = latest_clear_composite(scenes)
    bands = np.stack([np.stack([s[b].values for b in BANDS]) for s in scenes])
    qa_clear = np.stack([s["clear"].values if "clear" in s else np.ones(shape, bool) for s in scenes])
    qa_water = np.stack([s["water"].values if "water" in s else np.zeros(shape, bool) for s in scenes])
    out, clear, index = np.empty((6, *shape), np.float32), np.empty(shape, bool), np.empty(shape, np.int8)
    water = np.empty(shape, bool)
    kernel.latest_clear(bands, qa_clear, qa_water, radiometry == "reflectance",
                        pack_thresholds(ChangeParams(), radiometry), out, clear, water, index)
    np.testing.assert_array_equal(index, lazy["observation_index"].values)
    np.testing.assert_array_equal(clear, lazy["clear"].values)
    np.testing.assert_array_equal(water, lazy["water"].values)  # the QA water of the scene that gave the pixel
    assert water.any()
    for b, name in enumerate(BANDS):
        np.testing.assert_array_equal(out[b], lazy[name].values, err_msg=name)
    assert len(np.unique(index)) == n + 1  # every scene and "none" occur


@pytest.fixture(scope="module")
def s2_scenes(tmp_path_factory):
    """Simulated S2 L2A scenes of one landscape: a clear reference (a/before, 1 May), a cloudy
    newer reference without the changes yet (b/after, 11 May, 30 % cloud), the after scene
    (a/after, 1 June) and a later scene (c/after, 21 June) with the same changes."""
    from rsmon.sim.s2 import simulate_s2_l2a_pair

    root = tmp_path_factory.mktemp("composite")
    for name, dates, clouds, changes in (("a", ("2023-05-01", "2023-06-01"), 0.08, 20),
                                         ("b", ("2023-04-21", "2023-05-11"), 0.3, 0),  # no change yet on 11 May
                                         ("c", ("2023-06-11", "2023-06-21"), 0.08, 20)):
        simulate_s2_l2a_pair(root / name, size=384, seed=3, n_changes=changes, dates=dates, cloud_fraction=clouds)
    return root


def _without_direct_access(ds):
    from rsmon.io.optical_raster import SCENE_BLOCKS

    out = ds.copy()
    out.encoding = {k: v for k, v in ds.encoding.items() if k != SCENE_BLOCKS}
    return out


def test_composite_of_reader_scenes_is_read_directly_and_equals_its_graph(s2_scenes):
    """A composite of scenes with direct readers gets direct block access (CompositeBlocks): its
    blocks equal the lazy composite's, and the pair and the series on it equal the same runs
    through the graph, pixel for pixel and sample for sample."""
    from rsmon.io.optical import open_optical
    from rsmon.io.optical_raster import SCENE_BLOCKS
    from rsmon.products.change_blocks import series_change_blocks
    import json

    from rasterio.features import geometry_mask

    from rsmon.products.change_composite import REFERENCE_OBSERVATION, CompositeBlocks
    from rsmon.products.patches import patches_from_change
    from rsmon.products.change_fit import prepared_pair
    from rsmon.products.change import detect_change_blocks

    open_ = lambda p: open_optical(p, chunks=128)  # noqa: E731
    older, newer = open_(s2_scenes / "a" / "before"), open_(s2_scenes / "b" / "after")
    after, later = open_(s2_scenes / "a" / "after"), open_(s2_scenes / "c" / "after")
    reference = latest_clear_composite([newer, older])
    blocks = reference.encoding.get(SCENE_BLOCKS)
    assert isinstance(blocks, CompositeBlocks) and [dict(s[2])["datetime"] for s in blocks.scenes] == [
        older.attrs["datetime"], newer.attrs["datetime"]]
    assert 0.05 < float((reference["observation_index"] == 0).mean()) < 0.6  # the cloudy newer scene filled in
    for rows, cols in ((slice(0, 128), slice(128, 256)), (slice(256, 384), slice(0, 128))):
        got = blocks.read(rows, cols)
        assert sorted(got) == sorted([*BANDS, "clear", "water", "observation_index"])
        for v in got:
            np.testing.assert_array_equal(got[v], reference[v][rows, cols].values, err_msg=v)
    assert prepared_pair(reference, after)[2].scenes is not None  # the pass reads it directly
    graph_reference = _without_direct_access(reference)
    assert prepared_pair(graph_reference, after)[2].scenes is None

    def same(a, b):
        for v in ("change", "change_class", "confidence"):
            np.testing.assert_array_equal(getattr(a, v), getattr(b, v), err_msg=v)
        fa, va = a.index_samples
        fb, vb = b.index_samples
        np.testing.assert_array_equal(fa, fb)
        for name in va:
            np.testing.assert_array_equal(va[name], vb[name], err_msg=name)

    pair = detect_change_blocks(reference, after)
    assert pair.n_change > 100
    same(pair, detect_change_blocks(graph_reference, after))
    series = series_change_blocks([reference, after, later])
    same(series, series_change_blocks([graph_reference, after, later]))
    # the composite's scene of every change pixel is a sample: the patches are dated by it
    observation = reference["observation_index"].values
    for blocks_ in (pair, series):
        assert blocks_.sample_names[-1] == REFERENCE_OBSERVATION
        flat, values = blocks_.index_samples
        np.testing.assert_array_equal(values[REFERENCE_OBSERVATION], observation.ravel()[flat])
    ds = pair.to_dataset(after)
    assert json.loads(ds.attrs["reference_datetimes"]) == [older.attrs["datetime"], newer.attrs["datetime"]]
    patches = patches_from_change(ds, index_samples=pair.index_samples)
    # known answer: the earliest reference scene under each patch's change pixels
    dates = {0: "2023-05-01", 1: "2023-05-11"}
    change = pair.change == 1
    for _, row in patches.iterrows():
        inside = geometry_mask([row.geometry], out_shape=change.shape, transform=after.rio.transform(), invert=True)
        assert row["before_date"] == dates[int(observation[inside & change].min())], row["patch_id"]
    assert set(patches["before_date"]) == {"2023-05-01", "2023-05-11"}
    # a modified scene, or a scene without a reader, gives no direct access (the graph is used)
    assert SCENE_BLOCKS not in latest_clear_composite([older, newer.assign(red=newer["red"] * 1.0)]).encoding
    assert SCENE_BLOCKS not in latest_clear_composite([older, newer.compute()]).encoding
