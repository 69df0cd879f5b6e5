"""Morphological clean-up and minimum mapping unit of a change mask, blockwise with a halo.

The mask is uint8: 1 change, 0 no change, 255 no data. Steps, in order:

1. opening of the change pixels with a diamond of radius ``opening_px`` (0 = skip);
2. closing with a diamond of radius ``closing_px`` (0 = skip); no-data pixels never become change;
3. minimum mapping unit (``rasterio.features.sieve`` semantics, ``mmu_connectivity``): change
   patches of fewer than ``mmu_px`` pixels become no change, then no-change holes of fewer than
   ``mmu_px`` pixels that touch change become change (GDAL merges a small polygon into its largest
   neighbour; with two classes that neighbour is the other class; no-data pixels belong to no
   polygon). GDAL processes polygons one after another; here islands go first, then holes.

:func:`clean_block` is the scipy version (the reference, used on whole arrays by
:func:`rsmon.products.change.detect_change_numpy`); :func:`clean_change_mask` runs the numba twin
:func:`rsmon.kernels.change.clean_codes` (same result, releases the GIL) on each dask block with a
halo of :attr:`ChangeParams.halo_px` pixels (``map_overlap``, no padding at the array edge), which
gives exactly the whole-array result: a component smaller than the MMU lies within ``mmu_px - 1``
pixels of each of its pixels, and a larger one shows at least ``mmu_px`` pixels inside the halo.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from rsmon.kernels.change import clean_codes
from rsmon.products.change_params import ChangeParams

CHANGE, NO_CHANGE, NODATA = 1, 0, 255


def _diamond(radius: int) -> np.ndarray:
    return ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), radius).astype(bool)


def _connectivity(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def remove_small(mask: np.ndarray, min_px: int, connectivity: int = 4) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_px`` pixels."""
    if min_px <= 1 or not mask.any():
        return mask.copy()
    labels, _ = ndimage.label(mask, structure=_connectivity(connectivity))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, valid: np.ndarray, min_px: int, connectivity: int = 4) -> np.ndarray:
    """``mask`` with its valid no-change components of fewer than ``min_px`` pixels that touch
    ``mask`` set to True."""
    holes = valid & ~mask
    if min_px <= 1 or not holes.any() or not mask.any():
        return mask.copy()
    structure = _connectivity(connectivity)
    labels, _ = ndimage.label(holes, structure=structure)
    sizes = np.bincount(labels.ravel())
    touching = np.zeros(sizes.size, dtype=bool)
    touching[np.unique(labels[ndimage.binary_dilation(mask, structure=structure) & holes])] = True
    fill = touching & (sizes < min_px)
    fill[0] = False
    return mask | fill[labels]


def clean_block(codes: np.ndarray, opening_px: int, closing_px: int, mmu_px: int,
                connectivity: int = 4) -> np.ndarray:
    """Clean one block of a uint8 change mask (1 change, 0 no change, 255 no data)."""
    valid = codes != NODATA
    change = codes == CHANGE
    if opening_px > 0 and change.any():
        se = _diamond(opening_px)
        # Outside the array counts as change for the erosion, so patches on the edge survive.
        eroded = ndimage.binary_erosion(change, structure=se, border_value=1)
        change = ndimage.binary_dilation(eroded, structure=se) & change
    if closing_px > 0 and change.any():
        se = _diamond(closing_px)
        dilated = ndimage.binary_dilation(change, structure=se)
        change = (ndimage.binary_erosion(dilated, structure=se, border_value=1) | change) & valid
    if mmu_px > 1:
        change = remove_small(change, mmu_px, connectivity)
        change = fill_small_holes(change, valid, mmu_px, connectivity)
    out = np.where(change, CHANGE, NO_CHANGE).astype(np.uint8)
    out[~valid] = NODATA
    return out


def _clean_codes(codes: np.ndarray, opening_px: int, closing_px: int, mmu_px: int, connectivity: int) -> np.ndarray:
    return clean_codes(np.ascontiguousarray(codes, dtype=np.uint8), opening_px, closing_px, mmu_px, connectivity)


def clean_change_mask(codes: xr.DataArray, params: ChangeParams) -> xr.DataArray:
    """Opening, closing and MMU sieve of a change mask; blockwise with a halo for dask input.

    Parameters
    ----------
    codes : xarray.DataArray
        uint8 on ("y", "x"): 1 change, 0 no change, 255 no data (NumPy or dask backed).
    params : ChangeParams
        ``opening_px``, ``closing_px``, ``mmu_px``, ``mmu_connectivity``.

    Returns
    -------
    xarray.DataArray
        The cleaned mask, same grid and backing (lazy stays lazy), equal to the whole-array result.
    """
    kwargs = {"opening_px": params.opening_px, "closing_px": params.closing_px, "mmu_px": params.mmu_px,
              "connectivity": params.mmu_connectivity}
    if params.opening_px == 0 and params.closing_px == 0 and params.mmu_px <= 1:
        return codes
    data = codes.data
    if isinstance(data, da.Array):
        # an axis shorter than the halo is cleaned whole (one chunk, no overlap)
        short = {axis: -1 for axis, n in enumerate(data.shape) if n <= params.halo_px}
        data = data.rechunk(short) if short else data
        depth = {axis: 0 if axis in short else params.halo_px for axis in range(2)}
        cleaned = da.map_overlap(_clean_codes, data, depth=depth, boundary="none", dtype=np.uint8,
                                 meta=np.array((), dtype=np.uint8), **kwargs)
    else:
        cleaned = _clean_codes(np.asarray(data), **kwargs)
    return codes.copy(data=cleaned)
