"""Known-answer tests of the HARP-style polygon/cell clipping and area-weighted binning kernel."""

import numpy as np
import pytest

from rsmon.grid import LonLatGrid
from rsmon.kernels.binning import polygon_area
from rsmon.products.l3 import BinAccumulator, bin_pixels


def binned(grid, lon, lat, values, extra=None):
    acc = BinAccumulator.empty(grid)
    used = bin_pixels(acc, np.array(lon, float), np.array(lat, float), np.array(values, float),
                      None if extra is None else np.array(extra, float))
    return acc, used


def unit_grid(w=2, h=2, res=1.0, west=0.0, south=0.0):
    return LonLatGrid(west, south, res, w, h)


def test_pixel_equal_to_a_cell_fills_exactly_that_cell():
    acc, used = binned(unit_grid(), [[0, 1, 1, 0]], [[0, 0, 1, 1]], [2.0])
    assert used == 1
    # north-up: the cell [0,1]x[0,1] is in the bottom row (row 1), column 0
    np.testing.assert_allclose(acc.sum_w, [[0, 0], [1, 0]])
    np.testing.assert_array_equal(acc.count, [[0, 0], [1, 0]])
    assert acc.mean()[1, 0] == pytest.approx(2.0)
    assert np.isnan(acc.mean()[0, 0])


def test_pixel_straddling_four_cells_splits_its_area():
    acc, _ = binned(unit_grid(), [[0.5, 1.5, 1.5, 0.5]], [[0.5, 0.5, 1.5, 1.5]], [3.0])
    np.testing.assert_allclose(acc.sum_w, np.full((2, 2), 0.25))
    np.testing.assert_array_equal(acc.count, np.ones((2, 2)))
    np.testing.assert_allclose(acc.mean(), np.full((2, 2), 3.0))


def test_diamond_around_a_cell_corner():
    # A square rotated 45 degrees centred on (1, 1), half-diagonal 0.5: area 0.5, 0.125 in each cell.
    acc, _ = binned(unit_grid(), [[1.0, 1.5, 1.0, 0.5]], [[0.5, 1.0, 1.5, 1.0]], [1.0])
    np.testing.assert_allclose(acc.sum_w, np.full((2, 2), 0.125))


def test_triangle_from_a_repeated_corner():
    # Corners (0,0),(1,0),(1,1),(1,1): a right triangle of area 0.5 inside one cell.
    acc, _ = binned(unit_grid(1, 1), [[0, 1, 1, 1]], [[0, 0, 1, 1]], [5.0])
    assert acc.sum_w[0, 0] == pytest.approx(0.5)
    assert acc.mean()[0, 0] == pytest.approx(5.0)


def test_clockwise_and_counterclockwise_corners_agree():
    ccw, _ = binned(unit_grid(), [[0.2, 1.7, 1.7, 0.2]], [[0.3, 0.3, 1.1, 1.1]], [1.0])
    cw, _ = binned(unit_grid(), [[0.2, 0.2, 1.7, 1.7]], [[0.3, 1.1, 1.1, 0.3]], [1.0])
    np.testing.assert_allclose(ccw.sum_w, cw.sum_w)
    # hand-computed: x spans 0.8 in col 0 and 0.7 in col 1; y spans 0.7 in row 1 and 0.1 in row 0
    np.testing.assert_allclose(ccw.sum_w, [[0.8 * 0.1, 0.7 * 0.1], [0.8 * 0.7, 0.7 * 0.7]])


@pytest.mark.parametrize("lon,lat", [
    ([[0.5, 0.5, 0.5, 0.5]], [[0.5, 0.5, 0.5, 0.5]]),        # a point
    ([[0.1, 0.5, 0.9, 0.3]], [[0.1, 0.5, 0.9, 0.3]]),        # collinear
])
def test_degenerate_quads_contribute_nothing(lon, lat):
    acc, used = binned(unit_grid(), lon, lat, [1.0])
    assert used == 0
    assert acc.sum_w.sum() == 0 and acc.count.sum() == 0


def test_nan_values_and_nan_corners_are_skipped():
    acc, used = binned(unit_grid(), [[0, 1, 1, 0], [0, 1, np.nan, 0]], [[0, 0, 1, 1], [0, 0, 1, 1]], [np.nan, 1.0])
    assert used == 0
    assert acc.sum_w.sum() == 0


def test_weighted_mean_of_overlapping_pixels():
    # pixel A covers the whole cell (w=1, y=1); pixel B covers a quarter (w=0.25, y=5)
    acc, _ = binned(unit_grid(1, 1), [[0, 1, 1, 0], [0, 0.5, 0.5, 0]], [[0, 0, 1, 1], [0, 0, 0.5, 0.5]], [1.0, 5.0])
    assert acc.sum_w[0, 0] == pytest.approx(1.25)
    assert acc.mean()[0, 0] == pytest.approx((1 * 1 + 0.25 * 5) / 1.25)
    assert acc.count[0, 0] == 2


def test_inverse_variance_weighting():
    acc, _ = binned(unit_grid(1, 1), [[0, 1, 1, 0], [0, 1, 1, 0]], [[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 4.0],
                    extra=[1 / 1.0**2, 1 / 2.0**2])
    assert acc.mean()[0, 0] == pytest.approx((1 * 1 + 0.25 * 4) / 1.25)


def test_pixel_partly_outside_the_grid_keeps_only_the_inside_part():
    acc, _ = binned(unit_grid(1, 1), [[-0.5, 0.5, 0.5, -0.5]], [[-0.5, -0.5, 0.5, 0.5]], [1.0])
    assert acc.sum_w[0, 0] == pytest.approx(0.25)


def test_antimeridian_pixel_on_a_global_grid():
    grid = LonLatGrid(-180.0, 0.0, 1.0, 360, 1)
    acc, used = binned(grid, [[179.5, -179.5, -179.5, 179.5]], [[0, 0, 1, 1]], [7.0])
    assert used == 1
    assert acc.sum_w[0, -1] == pytest.approx(0.5)
    assert acc.sum_w[0, 0] == pytest.approx(0.5)
    assert acc.sum_w.sum() == pytest.approx(1.0)
    assert acc.mean()[0, 0] == pytest.approx(7.0) and acc.mean()[0, -1] == pytest.approx(7.0)


def test_antimeridian_pixel_on_a_grid_written_past_180():
    grid = LonLatGrid(179.0, 0.0, 1.0, 2, 1)  # 179..181
    acc, _ = binned(grid, [[179.5, -179.5, -179.5, 179.5]], [[0, 0, 1, 1]], [1.0])
    np.testing.assert_allclose(acc.sum_w, [[0.5, 0.5]])


def test_conservation_of_pixel_area():
    rng = np.random.default_rng(3)
    grid = LonLatGrid.from_bbox("100,10,110,20", 0.05)
    n = 5000
    cx = rng.uniform(100.5, 109.5, n)
    cy = rng.uniform(10.5, 19.5, n)
    # rotated, sheared quadrilaterals of 0.03-0.2 degrees
    a = rng.uniform(0.03, 0.2, n)
    b = rng.uniform(0.03, 0.2, n)
    th = rng.uniform(0, np.pi, n)
    dx = np.array([-1, 1, 1, -1])[None] * a[:, None] / 2
    dy = np.array([-1, -1, 1, 1])[None] * b[:, None] / 2
    lon = cx[:, None] + dx * np.cos(th)[:, None] - dy * np.sin(th)[:, None]
    lat = cy[:, None] + dx * np.sin(th)[:, None] + dy * np.cos(th)[:, None]
    acc, used = binned(grid, lon, lat, np.ones(n))
    assert used == n
    pixel_area = sum(polygon_area(lon[i], lat[i]) for i in range(n))
    assert (acc.sum_w * grid.res**2).sum() == pytest.approx(pixel_area, rel=1e-9)
    np.testing.assert_allclose(acc.mean()[acc.count > 0], 1.0)


def test_accumulators_merge_by_addition():
    rng = np.random.default_rng(1)
    grid = LonLatGrid.from_bbox("0,0,2,2", 0.1)
    cx, cy = rng.uniform(0, 2, 400), rng.uniform(0, 2, 400)
    lon = cx[:, None] + np.array([-0.07, 0.07, 0.07, -0.07])
    lat = cy[:, None] + np.array([-0.04, -0.04, 0.04, 0.04])
    vals = rng.normal(size=400)
    whole, _ = binned(grid, lon, lat, vals)
    a, _ = binned(grid, lon[:150], lat[:150], vals[:150])
    b, _ = binned(grid, lon[150:], lat[150:], vals[150:])
    merged = a + b
    np.testing.assert_allclose(merged.sum_wy, whole.sum_wy, atol=1e-12)
    np.testing.assert_allclose(merged.sum_w, whole.sum_w, atol=1e-12)
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_allclose(merged.mean(), whole.mean(), equal_nan=True, rtol=1e-6)


def test_conservation_on_a_simulated_swath_against_shapely(tmp_path):
    """sum(weight x cell area) equals the pixel area inside the grid, with shapely as the independent peer.

    The grid cuts through the swath, so pixels crossing the grid edge must contribute only their
    inside part.
    """
    shapely = pytest.importorskip("shapely")
    from rsmon.io.s5p import open_s5p
    from rsmon.sim.s5p import scanlines_crossing, simulate_orbit

    bbox = (113.0, 28.0, 117.0, 31.0)
    rows = scanlines_crossing(8609, bbox)
    path = simulate_orbit(tmp_path, 8609, seed=2, scanline_range=rows)
    ds = open_s5p(path)
    lon = ds["longitude_bounds"].values.reshape(-1, 4).astype(np.float64)
    lat = ds["latitude_bounds"].values.reshape(-1, 4).astype(np.float64)
    grid = LonLatGrid.from_bbox(bbox, 0.05)
    acc, used = binned(grid, lon, lat, np.ones(len(lon)))
    rings = np.stack([lon, lat], axis=-1)
    polygons = shapely.polygons(rings)
    inside = shapely.area(shapely.intersection(polygons, shapely.box(*grid.bounds))).sum()
    assert used > 1000
    assert (acc.sum_w * grid.res**2).sum() == pytest.approx(inside, rel=1e-9)
