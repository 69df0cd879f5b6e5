"""Known-answer change detection on synthetic scenes: planted changes of every class, a cloud, a
radiometric difference between dates, and a series with known confidence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from change_scenes import PLANTED, SERIES_EXPECTED, expected_masks, pair, series  # noqa: E402

from rsmon.products.change import ChangeParams, detect_change, detect_series  # noqa: E402
from rsmon.kernels.change import INDEX_PLANES  # noqa: E402
from rsmon.products.change_classes import confirm_observations  # noqa: E402
from rsmon.products.change_series import FIRST_OBSERVATION  # noqa: E402


def _block(ds, var, name):
    row, col = PLANTED[name][:2]
    return np.unique(ds[var].values[row:row + 10, col:col + 10])


def test_pair_known_change_class_and_nodata():
    before, after = pair()
    out = detect_change(before, after)
    change, classes = expected_masks()
    np.testing.assert_array_equal(out.change.values, change)
    np.testing.assert_array_equal(out.change_class.values, classes)
    np.testing.assert_array_equal(out.confidence.values, change == 1)   # one pair: low (1) at most
    # the radiometric difference (after = 1.05 x + 0.01) is found on the unchanged pixels
    gain = float(out.attrs["normalisation_nir"].split()[0].split("=")[1])
    assert gain == pytest.approx(1.05, abs=0.02)
    for name in ("construction", "clearing", "farmland", "water"):
        assert _block(out, "rule", name).tolist() == [True], name


def test_pair_mmu_parameter():
    before, after = pair()
    out = detect_change(before, after, ChangeParams(mmu_px=101))   # every planted block has 100 px
    assert set(np.unique(out.change.values)) == {0, 255}


def test_series_confidence_and_class():
    out = detect_series(series())
    for name, (confidence, code) in SERIES_EXPECTED.items():
        assert _block(out, "confidence", name).tolist() == [confidence], name
        assert _block(out, "change_class", name).tolist() == [code], name
        assert _block(out, "change", name).tolist() == [1], name
    background = np.ones(out.change.shape, bool)
    for row, col, *_ in PLANTED.values():
        background[row:row + 10, col:col + 10] = False
    assert (out.confidence.values[background] == 0).all()
    assert str(_block(out, "first_detection", "mining")[0]).startswith("2021-02-10")
    assert out.n_clear.values.max() == 3
    # with a 2-observation window the unconfirmed clearing expires
    short = detect_series(series(), ChangeParams(confirm_window=2))
    assert _block(short, "confidence", "clearing").tolist() == [0]
    assert _block(short, "change", "clearing").tolist() == [0]


def _assert_same_series(got, lazy):
    """The block pass's rasters, samples (block by block), counts and attributes are the lazy series'."""
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(getattr(got, name), lazy[name].values, err_msg=name)
    change = lazy.change.values.ravel() == 1
    order = np.argsort(got.index_flat)
    np.testing.assert_array_equal(got.index_flat[order], np.flatnonzero(change))
    observed = np.array([np.datetime64(d.replace("Z", ""), "ns") for d in json.loads(lazy.attrs["datetimes"])])
    for name, values in got.index_values.items():
        if name == FIRST_OBSERVATION:  # the later scene that first flagged the pixel: its date
            np.testing.assert_array_equal(observed[values[order].astype(int)],
                                          lazy.first_detection.values.ravel()[change], err_msg=name)
        else:
            np.testing.assert_array_equal(values[order], lazy[name].values.ravel()[change], err_msg=name)
    assert set(got.index_values) == {*INDEX_PLANES, FIRST_OBSERVATION}
    assert got.attrs == lazy.attrs
    assert got.n_change == change.sum() and got.n_valid == (lazy.change.values != 255).sum()


@pytest.mark.parametrize("chunks", [None, 32, 17])
@pytest.mark.parametrize("params", [ChangeParams(), ChangeParams(confirm_window=2),
                                    ChangeParams(mmu_px=1, opening_px=0, closing_px=0)],
                         ids=["default", "window2", "no-cleanup"])
def test_series_block_pass_equals_the_lazy_series(chunks, params):
    """The block pass of a series (every pair's codes, their union of candidates, confirmation at
    the candidates) gives the lazy series' rasters, index values at the change pixels and
    attributes, on one block and on blocks whose halos cross (17 does not divide the planted
    blocks' positions); the known answers of SERIES_EXPECTED hold for it too."""
    from rsmon.products.change_blocks import series_change_blocks

    scenes = series(chunks=chunks)
    lazy = detect_series(scenes, params).compute()
    got = series_change_blocks(scenes[::-1], params)  # ordered by date, as the lazy series
    _assert_same_series(got, lazy)
    if params.confirm_window == ChangeParams().confirm_window:
        for name, (confidence, code) in SERIES_EXPECTED.items():
            row, col = PLANTED[name][:2]
            assert np.unique(got.confidence[row:row + 10, col:col + 10]).tolist() == [confidence], name
            assert np.unique(got.change_class[row:row + 10, col:col + 10]).tolist() == [code], name


def test_series_patches_are_dated_by_their_first_flagging_observation():
    """A series' patch table dates each patch by the later scene that first flagged it (the
    earliest over its pixels), not by the last scene: mining appears at t2, water at t3, the
    others at t1 (farmland is hidden by a cloud at t2 and confirmed at t3)."""
    import rioxarray  # noqa: F401

    from rsmon.products.change_blocks import series_change_blocks
    from rsmon.products.patches import patches_from_change

    scenes = [s.rio.write_crs("EPSG:32650") for s in series(chunks=32)]
    blocks = series_change_blocks(scenes)
    patches = patches_from_change(blocks.to_dataset(scenes[-1]), index_samples=lambda: blocks.sample_pieces)
    dated = dict(zip(patches["change_class"], patches["first_detected"]))
    assert dated == {"construction": "2021-01-10", "other": "2021-01-10", "mining_quarrying": "2021-02-10",
                     "farmland_reclamation": "2021-01-10", "water_body_change": "2021-03-10"}, dated
    assert set(patches["after_date"]) == {"2021-03-10"} and set(patches["last_detected"]) == {"2021-03-10"}
    # an earlier run's date is kept when it is earlier still
    again = patches_from_change(blocks.to_dataset(scenes[-1]), index_samples=lambda: blocks.sample_pieces,
                                previous=patches.assign(first_detected="2020-12-31"))
    assert set(again["first_detected"]) == {"2020-12-31"} and list(again["patch_id"]) == list(patches["patch_id"])
    # patches cut by a redline (pieces measured from their own pixels) keep their dates
    import geopandas as gpd
    import shapely

    x0, y1 = float(scenes[0].x[0]) - 5, float(scenes[0].y[0]) + 5
    half = gpd.GeoDataFrame({"redline_id": ["RL-1"], "name": ["west"]},
                            geometry=[shapely.box(x0, y1 - 1200, x0 + 455, y1)], crs="EPSG:32650")  # cols < 45.5
    cut = patches_from_change(blocks.to_dataset(scenes[-1]), index_samples=lambda: blocks.sample_pieces, redlines=half)
    halves = cut[cut["change_class"].isin(["mining_quarrying", "water_body_change"])]
    assert len(halves) == 2 and (halves["n_pixels"] < 100).all()  # the mining and water blocks, cut in two
    assert all(dated[c] == d for c, d in zip(cut["change_class"], cut["first_detected"]))


def test_series_block_pass_with_a_cloudy_date_two_sensors_and_mixed_blocks():
    """A later date under cloud everywhere (its pair has no valid pixel), a second sensor (two
    sensors agreeing lift a confirmed detection to "highest") and later scenes on other block
    grids than the first (put on its blocks): the block pass still equals the lazy series."""
    from change_scenes import SPECTRA, background, scene

    from rsmon.products.change_blocks import series_change_blocks

    scenes = series(chunks=32)
    overcast = np.broadcast_to(np.array(SPECTRA["cloud"], np.float32)[:, None, None], background().shape).copy()
    scenes.insert(2, scene(overcast, "2021-01-20", chunks=17))
    scenes[3] = scenes[3].chunk({"y": 50, "x": 40}).assign_attrs(sensor="L8")
    lazy = detect_series(scenes).compute()
    got = series_change_blocks(scenes)
    assert json.loads(lazy.attrs["sensors"]) == ["S2", "S2", "L8", "S2"]
    overcast_threshold = json.loads(lazy.attrs["thresholds"])[1]
    assert overcast_threshold is None or np.isnan(overcast_threshold)  # no clear pixel to fit on
    _assert_same_series(got, lazy)
    assert (got.confidence == 3).any()


def test_series_reference_from_the_graph_is_computed_once_per_block():
    """Without direct readers (e.g. a composite reference) every pair's blocks come from the
    inputs' graph, and the reference's tasks, shared by the pairs, run once per block position."""
    from rsmon.products.change_blocks import _SeriesReader
    from rsmon.products.change_fit import prepared_pair

    calls = []

    def counted(block):
        calls.append(block.shape)
        return block

    scenes = series(chunks=40)
    reference = scenes[0].copy()
    for name in reference.data_vars:
        reference[name] = reference[name].copy(data=reference[name].data.map_blocks(counted, dtype=np.float32))
    pairs = [prepared_pair(reference, later)[2] for later in scenes[1:]]
    read = _SeriesReader(pairs)
    assert not read.shared
    calls.clear()  # (dask called it on empty arrays to infer the output type)
    values = read(1, 2)
    assert len(values) == 3 and calls == [(40, 40)] * len(reference.data_vars)  # six bands, once for three pairs
    for got, inputs in zip(values, pairs):
        want = [a.blocks[1, 2].compute() for a in inputs.arrays]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_confirmation_kernel_by_hand():
    # one pixel per column; rows are observations (1 change, 0 no change, 255 cloud)
    flags = np.array([[1, 1, 1, 0, 1, 1],
                      [255, 0, 1, 0, 0, 1],
                      [1, 0, 0, 1, 0, 255],
                      [0, 0, 0, 0, 1, 255]], np.uint8)[:, None, :]
    rules = np.zeros(flags.shape, bool)
    rules[0, 0, 0] = True
    sensors = np.array([0, 0, 1, 1])
    conf, first = confirm_observations(flags, rules, sensors, confirm_window=2, confirm_min=1)
    # px0: cloud skipped, confirmed at obs 2 by sensor 1 -> highest (rule and two sensors)
    # px1: flagged once, two contradictions -> expired
    # px2: confirmed at obs 1, same sensor, no rule -> high
    # px3: first flagged at the third observation -> low
    # px4: expired at obs 2, flagged again at obs 3 -> low from obs 3
    # px5: confirmed at obs 1 -> high, clouds after
    assert conf[0].tolist() == [3, 0, 2, 1, 1, 2]
    assert first[0].tolist() == [0, -1, 0, 2, 3, 0]


@pytest.mark.parametrize("n_obs,confirm_window,confirm_min", [(1, 4, 1), (3, 4, 1), (5, 2, 2), (6, 4, 2), (4, 1, 3)])
def test_series_confirm_kernel_equals_the_numpy_series_kernel(n_obs, confirm_window, confirm_min):
    """The block pass's numba confirmation (rsmon.kernels.change.series_confirm) against the NumPy
    series_kernel (what the lazy series runs) on random observations: flags with clouds, rules,
    classes (clearing among them, so the regrowth rule fires), index values with NaN, and three
    sensors, so every state of the confirmation is reached."""
    from rsmon.kernels.change import series_confirm
    from rsmon.products.change_series import series_kernel

    rng = np.random.default_rng(n_obs * 100 + confirm_min)
    n = 20_000
    flags = rng.choice(np.array([0, 1, 255], np.uint8), size=(n_obs, n), p=[0.45, 0.4, 0.15])
    rules = (rng.random((n_obs, n)) < 0.4) & (flags == 1)
    classes = np.where(flags == 255, 255, np.where(flags == 1, rng.integers(1, 7, (n_obs, n)), 0)).astype(np.uint8)
    values = rng.uniform(-0.5, 0.9, (n_obs, 8, n)).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.nan
    sensor_ids = rng.integers(0, 3, n_obs)
    veg = 0.3
    want = series_kernel(flags.T, rules.T, classes.T, values[:, 1].T, *(values[:, m].T for m in range(8)),
                         sensor_ids=sensor_ids, confirm_window=confirm_window, confirm_min=confirm_min,
                         veg_ndvi_min=veg)
    got = series_confirm(flags, rules, classes, values, 1, sensor_ids.astype(np.int64), confirm_window, confirm_min,
                         np.float32(veg))
    for name, a, b in zip(("change", "change_class", "confidence", "first"), got[:4], want[:4]):
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == b.dtype, name
    np.testing.assert_array_equal(got[4], np.stack(want[4:]))
    # the cases the comparison must reach: every confidence level, and regrown clearing -> farmland
    assert set(np.unique(got[2]).tolist()) >= ({0, 1} if n_obs == 1 else {0, 1, 2, 3} if confirm_min == 1 else {0, 1})
    if n_obs > 1 and confirm_min == 1:  # (with confirm_min 3 in a window of 1 a detection lives one scene)
        assert ((got[1] == 3) & (classes[np.clip(got[3], 0, None), np.arange(n)] == 4)).any()
