"""Simulated Sentinel-2 L2A pairs (rsmon.sim.s2): layout, radiometry, truth, determinism, bad input."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio

from rsmon.errors import InputError
from rsmon.io.optical import align_pair, open_optical
from rsmon.sim.s2 import TRUTH_CLASSES, TRUTH_COLUMNS, main, simulate_s2_l2a_pair
from rsmon.sim.s2_scene import Landscape

SIZE = 512


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return simulate_s2_l2a_pair(tmp_path_factory.mktemp("s2sim"), size=SIZE, seed=3, n_changes=40)


def test_layout_names_and_metadata(pair):
    names = sorted(p.name for p in pair.before.iterdir())
    assert names == ["MTD_MSIL2A.xml"] + [f"T50SMF_20230501T030551_{b}.tif" for b in
                                          ("B02_10m", "B03_10m", "B04_10m", "B08_10m", "B11_20m", "B12_20m", "SCL_20m")]
    with rasterio.open(pair.after / "T50SMF_20230601T030551_B04_10m.tif") as src:
        assert (src.crs.to_epsg(), src.shape, src.dtypes[0], src.block_shapes[0]) == (32650, (SIZE, SIZE), "uint16", (512, 512))
        assert src.compression.name == "deflate" and src.transform.c == 399960.0 and src.transform.f == 4100040.0
    with rasterio.open(pair.after / "T50SMF_20230601T030551_SCL_20m.tif") as src:
        assert (src.shape, src.dtypes[0], src.res) == ((SIZE // 2, SIZE // 2), "uint8", (20.0, 20.0))
    root = ET.parse(pair.after / "MTD_MSIL2A.xml").getroot()
    text = {el.tag.rsplit("}", 1)[-1]: el.text for el in root.iter()}
    assert text["BOA_QUANTIFICATION_VALUE"] == "10000" and text["BOA_ADD_OFFSET"] == "-1000"
    assert text["PROCESSING_BASELINE"] == "05.09" and text["PRODUCT_START_TIME"].startswith("2023-06-01T03:05:51")


def test_reads_back_with_offset_clouds_and_nodata(pair):
    before, after = open_optical(pair.before), open_optical(pair.after)
    assert after.attrs["product"] == "S2 L2A" and after.attrs["datetime"].startswith("2023-06-01T03:05:51")
    aligned, _ = align_pair(before, after)
    assert aligned is before  # same tile grid: no resampling
    with rasterio.open(pair.before / "T50SMF_20230501T030551_B08_10m.tif") as src:
        dn = src.read(1)
    np.testing.assert_allclose(before.nir.values, (dn.astype(np.float64) - 1000) / 10000, atol=1e-7)
    scl_b, scl_a = before.scl.values, after.scl.values
    assert set(np.unique(scl_b)) <= {4, 5, 6}
    assert {3, 8, 9, 10} <= set(np.unique(scl_a)) and (scl_a == 0).any()
    nodata = scl_a == 0
    assert np.isnan(after.red.values[nodata]).all() and not after.clear.values[nodata].any()
    ndvi = ((before.nir - before.red) / (before.nir + before.red)).values
    assert 0.3 < np.nanmean(ndvi) < 0.7 and 0.02 < float(before.water.mean()) < 0.2


def test_truth_raster_csv_and_change_signatures(pair):
    with rasterio.open(pair.truth_raster) as src:
        truth = src.read(1)
        assert src.tags()["CLASS_1"] == "construction"
    with open(pair.truth_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == TRUTH_COLUMNS and len(rows) == len(pair.patches) >= 30
    for code in TRUTH_CLASSES:
        assert (truth == code).sum() == sum(int(r["n_pixels"]) for r in rows if int(r["class_code"]) == code)
    sizes = [p.n_pixels for p in pair.patches]
    assert min(sizes) >= 4 and max(sizes) <= 450
    before, after = open_optical(pair.before), open_optical(pair.after)
    clear = after.clear.values

    def index(ds, a, b):
        return ((ds[a] - ds[b]) / (ds[a] + ds[b])).values

    d_ndvi = index(after, "nir", "red") - index(before, "nir", "red")
    mndwi = index(after, "green", "swir1")
    for code, test in ((1, lambda m: (d_ndvi[m] < -0.3).mean() > 0.9), (2, lambda m: (d_ndvi[m] < -0.3).mean() > 0.9),
                       (3, lambda m: (mndwi[m] > 0).mean() > 0.7), (4, lambda m: (d_ndvi[m] < -0.2).mean() > 0.9)):
        inside = (truth == code) & clear
        if inside.sum() > 20:
            assert test(inside), TRUTH_CLASSES[code]
    unchanged = (truth == 0) & clear & before.clear.values
    assert np.nanmedian(np.abs(d_ndvi[unchanged])) < 0.1


def test_deterministic_and_window_independent(tmp_path):
    a = simulate_s2_l2a_pair(tmp_path / "a", size=64, seed=5, n_changes=3)
    b = simulate_s2_l2a_pair(tmp_path / "b", size=64, seed=5, n_changes=3)
    c = simulate_s2_l2a_pair(tmp_path / "c", size=64, seed=6, n_changes=3)
    read = lambda p: rasterio.open(next(p.glob("*_B04_10m.tif"))).read(1)  # noqa: E731
    np.testing.assert_array_equal(read(a.after), read(b.after))
    assert not np.array_equal(read(a.after), read(c.after))
    land = Landscape(1000, 1)
    cols = np.arange(1000)
    whole, part = land.cover(np.arange(0, 300), cols), land.cover(np.arange(100, 200), cols)
    np.testing.assert_array_equal(whole.cls[100:200], part.cls)
    np.testing.assert_array_equal(whole.green_after[100:200], part.green_after)


def test_bad_input_and_cli(tmp_path, capsys):
    for kwargs, match in (({"size": 101}, "size"), ({"tile": "50S"}, "tile"), ({"dates": ("2023-13-01", "2023-06-01")}, "dates"),
                          ({"n_changes": -1}, "n_changes")):
        with pytest.raises(InputError, match=match):
            simulate_s2_l2a_pair(tmp_path / "x", **({"size": 64} | kwargs))
    assert main(["--out", str(tmp_path / "cli"), "--size", "64", "--changes", "2", "--tile", "T33UUU"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-1].endswith("truth.csv") and open_optical(printed[0]).rio.crs.to_epsg() == 32633
    with pytest.raises(InputError, match="sim s2"):
        main(["--size", "64"])


def test_change_pass_reads_scenes_directly_with_the_graphs_result(pair):
    """The change pass reads reader scenes block by block without their dask graph
    (PairInputs.scenes); the result equals the graph path and the whole-array NumPy reference."""
    from rsmon.io.optical_raster import SCENE_BLOCKS
    from rsmon.products.change import detect_change_blocks, detect_change_numpy
    from rsmon.products.change_fit import fitted_pair

    before, after = open_optical(pair.before, chunks=128), open_optical(pair.after, chunks=128)
    assert fitted_pair(before, after)[2].scenes is not None
    direct = detect_change_blocks(before, after)
    graph_before, graph_after = before.copy(), after.copy()
    graph_before.encoding.pop(SCENE_BLOCKS)
    graph_after.encoding.pop(SCENE_BLOCKS)
    assert fitted_pair(graph_before, graph_after)[2].scenes is None
    via_graph = detect_change_blocks(graph_before, graph_after)
    ref = detect_change_numpy(before, after)
    assert direct.n_change > 1000
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(getattr(direct, name), getattr(via_graph, name), err_msg=name)
        np.testing.assert_array_equal(getattr(direct, name), ref[name].values, err_msg=name)
    np.testing.assert_array_equal(direct.index_flat, via_graph.index_flat)
    for name, values in direct.index_values.items():
        np.testing.assert_array_equal(values, via_graph.index_values[name], err_msg=name)
