"""The fit step of change detection on a bounded, regular subset of blocks.

The relative normalisation, the band scales and the magnitude threshold are global statistics of
a pair, but they need not see every pixel: :func:`fit_change` reads a regular subset of the
pair's blocks holding about ``ChangeParams.fit_sample_px`` pixels (every block of a smaller
scene), in one dask compute, and fits on them:

1. masks (valid, land) of every pixel of the fit blocks (fused kernel);
2. normalisation and band scales (:func:`~rsmon.products.change_threshold.fit_normalisation`) on
   every ``step``-th pixel in y and x, counted from the scene origin, of the fit blocks, in
   scene row-major order, ``step`` giving about ``normalisation_sample_px`` pixels;
3. histogram range (``histogram_quantile`` of the sampled magnitudes), magnitude histogram of
   every valid (land) pixel of the fit blocks, Otsu or EM threshold, noise floor.

When the fit blocks are every block (scenes of at most ``fit_sample_px`` pixels) this is exactly
the whole-scene fit of :func:`rsmon.products.change_numpy.fit_whole_scene`. A larger scene is
fitted on a few million pixels spread over it: the histogram of a large regular sample has the
shape of the whole scene's, so its threshold agrees to about a histogram bin
(docs/validation_change.md). If the subset holds fewer than ``min_valid_px`` clear pixels (clouds
just there), the grid of fit blocks is made twice as dense until it does or every block is read.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dask
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from rsmon.products.change_numpy import threshold_attrs
from rsmon.products.change_pair import check_pair, on_after_grid
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_pixels import BlockPair, PairInputs, pair_inputs
from rsmon.products.change_threshold import Normalisation, fit_normalisation, masked_histogram

__all__ = ["ChangeFit", "fit_block_indices", "fit_change", "fitted_pair", "prepared_pair", "read_blocks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeFit:
    """Normalisation, band scales and threshold of a pair, and what they were fitted on.

    ``attrs`` holds ``threshold`` (NaN when none), and ``threshold_automatic`` /
    ``no_data_reason`` when they apply; ``n_fit_px`` pixels in ``n_fit_blocks`` of ``n_blocks``
    blocks were read."""

    normalisation: Normalisation
    attrs: dict = field(default_factory=dict)
    n_fit_px: int = 0
    n_fit_blocks: int = 0
    n_blocks: int = 0

    @property
    def threshold(self) -> float:
        return float(self.attrs["threshold"])

    def as_attrs(self) -> dict:
        return {**self.attrs, "n_fit_px": int(self.n_fit_px), "n_fit_blocks": int(self.n_fit_blocks)}


def fit_block_indices(chunks, budget_px: int, scale: int = 1) -> list[tuple[int, int]]:
    """The (row, column) indices of the fit blocks.

    Every block when the scene has at most ``budget_px`` pixels; otherwise a regular grid of
    ``k_rows`` x ``k_cols`` blocks, each at the centre of its cell of an even division of the block
    rows and columns, with ``k_rows * k_cols`` about ``budget_px`` / block size (times ``scale``
    squared, capped at every block)."""
    n_rows, n_cols = len(chunks[0]), len(chunks[1])
    if sum(chunks[0]) * sum(chunks[1]) <= budget_px:
        return [(i, j) for i in range(n_rows) for j in range(n_cols)]
    want = max(1, budget_px // (max(chunks[0]) * max(chunks[1])))
    k_rows = max(1, round(math.sqrt(want * n_rows / n_cols)))
    k_cols = max(1, round(want / k_rows))
    k_rows, k_cols = min(n_rows, k_rows * scale), min(n_cols, k_cols * scale)
    rows = sorted({int((m + 0.5) * n_rows / k_rows) for m in range(k_rows)})
    cols = sorted({int((m + 0.5) * n_cols / k_cols) for m in range(k_cols)})
    return [(i, j) for i in rows for j in cols]


def read_blocks(inputs: PairInputs, indices) -> list[BlockPair]:
    """Blocks ``indices`` (row, column) of a pair in memory: read by the scenes' readers on a local
    thread pool when the inputs have them (:attr:`PairInputs.scenes`), else one computation of
    their input chunks on the configured dask scheduler (the chunks themselves, not copies
    assembled into arrays)."""
    if inputs.scenes:
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            return [inputs.block(values) for values in pool.map(lambda ij: inputs.read_block(*ij), indices)]
    keys = [key for i, j in indices for key in inputs.block_keys(i, j)]
    graph = HighLevelGraph.merge(*(a.__dask_graph__() for a in inputs.arrays)).cull(set(keys))
    get = dask.base.get_scheduler() or dask.threaded.get
    values = get(graph, keys)
    n = len(inputs.arrays)
    return [inputs.block(values[m * n:(m + 1) * n]) for m in range(len(indices))]


def fit_change(inputs: PairInputs, params: ChangeParams) -> ChangeFit:
    """Fit normalisation, band scales and threshold on the fit blocks (module doc); one dask compute
    (more only when the first subset is almost all cloud)."""
    p = params
    use_land = inputs.radiometry == "reflectance" and p.statistics_on_land
    row_starts, col_starts = inputs.block_starts
    n_blocks = len(inputs.chunks[0]) * len(inputs.chunks[1])
    indices = fit_block_indices(inputs.chunks, p.fit_sample_px)
    scale = 1
    while True:
        blocks = read_blocks(inputs, indices)
        masks = [b.masks() for b in blocks]
        n_valid = sum(int(v.sum()) for v, _ in masks)
        if n_valid >= p.min_valid_px or len(indices) == n_blocks:
            break
        scale *= 2
        indices = fit_block_indices(inputs.chunks, p.fit_sample_px, scale)
        log.info("change fit: %d clear pixels in the fit blocks; reading %d blocks", n_valid, len(indices))
    n_fit_px = sum(b.shape[0] * b.shape[1] for b in blocks)
    step = max(1, int(math.floor(math.sqrt(n_fit_px / p.normalisation_sample_px))))

    # strided sample in scene row-major order (equal to the whole-scene sample when every block is read)
    rows, cols, sb, sa, land = [], [], [], [], []
    for (i, j), block, (valid, on_land) in zip(indices, blocks, masks):
        r0, c0 = int(row_starts[i]), int(col_starts[j])
        rs = slice((-r0) % step, None, step)
        cs = slice((-c0) % step, None, step)
        ok = valid[rs, cs]
        rr, cc = np.nonzero(ok)
        rows.append(rr * step + r0 + (-r0) % step)
        cols.append(cc * step + c0 + (-c0) % step)
        sb.append(np.stack([band[rs, cs][ok] for band in block.before]))
        sa.append(np.stack([band[rs, cs][ok] for band in block.after]))
        land.append(on_land[rs, cs][ok])
    order = np.lexsort((np.concatenate(cols), np.concatenate(rows)))
    sb = np.concatenate(sb, axis=1)[:, order].astype(np.float64)
    sa = np.concatenate(sa, axis=1)[:, order].astype(np.float64)
    on_land = np.concatenate(land)[order] if use_land else np.ones(order.size, bool)
    norm = fit_normalisation(sb, sa, p, scale_mask=on_land)

    gains, offsets, scales = (np.asarray(v) for v in (norm.gains, norm.offsets, norm.diff_scales))
    sl, sa_l = sb[:, on_land], sa[:, on_land]
    sample_mag = np.sqrt((((sa_l - (gains[:, None] * sl + offsets[:, None])) / scales[:, None]) ** 2).sum(axis=0))
    counts = edges = None
    if sample_mag.size:
        upper = float(np.quantile(sample_mag, p.histogram_quantile))
        upper = upper if upper > 0 else 1.0
        counts = np.zeros(p.histogram_bins, np.int64)
        for block, (valid, on_land_px) in zip(blocks, masks):
            stats = valid & on_land_px if use_land else valid
            values = block.magnitudes(norm, stats)
            part, edges = masked_histogram(values, np.ones(values.shape, bool), p.histogram_bins, upper)
            counts += part
    attrs = threshold_attrs(counts, edges, norm, p, bool(sample_mag.size))
    log.info("change fit on %d of %d blocks (%d pixels): threshold %.3f", len(indices), n_blocks, n_fit_px,
             attrs["threshold"])
    return ChangeFit(norm, attrs, n_fit_px, len(indices), n_blocks)


def prepared_pair(before, after, params: ChangeParams | None = None, chunks=None):
    """Check an aligned pair, put ``before`` on the after coordinates and build the kernel inputs
    (on ``chunks``, default the after scene's): ``(params, before, inputs)``.

    Raises
    ------
    InputError
        Missing bands, different grids or radiometries (:func:`~rsmon.products.change_pair.check_pair`).
    """
    p = params or ChangeParams()
    radiometry, _ = check_pair(before, after)
    before = on_after_grid(before, after)
    return p, before, pair_inputs(before, after, p, radiometry, chunks)


def fitted_pair(before, after, params: ChangeParams | None = None):
    """:func:`prepared_pair` and the fit of its inputs: ``(params, before, inputs, fit)`` for
    :func:`rsmon.products.change.detect_change`.

    Raises
    ------
    InputError
        As :func:`prepared_pair`.
    """
    p, before, inputs = prepared_pair(before, after, params)
    return p, before, inputs, fit_change(inputs, p)
