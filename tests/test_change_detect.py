"""Change detection building blocks: indices, masks, normalisation, thresholds, blockwise clean-up,
laziness, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))

from change_scenes import BANDS, SPECTRA, pair, scene  # noqa: E402

from rsmon.errors import InputError  # noqa: E402
from rsmon.products.change import ChangeParams, cva_otsu_baseline, detect_change  # noqa: E402
from rsmon.products.change_indices import spectral_indices, spectral_masks  # noqa: E402
from rsmon.products.change_morphology import clean_block, clean_change_mask  # noqa: E402
from rsmon.products.change_threshold import em_threshold, fit_normalisation, otsu_threshold  # noqa: E402


def _pixels(*spectra, radiometry="reflectance", **extra) -> xr.Dataset:
    cube = np.array(spectra, np.float32).T  # (6, n)
    ds = xr.Dataset({b: (("y", "x"), cube[i][None, :]) for i, b in enumerate(BANDS)},
                    attrs={"radiometry": radiometry})
    for name, values in extra.items():
        ds[name] = (("y", "x"), np.array(values)[None, :])
    return ds


def test_indices_formulas_and_nan():
    blue, green, red, nir, swir1, swir2 = 0.04, 0.08, 0.05, 0.40, 0.20, 0.10
    ds = _pixels((blue, green, red, nir, swir1, swir2), (np.nan, 0.1, 0.0, 0.0, 0.2, 0.1))
    idx = spectral_indices(ds)
    assert float(idx.ndvi[0, 0]) == pytest.approx((nir - red) / (nir + red), rel=1e-6)
    assert float(idx.ndbi[0, 0]) == pytest.approx((swir1 - nir) / (swir1 + nir), rel=1e-6)
    assert float(idx.mndwi[0, 0]) == pytest.approx((green - swir1) / (green + swir1), rel=1e-6)
    assert float(idx.bsi[0, 0]) == pytest.approx(((swir1 + red) - (nir + blue)) / ((swir1 + red) + (nir + blue)), rel=1e-6)
    assert np.isnan(float(idx.ndvi[0, 1]))   # 0 / 0
    assert np.isnan(float(idx.bsi[0, 1]))    # NaN band
    assert all(idx[k].dtype == np.float32 for k in idx)


def test_spectral_masks():
    dark = (0.02, 0.02, 0.02, 0.03, 0.02, 0.01)
    snow = (0.80, 0.78, 0.75, 0.70, 0.10, 0.08)
    sand = (0.27, 0.29, 0.34, 0.42, 0.41, 0.26)   # bright construction sand, not cloud
    saturated = (1.6, 1.5, 1.4, 1.3, 1.2, 1.0)
    ds = _pixels(SPECTRA["cloud"], SPECTRA["water"], dark, snow, SPECTRA["vegetation"], sand, saturated)
    m = spectral_masks(ds).compute()
    assert m.cloud.values[0].tolist() == [True, False, False, False, False, False, False]
    assert m.water.values[0].tolist() == [False, True, False, False, False, False, False]
    assert m.shadow.values[0].tolist() == [False, False, True, False, False, False, False]
    assert m.snow.values[0].tolist() == [False, False, False, True, False, False, False]
    assert m.invalid.values[0].tolist() == [False] * 6 + [True]
    assert m.clear.values[0].tolist() == [False, True, False, False, True, True, False]
    # product QA is combined; DN stacks get no reflectance tests, only saturation
    qa = spectral_masks(_pixels(SPECTRA["vegetation"], SPECTRA["vegetation"], clear=[True, False]))
    assert qa.clear.values[0].tolist() == [True, False]
    dn = spectral_masks(_pixels((200, 200, 200, 200, 180, 150), (90, 80, 70, 255, 60, 40), radiometry="dn"))
    assert dn.clear.values[0].tolist() == [True, False]


def test_normalisation_recovers_gain_and_offset():
    rng = np.random.default_rng(3)
    before = rng.uniform(0.02, 0.4, (6, 5000))
    gains = np.array([1.3, 0.9, 1.1, 1.0, 0.8, 1.2])
    offsets = np.array([0.05, -0.01, 0.0, 0.02, 0.03, -0.02])
    after = gains[:, None] * before + offsets[:, None] + rng.normal(0, 0.002, before.shape)
    after[:, :500] = rng.uniform(0.02, 0.4, (6, 500))   # 10 % changed pixels
    fit = fit_normalisation(before, after, ChangeParams())
    np.testing.assert_allclose(fit.gains, gains, rtol=0.02)
    np.testing.assert_allclose(fit.offsets, offsets, atol=0.005)
    assert fit.n_sample == 5000 and fit.n_pif == 1500
    identity = fit_normalisation(before, after, ChangeParams(normalise=False))
    assert identity.gains == (1.0,) * 6 and identity.offsets == (0.0,) * 6


def test_otsu_and_em_thresholds():
    edges = np.arange(11, dtype=float)
    counts = np.array([5, 20, 5, 0, 0, 0, 0, 3, 9, 3])
    assert 3.0 <= otsu_threshold(counts, edges) <= 7.0
    assert np.isnan(otsu_threshold(np.zeros(10), edges))
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(2, 0.5, 20000), rng.normal(8, 1.0, 2000)])
    counts, edges = np.histogram(values, bins=200, range=(0, 12))
    t = em_threshold(counts, edges)
    # equal weighted densities of N(2, .5) x 10/11 and N(8, 1) x 1/11 lie near 3.9
    assert 3.4 < t < 4.6


@pytest.mark.parametrize("opening, closing, mmu, conn", [(0, 1, 4, 4), (1, 1, 6, 8), (2, 0, 9, 4), (0, 0, 12, 8)])
def test_blockwise_cleanup_equals_whole_array(opening, closing, mmu, conn):
    rng = np.random.default_rng(opening * 100 + mmu)
    codes = (rng.random((150, 130)) < 0.35).astype(np.uint8)
    codes[rng.random(codes.shape) < 0.05] = 255
    codes[60:90, 20:110] = 1          # a large patch crossing block edges
    params = ChangeParams(opening_px=opening, closing_px=closing, mmu_px=mmu, mmu_connectivity=conn)
    whole = clean_block(codes, opening, closing, mmu, conn)
    lazy = clean_change_mask(xr.DataArray(da.from_array(codes, chunks=(37, 41)), dims=("y", "x")), params)
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.values, whole)
    assert set(np.unique(whole)) <= {0, 1, 255}
    assert (whole[codes == 255] == 255).all()


def test_mmu_removes_small_patches_and_fills_small_holes():
    codes = np.zeros((12, 12), np.uint8)
    codes[1:3, 1:2] = 1                # 2 px patch -> removed
    codes[5:11, 5:11] = 1              # 36 px patch with a 1 px hole -> filled
    codes[7, 7] = 0
    codes[0, 10:12] = 255
    out = clean_block(codes, 0, 0, 4, 4)
    assert out[1:3, 1].tolist() == [0, 0]
    assert out[7, 7] == 1
    assert out[0, 10] == 255


class _CountingScheduler:
    def __init__(self):
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


def test_detect_change_lazy_and_chunk_independent():
    counter = _CountingScheduler()
    before, after = pair(chunks=32)
    with dask.config.set(scheduler=counter):
        lazy = detect_change(before, after)
    assert counter.calls == 1          # the fit blocks (normalisation and magnitude histogram)
    for name in ("change", "change_class", "confidence", "magnitude", "ndvi_after"):
        assert isinstance(lazy[name].data, da.Array), name
    whole = detect_change(*pair())
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(lazy[name].values, whole[name].values)
    np.testing.assert_allclose(lazy.magnitude.values, whole.magnitude.values, rtol=1e-6)
    assert lazy.attrs["threshold"] == whole.attrs["threshold"]
    assert whole.change.dtype == np.uint8 and whole.change_class.dtype == np.uint8
    assert whole.magnitude.dtype == np.float32


def test_output_keeps_the_after_grid_and_crs():
    rioxarray = pytest.importorskip("rioxarray")  # noqa: F841
    before, after = pair()
    before = before.rio.write_crs("EPSG:32650")
    after = after.rio.write_crs("EPSG:32650")
    out = detect_change(before, after)
    assert out.rio.crs.to_epsg() == 32650
    np.testing.assert_array_equal(out.x.values, after.x.values)
    assert out.attrs["before_datetime"].startswith("2020-05-01")
    assert out.attrs["after_datetime"].startswith("2021-05-01")


def test_all_cloud_after_gives_no_data_and_a_reason():
    before, _ = pair()
    cloud = np.broadcast_to(np.array(SPECTRA["cloud"], np.float32)[:, None, None], (6, 40, 40)).copy()
    after = scene(cloud, "2021-05-01")
    out = detect_change(before.isel(y=slice(0, 40), x=slice(0, 40)), after)
    assert (out.change.values == 255).all()
    assert "clear" in out.attrs["no_data_reason"]


def test_baseline_is_plain_cva_otsu():
    before, after = pair()
    base = cva_otsu_baseline(before, after)
    assert base.dtype == np.uint8 and set(np.unique(base.values)) <= {0, 1}
    magnitude = np.sqrt(sum((after[b].values - before[b].values) ** 2 for b in BANDS))
    np.testing.assert_array_equal(base.values, (magnitude > base.attrs["threshold"]).astype(np.uint8))


def test_bad_input():
    before, after = pair()
    with pytest.raises(InputError, match="swir2"):
        detect_change(before.drop_vars("swir2"), after)
    with pytest.raises(InputError, match="align_pair"):
        detect_change(before.isel(y=slice(0, 50)), after)
    with pytest.raises(InputError, match="half a pixel"):
        detect_change(before.assign_coords(x=before.x + 100.0), after)
    with pytest.raises(InputError, match="radiometry"):
        detect_change(before.assign_attrs(radiometry="dn"), after)
    with pytest.raises(InputError, match="radiometry"):
        detect_change(before.assign_attrs(radiometry="radiance"), after)
    with pytest.raises(InputError, match="threshold_method"):
        ChangeParams(threshold_method="kmeans")
    with pytest.raises(InputError, match="unknown"):
        ChangeParams.from_dict({"mmu": 4})
    with pytest.raises(InputError, match="mmu_connectivity"):
        ChangeParams(mmu_connectivity=6)


# ------------------------------------------------------------------------------------------------
# fused kernel and block pass against the whole-array NumPy reference
# ------------------------------------------------------------------------------------------------

def _with_qa_and_bad_pixels(before, after):
    """The synthetic pair with product QA layers, a NaN, a saturated pixel and a QA-cloudy strip."""
    before, after = before.copy(), after.copy()
    shape = before["blue"].shape
    clear_b = np.ones(shape, bool)
    clear_a = np.ones(shape, bool)
    clear_a[60:64, :] = False                       # QA cloud over a strip
    water = np.zeros(shape, bool)
    water[100:115, 20:50] = True                    # the lake, flagged by the QA
    for ds, clear in ((before, clear_b), (after, clear_a)):
        ds["clear"] = (("y", "x"), clear)
        ds["water"] = (("y", "x"), water)
    blue = after["blue"].values.copy()
    blue[5, 5] = np.nan
    blue[6, 6] = 1.5                                 # saturated
    after["blue"] = (("y", "x"), blue)
    return before, after


def _dn(ds):
    out = ds.copy()
    for b in BANDS:
        out[b] = np.clip(np.round(ds[b] * 600.0), 0, 255).astype(np.float32)
    return out.assign_attrs(radiometry="dn")


@pytest.mark.parametrize("variant", ["reflectance", "qa", "dn", "em-opening"])
def test_fused_kernel_equals_numpy_reference(variant):
    from rsmon.products.change import detect_change_blocks, detect_change_numpy
    from rsmon.products.patches import INDEX_VARIABLES

    before, after = pair(chunks=32)                  # 16 blocks: the halo crosses block edges
    params = ChangeParams()
    if variant == "qa":
        before, after = _with_qa_and_bad_pixels(before, after)
    elif variant == "dn":
        before, after = _dn(before), _dn(after)
    elif variant == "em-opening":
        params = ChangeParams(threshold_method="em", opening_px=1, closing_px=2, mmu_px=6, mmu_connectivity=8)
    ref = detect_change_numpy(before, after, params)
    lazy = detect_change(before, after, params).compute()
    blocks = detect_change_blocks(before, after, params)
    assert int((ref["change"] == 1).sum()) >= 200 and int((ref["change"] == 255).sum()) >= 100   # the cloud
    for name in ref.data_vars:
        np.testing.assert_array_equal(lazy[name].values, ref[name].values, err_msg=name)  # NaN == NaN here
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(getattr(blocks, name), ref[name].values, err_msg=name)
    for key in ("threshold", "n_sample", "n_pif", "normalisation_nir", "change_params"):
        assert blocks.attrs[key] == lazy.attrs[key] == ref.attrs[key], key
    # the sparse samples: every change pixel once, with the reference index values
    change = ref["change"].values.ravel() == 1
    order = np.argsort(blocks.index_flat)
    np.testing.assert_array_equal(blocks.index_flat[order], np.flatnonzero(change))
    assert set(blocks.index_values) == set(INDEX_VARIABLES)
    for name, values in blocks.index_values.items():
        np.testing.assert_array_equal(values[order], ref[name].values.ravel()[change], err_msg=name)
    assert blocks.n_change == int(change.sum()) and blocks.n_valid == int((ref["change"].values != 255).sum())


def test_block_fit_equals_the_whole_scene_fit_on_a_small_scene():
    from rsmon.products.change_fit import fit_block_indices, fit_change
    from rsmon.products.change_numpy import fit_whole_scene
    from rsmon.products.change_pixels import pair_inputs

    before, after = pair(chunks=32)
    params = ChangeParams()
    fit = fit_change(pair_inputs(before, after, params, "reflectance"), params)
    assert (fit.n_fit_blocks, fit.n_blocks, fit.n_fit_px) == (16, 16, 120 * 120)   # small: every pixel
    *_, norm, attrs = fit_whole_scene(*(ds.compute() for ds in pair()), params, "reflectance")
    assert fit.normalisation == norm
    assert fit.attrs == attrs
    # a larger scene is fitted on a regular subset of blocks, about the budget
    chunks = ((512,) * 21 + (228,), (512,) * 21 + (228,))          # a Sentinel-2 tile
    blocks = fit_block_indices(chunks, 4_000_000)
    assert blocks == [(i, j) for i in (2, 8, 13, 19) for j in (2, 8, 13, 19)]
    assert len(fit_block_indices(chunks, 16_000_000)) == 64
    assert fit_block_indices(chunks, 200_000_000) == [(i, j) for i in range(22) for j in range(22)]


def test_block_fit_reads_more_blocks_when_the_subset_is_cloudy():
    from rsmon.products.change_fit import fit_change
    from rsmon.products.change_pixels import pair_inputs

    before, after = pair(chunks=40)                  # 3 x 3 blocks; a budget of one block reads the centre
    cloud = np.array(SPECTRA["cloud"], np.float32)
    after = after.copy()
    for i, b in enumerate(BANDS):
        values = after[b].values.copy()
        values[40:80, 40:80] = cloud[i]
        after[b] = (("y", "x"), values)
    after = after.chunk(40)
    params = ChangeParams(fit_sample_px=1600)
    fit = fit_change(pair_inputs(before, after, params, "reflectance"), params)
    assert fit.n_fit_blocks == 4 and fit.normalisation.n_sample > 0 and np.isfinite(fit.threshold)   # the corners


@pytest.mark.parametrize("opening, closing, mmu, conn", [(1, 2, 1, 4), (0, 1, 4, 8), (2, 1, 7, 4)])
def test_numba_cleanup_equals_scipy(opening, closing, mmu, conn):
    from rsmon.kernels.change import clean_codes

    rng = np.random.default_rng(mmu)
    codes = (rng.random((97, 83)) < 0.3).astype(np.uint8)
    codes[rng.random(codes.shape) < 0.08] = 255
    np.testing.assert_array_equal(clean_codes(codes, opening, closing, mmu, conn),
                                  clean_block(codes, opening, closing, mmu, conn))


def test_near_change_is_a_square_dilation():
    """The candidates' neighbourhood (running counts) against scipy's dilation by a (2r+1)^2 square,
    including radii larger than the block and blocks of one row or column."""
    from scipy import ndimage

    from rsmon.kernels.change import _near_change

    rng = np.random.default_rng(7)
    for h, w, radius in [(1, 1, 0), (1, 17, 3), (23, 1, 2), (40, 31, 5), (12, 9, 20), (64, 64, 1)]:
        raw = rng.choice(np.array([0, 1, 255], np.uint8), size=(h, w), p=[0.85, 0.05, 0.10])
        expected = ndimage.binary_dilation(raw == 1, structure=np.ones((2 * radius + 1,) * 2, bool)) if radius \
            else raw == 1
        np.testing.assert_array_equal(_near_change(raw, radius), expected, err_msg=f"{h}x{w} r={radius}")


def test_detect_change_blocks_dataset_and_all_cloud():
    rioxarray = pytest.importorskip("rioxarray")  # noqa: F841
    from rsmon.products.change import detect_change_blocks

    before, after = (ds.rio.write_crs("EPSG:32650") for ds in pair(chunks=64))
    blocks = detect_change_blocks(before, after)
    ds = blocks.to_dataset(after)
    assert ds.rio.crs.to_epsg() == 32650 and ds.rio.transform() == after.rio.transform()
    assert all(ds[v].dtype == np.uint8 for v in ("change", "change_class", "confidence"))
    assert ds["change"].attrs["flag_meanings"] == "no_change change no_data"
    assert blocks.index_flat.dtype == np.int64 and blocks.index_values["ndvi_after"].dtype == np.float32
    cloud = np.broadcast_to(np.array(SPECTRA["cloud"], np.float32)[:, None, None], (6, 40, 40)).copy()
    out = detect_change_blocks(pair()[0].isel(y=slice(0, 40), x=slice(0, 40)), scene(cloud, "2021-05-01"))
    assert (out.change == 255).all() and out.n_valid == 0 and out.index_flat.size == 0
    assert "clear" in out.attrs["no_data_reason"]
