"""Put a "before" scene on the exact pixel grid of an "after" scene, lazily.

Three paths, cheapest first:

1. same grid (CRS, transform, shape): ``before`` is returned as it is (bit-identical values);
2. same CRS and pixel size, origins an integer number of pixels apart: slicing and padding, no
   resampling (values bit-identical where the scenes overlap);
3. anything else (other pixel size, other CRS, a sub-pixel co-registration shift): every output
   chunk is one dask task that takes the ``before`` pixels under it (plus a margin) and resamples
   them (:func:`~rsmon.io.optical_grid.warp_array`): bilinear for float variables, nearest for
   integer QA layers and boolean masks.

Outside ``before``'s footprint the result is NaN (floats), False (masks) or the layer's
``_FillValue`` (SCL 0, QA_PIXEL 1 = fill).

When ``before`` has direct block access (a reader's scene, :class:`~rsmon.io.optical_raster.SceneBlocks`,
or a composite of such scenes), paths 2 and 3 keep it (:class:`AlignedBlocks`): the change pass then
reads each block's source window once from the scene's reader and shifts or resamples it, instead
of evaluating the dask graph per block (which decodes the up to four ``before`` blocks under every
output block again for each of them: a co-registered Sentinel-2 tile took 2.5-3.1 times as long
as an aligned one, now about 1.2 times; docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.io.optical_grid import PixelGrid, integer_offset, source_window, warp_array
from rsmon.io.optical_raster import DEFAULT_CHUNK, SCENE_BLOCKS, BlockSource

log = logging.getLogger(__name__)

__all__ = ["AlignedBlocks", "align_pair", "dataset_grid", "grid_distance", "shifted_georeference"]


def dataset_grid(ds: xr.Dataset, role: str = "dataset") -> PixelGrid:
    """The :class:`PixelGrid` of a Dataset written by :func:`rsmon.io.optical.open_optical` (rioxarray
    CRS and transform, dims ``y``/``x``)."""
    import rioxarray  # noqa: F401

    if "y" not in ds.dims or "x" not in ds.dims:
        raise InputError(f"{role} {_source(ds)}: expected dims y and x, got {tuple(ds.dims)}")
    crs = ds.rio.crs
    return PixelGrid(crs.to_wkt() if crs else None, ds.rio.transform(), ds.sizes["y"], ds.sizes["x"])


def grid_distance(grid: xr.Dataset, metres: float) -> float:
    """``metres`` in the units of ``grid``'s CRS: metres (or feet) on a projected grid; on a
    geographic grid the degrees of longitude at the grid's latitude farthest from the equator
    (at least that many metres along both axes)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    from pyproj import CRS

    crs = CRS.from_user_input(grid.rio.crs)
    if crs.is_geographic:
        lat = min(float(np.nanmax(np.abs(grid["y"].values))), 89.0)
        return metres / (111_320.0 * np.cos(np.radians(lat)))
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return metres / (factor or 1.0)


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source", "<unnamed scene>"))


def _check_overlap(before: xr.Dataset, after: xr.Dataset, src: PixelGrid, dst: PixelGrid,
                   roles: tuple[str, str] = ("before", "after")) -> None:
    from rasterio.warp import transform_bounds

    if (src.crs is None) != (dst.crs is None):
        raise InputError(f"cannot align {_source(before)} and {_source(after)}: only one of them has a CRS")
    west, south, east, north = dst.bounds
    if src.crs is not None and not src.same_crs(dst):
        west, south, east, north = transform_bounds(dst.crs, src.crs, west, south, east, north, densify_pts=21)
    s_west, s_south, s_east, s_north = src.bounds
    if min(east, s_east) <= max(west, s_west) or min(north, s_north) <= max(south, s_south):
        raise InputError(f"scenes do not overlap: {roles[0]} {_source(before)} "
                         f"(bounds {tuple(round(v, 6) for v in src.bounds)}) and {roles[1]} {_source(after)} "
                         f"(bounds {tuple(round(v, 6) for v in dst.bounds)}, "
                         f"{tuple(round(v, 6) for v in (west, south, east, north))} in the {roles[0]} CRS)")


def _fill(var: xr.DataArray):
    kind = var.dtype.kind
    if kind == "f":
        return np.nan
    if kind == "b":
        return False
    return var.dtype.type(var.attrs.get("_FillValue", 0))


def _chunks(after: xr.Dataset) -> tuple[tuple[int, ...], tuple[int, ...]]:
    for var in after.data_vars.values():
        if var.dims == ("y", "x") and var.chunks:
            return var.chunks
    import dask.array as dsa

    return dsa.core.normalize_chunks((DEFAULT_CHUNK, DEFAULT_CHUNK), (after.sizes["y"], after.sizes["x"]))


def _shifted(data, shift: tuple[int, int], src: PixelGrid, dst: PixelGrid, fill, chunks):
    """``before`` pixels of the ``dst`` window by slicing and padding (same pixel lattice)."""
    import dask.array as dsa

    row, col = shift
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + dst.height, src.height), min(col + dst.width, src.width)
    sub = data[r0:r1, c0:c1]
    pad = ((r0 - row, row + dst.height - r1), (c0 - col, col + dst.width - c1))
    if any(any(p) for p in pad):
        sub = dsa.pad(sub, pad, mode="constant", constant_values=fill)
    return sub.rechunk(chunks)


def _warp_block(values: np.ndarray, src_transform, src_crs, dst_transform, dst_crs, shape, fill) -> np.ndarray:
    if values.dtype == bool:
        out = warp_array(values.astype(np.uint8), src_transform, src_crs, dst_transform, dst_crs, shape,
                         nearest=True, fill=0)
        return out.astype(bool)
    return warp_array(values, src_transform, src_crs, dst_transform, dst_crs, shape,
                      nearest=values.dtype.kind != "f", fill=fill)


def _windows(src: PixelGrid, dst: PixelGrid, chunks) -> list[list[tuple]]:
    """Per output chunk: (row, col, height, width, dst transform, source window or None)."""
    rows, out = np.cumsum((0,) + chunks[0]), []
    cols = np.cumsum((0,) + chunks[1])
    for i, h in enumerate(chunks[0]):
        line = []
        for j, w in enumerate(chunks[1]):
            transform = dst.window_transform(int(rows[i]), int(cols[j]))
            line.append((int(rows[i]), int(cols[j]), h, w, transform, source_window(src, dst.crs, transform, h, w)))
        out.append(line)
    return out


def _block_ranges(bounds: np.ndarray, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(block index, start, stop inside the block) of the blocks covering [lo, hi) of one axis
    (``bounds``: the blocks' edges, the end included)."""
    out = []
    first = max(int(np.searchsorted(bounds, lo, side="right")) - 1, 0)
    for b in range(first, len(bounds) - 1):
        if bounds[b] >= hi:
            break
        start, stop = max(lo, int(bounds[b])), min(hi, int(bounds[b + 1]))
        if start < stop:
            out.append((b, start - int(bounds[b]), stop - int(bounds[b])))
    return out


def _window_and_warp(blocks: list, pieces: list, window_shape, transforms, crss, shape, fill) -> np.ndarray:
    """Assemble the source window from its blocks (``pieces``: placement of each), then resample it."""
    window = np.empty(window_shape, dtype=blocks[0].dtype)
    for block, (r, c, rows, cols) in zip(blocks, pieces):
        part = block[rows, cols]
        window[r:r + part.shape[0], c:c + part.shape[1]] = part
    return _warp_block(window, transforms[0], crss[0], transforms[1], crss[1], shape, fill)


def _warp_plan(windows, src: PixelGrid, source_chunks) -> list[list]:
    """Per output chunk: None (outside the source), or the source blocks under its window
    (``(bi, bj)`` each), their placement in the window, the window's shape and its transform.
    The same for every variable on ``source_chunks`` (computed once per alignment)."""
    row_bounds, col_bounds = np.cumsum((0,) + source_chunks[0]), np.cumsum((0,) + source_chunks[1])
    plan = []
    for line in windows:
        out = []
        for *_, window in line:
            if window is None:
                out.append(None)
                continue
            r0, c0, wh, ww = window
            blocks, pieces = [], []
            cols = _block_ranges(col_bounds, c0, c0 + ww)
            for bi, ra, rb in _block_ranges(row_bounds, r0, r0 + wh):
                for bj, ca, cb in cols:
                    blocks.append((bi, bj))
                    pieces.append((int(row_bounds[bi]) + ra - r0, int(col_bounds[bj]) + ca - c0, slice(ra, rb),
                                   slice(ca, cb)))
            out.append((blocks, pieces, (wh, ww), src.window_transform(r0, c0)))
        plan.append(out)
    return plan


def _warped(data, windows, plan, src: PixelGrid, dst: PixelGrid, fill, dtype):
    """A dask array on ``dst``: one task per chunk taking the ``before`` blocks under it (its source
    window plus a margin, :func:`_warp_plan`) and resampling them. The graph is written directly
    (one task per chunk) because slicing the source array per chunk costs seconds per variable on a
    full tile."""
    import dask.array as dsa
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = "align-" + tokenize(data.name, src, dst, fill, str(dtype))
    dsk = {}
    for i, (line, steps) in enumerate(zip(windows, plan)):
        for j, ((_, _, h, w, transform, _), step) in enumerate(zip(line, steps)):
            if step is None:
                dsk[(name, i, j)] = (np.full, (h, w), fill, dtype)
                continue
            blocks, pieces, window_shape, src_transform = step
            dsk[(name, i, j)] = (_window_and_warp, [(data.name, bi, bj) for bi, bj in blocks], pieces, window_shape,
                                 (src_transform, transform), (src.crs, dst.crs), (h, w), fill)
    chunks = (tuple(line[0][2] for line in windows), tuple(item[3] for item in windows[0]))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    return dsa.Array(graph, name, chunks, meta=np.empty((0, 0), dtype=dtype))


@dataclass(frozen=True)
class AlignedBlocks(BlockSource):
    """Direct block access of a scene put on another grid by :func:`align_pair` (its paths 2 and 3).

    ``read(rows, cols)`` reads the ``before`` pixels under the window from ``before``'s own block
    access (``inner``) and shifts them (``offset``: the integer-offset path, :func:`_shifted`) or
    resamples them (:func:`_warp_block` on :func:`~rsmon.io.optical_grid.source_window`, the
    window and margin the lazy task takes, :func:`_warped`): on a block window the values are those
    of the aligned lazy arrays (tested); the inner window is read in one call, so a source tile
    under several blocks is decoded once (the tile reader's cache) rather than once per block.
    """

    inner: BlockSource
    src: PixelGrid
    dst: PixelGrid
    offset: tuple[int, int] | None  # (row, col) of dst's first pixel in src, or None: resampled
    fills: tuple[tuple[str, Any, Any], ...]  # (variable, fill value, dtype) of every aligned variable
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    names: tuple[tuple[str, str], ...]

    def _filled(self, shape, present=None) -> dict[str, np.ndarray]:
        return {name: np.full(shape, fill, dtype) for name, fill, dtype in self.fills
                if present is None or name in present}

    def read(self, rows: slice, cols: slice, bands=None) -> dict[str, np.ndarray]:
        """Every aligned variable on the window ``rows`` x ``cols`` (unit step) of the target grid
        (with ``bands``: those the inner source gives for them, at least these bands and the QA
        variables)."""
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        if self.offset is not None:
            r0, c0 = rows.start + self.offset[0], cols.start + self.offset[1]
            a0, a1 = max(r0, 0), min(r0 + shape[0], self.src.height)
            b0, b1 = max(c0, 0), min(c0 + shape[1], self.src.width)
            if a1 <= a0 or b1 <= b0:
                return self._filled(shape)  # every variable (also beyond ``bands``)
            values = self.inner.read(slice(a0, a1), slice(b0, b1), bands=bands)
            if (a1 - a0, b1 - b0) == shape:
                return {name: values[name] for name, _, _ in self.fills if name in values}
            out = self._filled(shape, values)
            for name in out:
                out[name][a0 - r0:a1 - r0, b0 - c0:b1 - c0] = values[name]
            return out
        transform = self.dst.window_transform(rows.start, cols.start)
        window = source_window(self.src, self.dst.crs, transform, *shape)
        if window is None:
            return self._filled(shape)
        r0, c0, h, w = window
        values = self.inner.read(slice(r0, r0 + h), slice(c0, c0 + w), bands=bands)
        src_transform = self.src.window_transform(r0, c0)
        return {name: _warp_block(values[name], src_transform, self.src.crs, transform, self.dst.crs, shape, fill)
                for name, fill, _ in self.fills if name in values}


def _aligned_blocks(before: xr.Dataset, out: xr.Dataset, src: PixelGrid, dst: PixelGrid,
                    offset: tuple[int, int] | None, chunks) -> AlignedBlocks | None:
    """The :class:`AlignedBlocks` of ``out`` (``before`` aligned), or None when ``before`` has no
    direct block access of all its aligned variables."""
    aligned = [name for name, var in out.data_vars.items() if var.dims == ("y", "x")]
    if not aligned:
        return None
    first = before[aligned[0]]
    inner = BlockSource.of(before, aligned, first.chunks) if first.chunks else None
    if inner is None:
        return None
    fills = tuple((name, _fill(before[name]), before[name].dtype) for name in aligned)
    return AlignedBlocks(inner, src, dst, offset, fills, tuple(map(tuple, chunks)),
                         tuple((name, out[name].data.name) for name in aligned))


def shifted_georeference(ds: xr.Dataset, dy: float, dx: float, grid: PixelGrid) -> xr.Dataset:
    """``ds`` with its georeference moved so that its content lies ``dy`` rows down and ``dx``
    columns right of where it was, in pixels of ``grid`` (a co-registration correction,
    :func:`rsmon.products.coregister.estimate_shift`); values untouched. In another CRS than
    ``grid``'s, the move is that vector at the grid's centre, in ``ds``'s CRS."""
    from affine import Affine

    src = dataset_grid(ds)
    move_x, move_y = dx * grid.transform.a, dy * grid.transform.e
    if src.crs is not None and grid.crs is not None and not src.same_crs(grid):
        from pyproj import Transformer

        to_src = Transformer.from_crs(grid.crs, src.crs, always_xy=True)
        cx, cy = grid.transform * (grid.width / 2.0, grid.height / 2.0)
        (x0, x1), (y0, y1) = to_src.transform([cx, cx + move_x], [cy, cy + move_y])
        move_x, move_y = x1 - x0, y1 - y0
    out = ds.assign_coords(x=ds["x"] + move_x, y=ds["y"] + move_y)
    out.attrs = dict(ds.attrs)
    return out.rio.write_transform(Affine.translation(move_x, move_y) @ src.transform)


def align_pair(before: xr.Dataset, after: xr.Dataset,
               roles: tuple[str, str] = ("before", "after"),
               shift: tuple[float, float] | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    """``before`` resampled onto ``after``'s exact grid (CRS, transform, shape); ``after`` unchanged.

    Parameters
    ----------
    before, after : xarray.Dataset
        Scenes from :func:`rsmon.io.optical.open_optical` (any Dataset with ``y``/``x`` dims and a
        rioxarray CRS and transform). Variables without ``y``/``x`` are copied.
    roles : (str, str)
        What the two scenes are, for the error messages (e.g. ``("later after scene", "first
        after scene")`` when a series' scenes are put on one grid).
    shift : (dy, dx), optional
        A co-registration correction: ``before``'s content is moved by this many ``after`` pixels
        (down, right) before it is put on the grid (:func:`shifted_georeference`): one resampling,
        or a slice when the corrected offset is a whole number of pixels.

    Returns
    -------
    (xarray.Dataset, xarray.Dataset)
        ``before`` on the ``after`` grid (lazy, chunked like ``after``; NaN / False / ``_FillValue``
        outside ``before``), and ``after`` itself. Same-grid input is returned without resampling.

    Raises
    ------
    InputError
        The footprints do not overlap (the message names both sources), only one scene has a CRS,
        or a variable has dims other than ``(y, x)``.
    """
    import dask.array as dsa

    dst = dataset_grid(after, roles[1])
    if shift is not None and any(shift):
        before = shifted_georeference(before, float(shift[0]), float(shift[1]), dst)
    src = dataset_grid(before, roles[0])
    if src.same_as(dst):
        return before, after
    _check_overlap(before, after, src, dst, roles)
    chunks = _chunks(after)
    shift = integer_offset(src, dst)
    windows = None if shift is not None else _windows(src, dst, chunks)
    plans: dict = {}  # per source chunking (the same for a reader's variables)
    data_vars = {}
    for name, var in before.data_vars.items():
        if "y" not in var.dims and "x" not in var.dims:
            data_vars[name] = var
            continue
        if var.dims != ("y", "x"):
            raise InputError(f"before {_source(before)}: variable {name} has dims {var.dims}, expected (y, x)")
        data = var.data if isinstance(var.data, dsa.Array) else dsa.from_array(np.asarray(var.data), chunks=DEFAULT_CHUNK)
        fill = _fill(var)
        if shift is not None:
            data = _shifted(data, shift, src, dst, fill, chunks)
        else:
            if data.chunks not in plans:
                plans[data.chunks] = _warp_plan(windows, src, data.chunks)
            data = _warped(data, windows, plans[data.chunks], src, dst, fill, var.dtype)
        data_vars[name] = xr.DataArray(data, dims=("y", "x"), attrs=dict(var.attrs))
    out = xr.Dataset(data_vars, coords={"y": after["y"], "x": after["x"]}, attrs=dict(before.attrs))
    out.attrs["aligned_to"] = _source(after)
    out.attrs["alignment"] = "shift" if shift is not None else "resampled"
    blocks = _aligned_blocks(before, out, src, dst, shift, chunks)
    log.info("aligned %s onto the grid of %s (%s)", _source(before), _source(after), out.attrs["alignment"])
    if dst.crs is not None:
        out = out.rio.write_crs(dst.crs)
    out = out.rio.write_transform(dst.transform)
    if blocks is not None:
        out.encoding[SCENE_BLOCKS] = blocks
    return out, after

