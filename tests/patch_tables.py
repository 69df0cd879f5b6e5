"""Assertions shared by the tests that compare two redline runs' patch tables."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely


def assert_same_patches(a, b, rtol: float = 1e-12) -> None:
    """The ``patches.gpkg`` of run folders ``a`` and ``b`` hold the same patches: ids, columns,
    geometries vertex for vertex, index means equal to ``rtol`` (sums in another order); at
    least one patch."""
    pa, pb = gpd.read_file(a / "patches.gpkg"), gpd.read_file(b / "patches.gpkg")
    assert len(pa) > 0
    assert list(pa["patch_id"]) == list(pb["patch_id"])
    means = [c for c in pa.columns if c.endswith(("_before", "_after"))]
    assert pa.drop(columns=means + ["geometry"]).equals(pb.drop(columns=means + ["geometry"]))
    assert shapely.equals_exact(pa.geometry.to_numpy(), pb.geometry.to_numpy(), tolerance=0).all()
    np.testing.assert_allclose(pa[means].to_numpy(float), pb[means].to_numpy(float), rtol=rtol, equal_nan=True)
