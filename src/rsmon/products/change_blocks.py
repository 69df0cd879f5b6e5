"""Change detection of a whole scene in one pass over its blocks (fused kernel, bounded memory).

:func:`detect_change_blocks` is the fast path of :func:`rsmon.products.change.detect_change`:
after the fit (:func:`~rsmon.products.change_fit.fit_change`, a few million pixels), every input
block is read and decoded once (by the scenes' readers directly when the inputs are unmodified
reader arrays, :attr:`~rsmon.products.change_pixels.PairInputs.scenes`; else by evaluating the
block's own tasks of the input graph), and two steps per block run on a thread pool, in waves of
block rows:

1. per block: the fused kernel (:func:`rsmon.kernels.change.detect_pixels`: masks, normalisation,
   magnitude, threshold) gives the raw change codes; the index values and rule classes of the
   pixels that can be change after the clean-up (the "candidates": near a detected pixel or the
   block edge, about 10-15 % of the pixels) are kept (:func:`~rsmon.kernels.change.candidate_samples`);
   the input bands are then released;
2. per block, once its neighbours have passed step 1: the clean-up of the block's raw codes with a
   halo of :attr:`ChangeParams.halo_px` pixels taken from the neighbours' codes
   (:func:`~rsmon.kernels.change.clean_codes`, exact as the whole-array clean-up), the final
   ``change``, ``change_class`` and ``confidence`` written into the output rasters, and the index
   values of the final change pixels kept as sparse samples.

Memory: the three uint8 output rasters, the sparse samples (8 float32 + 1 int64 per change pixel),
the first :data:`PREFETCH_BLOCKS` input blocks (read while the fit runs)
and, per block in flight, its input bands (12 float32 planes) or its step-1 result (a uint8
plane and the candidate samples): about three block rows of step-1 results are alive at a time.
With ``spill`` (:class:`rsmon.io.spill.ChangeSpill`) the rasters and samples of each finished
block row go to scratch files instead, so memory no longer grows with the scene's area: only the
block rows in flight (and the fit's sample) are held.
The numba kernels, GDAL reads and decoding release the GIL, so blocks run in parallel threads; the
step-2 tasks write into the output arrays, so this is a local threaded computation by design (the
lazy :func:`~rsmon.products.change.detect_change` serves distributed schedulers).

:func:`series_change_blocks` runs a series (a reference and several later scenes) through the same
pass: step 1 computes every pair's raw codes at a block position (the reference read once for all
pairs) and samples every pair at the union of the pairs' candidates; step 2 cleans each pair's
codes and confirms the flags over the pairs at those candidates
(:mod:`rsmon.products.change_series`). On a Sentinel-2 tile with two later scenes: 14 s and
1.2 GB for the whole run, against 58 s and 2.9 GB for the lazy series computed strip by strip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import xarray as xr
from dask._task_spec import convert_legacy_graph  # the Task graph API of dask >= 2024.12 (tested)
from dask.highlevelgraph import HighLevelGraph

from rsmon.errors import InputError
from rsmon.io.jp2_blocks import keeping_tiles, release_tiles
from rsmon.kernels import change as kernel
from rsmon.products.change_classes import NODATA
from rsmon.products.change_composite import REFERENCE_OBSERVATION
from rsmon.products.change_extent import edge_mask, examined_blocks
from rsmon.products.change_fit import fit_change, prepared_pair
from rsmon.products.change_pair import base_attrs, change_variable_attrs
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_pixels import BlockPair, PairInputs, has_observation
from rsmon.products.change_series import (FIRST_OBSERVATION, series_attrs, series_order,
                                          series_sensor_ids)

__all__ = ["ChangeBlocks", "change_sample_names", "detect_change_blocks", "series_change_blocks",
           "INDEX_SAMPLE_NAMES", "SERIES_SAMPLE_NAMES"]

log = logging.getLogger(__name__)

#: Names of the sparse index samples (the patch table's index columns).
INDEX_SAMPLE_NAMES = kernel.INDEX_PLANES

#: Names of a series' samples: the index values of the first flagging pair and the position of
#: that pair's later scene (:data:`~rsmon.products.change_series.FIRST_OBSERVATION`).
SERIES_SAMPLE_NAMES = (*INDEX_SAMPLE_NAMES, FIRST_OBSERVATION)


def change_sample_names(reference: xr.Dataset, *, series: bool) -> tuple[str, ...]:
    """The samples a pass gives (:attr:`ChangeBlocks.sample_names`) with this reference scene:
    :data:`INDEX_SAMPLE_NAMES` or :data:`SERIES_SAMPLE_NAMES`, and for a composite reference
    (:func:`~rsmon.products.change_pixels.has_observation`)
    :data:`~rsmon.products.change_composite.REFERENCE_OBSERVATION`, the position of the composite's
    scene that gave each change pixel's reference values (in the ``reference_datetimes`` attribute)."""
    names = SERIES_SAMPLE_NAMES if series else INDEX_SAMPLE_NAMES
    return (*names, REFERENCE_OBSERVATION) if has_observation(reference) else names


def _pass_attrs(attrs: dict, reference: xr.Dataset) -> dict:
    """The pass's attributes, with the dates of a composite reference's scenes when it samples them."""
    if has_observation(reference):
        attrs["reference_datetimes"] = json.dumps([str(d) if d else None
                                                   for d in reference.attrs["composite_datetimes"]])
    return attrs


def _check_spill(spill, names: tuple[str, ...]) -> None:
    if spill is not None and tuple(spill.sample_names) != tuple(names):
        raise InputError(f"spill: samples {tuple(spill.sample_names)}, the pass gives {tuple(names)}")


#: Input blocks read ahead while the fit runs (about 13 MB each for a Sentinel-2 pair): the fit's
#: statistics keep one core busy for about 0.35 s on a tile, long enough to read about as many.
PREFETCH_BLOCKS = 16


@dataclass
class ChangeBlocks:
    """The result of :func:`detect_change_blocks` (or :func:`series_change_blocks`).

    Attributes
    ----------
    change, change_class, confidence : numpy.ndarray of uint8, (y, x) on the after grid
        As the variables of :func:`rsmon.products.change.detect_change`; lazily indexed arrays
        read from the spill files when the pass was streamed (``spill``).
    index_flat : numpy.ndarray of int64
        Flat pixel index (row * width + column) of every change pixel (``change == 1``), block by
        block.
    index_values : dict of str -> numpy.ndarray of float32
        ``ndvi_before, ndvi_after, ndbi_before, ndbi_after, mndwi_before, mndwi_after, bsi_before,
        bsi_after`` at those pixels (:attr:`sample_names`; a series adds
        :data:`~rsmon.products.change_series.FIRST_OBSERVATION`, a composite reference
        :data:`~rsmon.products.change_composite.REFERENCE_OBSERVATION`: :func:`change_sample_names`).
    attrs : dict
        The attributes of :func:`~rsmon.products.change.detect_change` (threshold, normalisation,
        parameters, dates, sensor, ``no_data_reason``) plus ``n_fit_px`` / ``n_fit_blocks``.
    n_valid, n_change : int
        Pixels clear on both dates; change pixels.
    examined : numpy.ndarray of bool or None
        The blocks examined (None: all), on the block grid ``block_starts`` (row and column
        starts, each ending with the scene's size).
    halo : int
        Pixels of the clean-up's halo: a restricted pass reports the examined pixels within this
        distance of a block left out as no data.

    The two sample arrays are joined from the blocks' pieces on first access (a few hundred MB
    for a tile), so a caller can start on the rasters (writing them) before it needs the samples.
    """

    change: np.ndarray
    change_class: np.ndarray
    confidence: np.ndarray
    pieces: list = field(default_factory=list, repr=False)
    attrs: dict = field(default_factory=dict)
    n_valid: int = 0
    n_change: int = 0
    piece_rows: list = field(default_factory=list, repr=False)
    spill: object = field(default=None, repr=False)
    sample_names: tuple = INDEX_SAMPLE_NAMES
    examined: np.ndarray | None = field(default=None, repr=False)
    block_starts: tuple | None = field(default=None, repr=False)
    halo: int = 0

    def samples_in_rows(self, row0: int, row1: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The samples of the blocks overlapping rows ``row0:row1``, as :attr:`sample_pieces` (a
        block's samples may lie outside those rows): what
        :func:`rsmon.products.patches.patches_from_change` takes with ``window_rows``."""
        if self.spill is not None:
            return self.spill.samples(row0, row1)
        return [(flat, dict(zip(self.sample_names, planes)))
                for (flat, planes), (r0, r1) in zip(self.pieces, self.piece_rows) if r0 < row1 and r1 > row0]

    def _joinable(self) -> list:
        if self.spill is not None and not any(len(piece[0]) for piece in self.pieces):
            # streamed: read every piece back once (this holds them all: for small scenes and tests)
            self.pieces = [[flat, [values[n] for n in self.sample_names]]
                           for flat, values in self.spill.samples(0, self.change.shape[0])]
        return self.pieces

    @cached_property
    def index_flat(self) -> np.ndarray:
        return np.concatenate([np.empty(0, np.int64)] + [piece[0] for piece in self._joinable()])

    @cached_property
    def index_values(self) -> dict[str, np.ndarray]:
        self._joinable()
        values = {}
        for m, name in enumerate(self.sample_names):  # plane by plane, each block's piece freed once copied
            values[name] = np.concatenate([np.empty(0, np.float32)] + [piece[1][m] for piece in self.pieces])
            for piece in self.pieces:
                piece[1][m] = None
        return values

    @property
    def sample_pieces(self) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The samples block by block, ``[(flat, {name: values}), ...]`` (no copy, nothing joined),
        as :func:`rsmon.products.patches.patches_from_change` also takes them. Use one of this and
        :attr:`index_values`: the join frees the pieces' planes as it copies them."""
        return [(flat, dict(zip(self.sample_names, planes))) for flat, planes in self._joinable()]

    @property
    def index_samples(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(index_flat, index_values)`` as :func:`rsmon.products.patches.patches_from_change` takes them."""
        return self.index_flat, self.index_values

    def to_dataset(self, like: xr.Dataset) -> xr.Dataset:
        """The three rasters as a NumPy-backed Dataset on ``like``'s grid (coords, CRS) with :attr:`attrs`."""
        import rioxarray  # noqa: F401  (registers the .rio accessor)

        out = xr.Dataset(coords={d: like[d] for d in ("y", "x") if d in like.coords}, attrs=dict(self.attrs))
        for name in ("change", "change_class", "confidence"):  # (a Variable keeps a lazily indexed array lazy)
            out[name] = xr.Variable(("y", "x"), getattr(self, name), attrs=change_variable_attrs(name))
        crs = like.rio.crs
        if crs is not None:
            # in place: rioxarray copies deeply otherwise (twice 362 MB for a tile)
            out.rio.write_crs(crs, inplace=True).rio.write_transform(like.rio.transform(), inplace=True)
        return out


def _step1(values, *, has_qa, k, reflectance, fit, threshold, radius, observation=False):
    """Raw codes and the candidates' index samples and rule classes of one block (its inputs are
    then freed), and with ``observation`` the reference composite's scene of each candidate."""
    block = BlockPair.of(values, has_qa, k, reflectance)
    raw = block.codes(fit, threshold)
    flat, samples, classes = block.candidates(raw, fit, radius)
    return raw, flat, samples, classes, _reference_at(values, flat, observation)


def _reference_at(values, flat: np.ndarray, observation: bool) -> np.ndarray | None:
    """The composite reference's scene (``observation_index``, the last input) at the block-local ``flat``."""
    return np.asarray(values[-1]).ravel()[flat] if observation else None


def _cleaned(raws, pieces, core, window, params) -> np.ndarray:
    """The cleaned codes of a block's core (``core`` = r0, r1, c0, c1) from the raw codes of the
    blocks around it (``raws``, with their first pixel ``pieces``) on its halo ``window``
    (row, col, height, width): exact as the whole-array clean-up. A block left out (its raw codes
    None) counts as no data."""
    (r0, r1, c0, c1), (wr0, wc0, wh, ww) = core, window
    codes = np.empty((wh, ww), np.uint8) if all(raw is not None for raw in raws) else np.full((wh, ww), NODATA,
                                                                                              np.uint8)
    for raw, (pr0, pc0) in zip(raws, pieces):
        if raw is None:
            continue
        h, w = raw.shape
        top, left = max(pr0, wr0), max(pc0, wc0)
        bottom, right = min(pr0 + h, wr0 + wh), min(pc0 + w, wc0 + ww)
        codes[top - wr0:bottom - wr0, left - wc0:right - wc0] = raw[top - pr0:bottom - pr0, left - pc0:right - pc0]
    cleaned = kernel.clean_codes(codes, params.opening_px, params.closing_px, params.mmu_px, params.mmu_connectivity)
    return np.ascontiguousarray(cleaned[r0 - wr0:r1 - wr0, c0 - wc0:c1 - wc0])


def _step2(parts, *, core, pieces, window, params, clean, width, outputs, edge=None):
    """Clean one block with its halo, write the outputs (``outputs``: the three rasters' rows of
    the block's block row), return its change pixels' index samples. ``edge``: the block's pixels
    reported as no data (next to blocks left out, whose ``parts`` are None)."""
    r0, r1, c0, c1 = core
    raw_core, flat, samples, classes, reference = parts[0]
    change = _cleaned([None if part is None else part[0] for part in parts], pieces, core, window,
                      params) if clean else raw_core
    if edge is not None:
        change = change.copy() if change is raw_core else change
        change[edge] = NODATA
    out_change, out_class, out_confidence = outputs  # the block row's rows r0:r1
    out_change[:, c0:c1] = change
    keep = np.empty(flat.shape, np.bool_)
    n_valid, n_change, n_kept = kernel.finish_codes(change, flat, classes, out_class[:, c0:c1],
                                                    out_confidence[:, c0:c1], keep)
    if n_kept != n_change:  # the candidate radius covers every pixel the clean-up can add
        raise AssertionError(f"block at ({r0}, {c0}): {n_change} change pixels but {n_kept} candidates")
    kept_flat, planes = kernel.kept_samples(flat, keep, samples, c1 - c0, r0, c0, width, n_kept)
    planes = list(planes) + ([reference[keep].astype(np.float32)] if reference is not None else [])
    return kept_flat, planes, n_valid, n_change


_NO_FLAT = np.empty(0, np.int64)


class _InMemory:
    """The default sink of :func:`_run`: whole-scene uint8 rasters; the samples stay with the results."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.arrays = tuple(np.empty(shape, np.uint8) for _ in range(3))

    def rows(self, r0: int, r1: int) -> tuple:
        return tuple(a[r0:r1] for a in self.arrays)

    def done(self, r0: int, r1: int, arrays, pieces) -> bool:
        return False

    def rasters(self) -> tuple:
        return self.arrays


def _sink(shape: tuple[int, int], spill):
    """Where the pass writes: ``spill`` (checked against the scene's ``shape``), else whole arrays."""
    if spill is None:
        return _InMemory(shape)
    if tuple(spill.shape) != tuple(shape):
        raise InputError(f"spill: shape {tuple(spill.shape)} differs from the scene's {tuple(shape)}")
    return spill


def _clean_halo(p: ChangeParams) -> tuple[bool, int]:
    """Whether the clean-up does anything, and the halo of neighbouring pixels it then needs."""
    clean = p.opening_px > 0 or p.closing_px > 0 or p.mmu_px > 1
    return clean, p.halo_px if clean else 0


def _blocks(inputs: PairInputs, sink, results: list, attrs: dict, spill, sample_names=INDEX_SAMPLE_NAMES,
            examined: np.ndarray | None = None, halo: int = 0) -> ChangeBlocks:
    """The :class:`ChangeBlocks` of a pass: the sink's rasters and the per-block results of :func:`_run`."""
    row_starts, n_cols = inputs.block_starts[0], len(inputs.chunks[1])
    return ChangeBlocks(*sink.rasters(), pieces=[[flat, samples] for flat, samples, _, _ in results], attrs=attrs,
                        n_valid=sum(int(r[2]) for r in results), n_change=sum(int(r[3]) for r in results),
                        piece_rows=[(int(row_starts[m // n_cols]), int(row_starts[m // n_cols + 1]))
                                    for m in range(len(results))], spill=spill, sample_names=sample_names,
                        examined=examined, block_starts=inputs.block_starts, halo=halo)


def _overlapping(starts: np.ndarray, lo: int, hi: int) -> list[int]:
    return [b for b in range(len(starts) - 1) if starts[b] < hi and starts[b + 1] > lo]


class _InputBlocks:
    """Computes the input blocks of one block position from the input arrays' graph.

    The graph is materialised once; each call evaluates only the tasks the block's keys depend on,
    depth first, in the calling thread, so a block's bands and masks cost their own work and a
    few function calls, not a trip through a scheduler (or :func:`dask.order.order`) per task
    (~30 tasks per block position). :meth:`pairs` gives the blocks of several pairs, computing
    the tasks they share (a series' reference, e.g. a composite) once."""

    def __init__(self, *inputs: PairInputs) -> None:
        graph = HighLevelGraph.merge(*(a.__dask_graph__() for pair in inputs for a in pair.arrays))
        self.inputs = inputs[0]
        self.dsk = convert_legacy_graph(dict(graph))

    def _value(self, key, cache: dict):
        if key not in cache:
            task = self.dsk[key]
            for dep in task.dependencies:
                self._value(dep, cache)
            cache[key] = task(cache)
        return cache[key]

    def __call__(self, i: int, j: int) -> list:
        cache: dict = {}
        return [self._value(key, cache) for key in self.inputs.block_keys(i, j)]

    def pairs(self, pairs, i: int, j: int) -> list[list]:
        """The input blocks of every pair in ``pairs`` (those given at construction) at (i, j)."""
        cache: dict = {}
        return [[self._value(key, cache) for key in inputs.block_keys(i, j)] for inputs in pairs]


def _reader(inputs: PairInputs):
    """``read(i, j)``: the input blocks of one block position (by the scenes' readers, else from the graph)."""
    return inputs.read_block if inputs.scenes else _InputBlocks(inputs)


def _run(inputs: PairInputs, halo: int, read, step1, step2, sink, num_workers: int | None, *,
         prefetched: dict | None = None, examined: np.ndarray | None = None, n_planes: int = 0) -> list:
    """Step 1 and step 2 of every block (module doc) in waves of block rows on a thread pool.

    ``read(i, j)`` gives the input of block position (i, j) and ``step1(values)`` its step-1
    result (first item: the raw codes, or a tuple of them); ``step2(parts, core=, pieces=,
    window=, outputs=)`` cleans and finishes a block from the step-1 results of the blocks
    within ``halo`` pixels (its own first) and returns ``(flat, planes, n_valid, n_change)``.
    ``inputs`` gives the block grid.

    Wave ``w`` runs step 1 of block row ``w`` and step 2 of every block row whose halo rows have
    finished step 1; two waves are in flight, so a worker never idles at a wave's end. A step-1
    result is dropped once no pending or running step 2 needs it: about four block rows of them
    are alive at a time. ``prefetched`` maps block positions to futures of their input blocks
    already being read (taken instead of reading them again).

    ``examined`` (bool per block, default all): the blocks left out are neither read nor
    computed; their outputs are no data (``change`` and ``change_class`` 255, ``confidence`` 0, as
    the kernels write for pixels clear on no date) and they have no samples (``n_planes`` empty
    planes). The step-2 task of an examined block next to them gets None for their step-1 results
    and ``edge=`` its pixels within ``halo`` of them
    (:func:`~rsmon.products.change_extent.edge_mask`), to report as no data.

    ``sink`` receives the outputs: ``sink.rows(r0, r1)`` gives the three uint8 arrays the step-2
    tasks of a block row write into (rows ``r0:r1``, full width); once every block of the row
    has passed step 2, in row order, ``sink.done(r0, r1, arrays, pieces)`` gets them with the
    row's samples ``[(flat, planes), ...]``. When ``done`` returns True the row's samples are
    dropped here (the sink keeps them), leaving zero-size placeholders in the results."""
    row_starts, col_starts = inputs.block_starts
    height, width = inputs.shape
    n_rows, n_cols = len(row_starts) - 1, len(col_starts) - 1
    prefetched = prefetched if prefetched is not None else {}
    first: dict[tuple[int, int], tuple] = {}
    results: list = [None] * (n_rows * n_cols)

    def run_step1(i: int, j: int) -> None:
        early = prefetched.pop((i, j), None)  # each position is taken by its one step-1 task
        if examined is not None and not examined[i, j]:
            first[(i, j)] = None  # left out: not read
            return
        first[(i, j)] = step1(early.result() if early is not None else read(i, j))

    halo_rows = []
    for i in range(n_rows):
        r0, r1 = int(row_starts[i]), int(row_starts[i + 1])
        halo_rows.append(_overlapping(row_starts, max(r0 - halo, 0), min(r1 + halo, height)))

    def run_step2(i: int, j: int, row_out) -> None:
        r0, r1, c0, c1 = int(row_starts[i]), int(row_starts[i + 1]), int(col_starts[j]), int(col_starts[j + 1])
        if examined is not None and not examined[i, j]:
            for out, value in zip(row_out, (NODATA, NODATA, 0)):
                out[:, c0:c1] = value
            results[i * n_cols + j] = (_NO_FLAT, [np.empty(0, np.float32) for _ in range(n_planes)], 0, 0)
            return
        wr0, wr1 = max(r0 - halo, 0), min(r1 + halo, height)
        wc0, wc1 = max(c0 - halo, 0), min(c1 + halo, width)
        neighbours = [(i, j)] + [(a, b) for a in halo_rows[i] for b in _overlapping(col_starts, wc0, wc1)
                                 if (a, b) != (i, j)]
        pieces = [(int(row_starts[a]), int(col_starts[b])) for a, b in neighbours]
        parts = [first[n] for n in neighbours]
        missing = [(int(row_starts[a]), int(row_starts[a + 1]), int(col_starts[b]), int(col_starts[b + 1]))
                   for (a, b), part in zip(neighbours, parts) if part is None]
        extra = {"edge": edge_mask((r0, r1, c0, c1), missing, halo)} if missing else {}
        results[i * n_cols + j] = step2(parts, core=(r0, r1, c0, c1), pieces=pieces,
                                        window=(wr0, wc0, wr1 - wr0, wc1 - wc0), outputs=row_out, **extra)

    row_outs: dict[int, tuple] = {}

    def finished(rows: list[int]) -> None:
        for i in rows:
            r0, r1 = int(row_starts[i]), int(row_starts[i + 1])
            row = results[i * n_cols:(i + 1) * n_cols]
            if sink.done(r0, r1, row_outs.pop(i), [(flat, planes) for flat, planes, _, _ in row]):
                results[i * n_cols:(i + 1) * n_cols] = [(_NO_FLAT, [], n_valid, n_change)
                                                        for _, _, n_valid, n_change in row]

    pending = list(range(n_rows))  # block rows whose step 2 is not submitted yet
    done = -1  # every step-1 task of block rows <= done has finished
    waves: list[tuple[list, list[int]]] = []  # in flight: (futures, block rows of their step 2)
    with ThreadPoolExecutor(num_workers or os.cpu_count() or 1) as pool:
        for wave in range(n_rows + 2):
            if len(waves) >= 2 or wave >= n_rows:  # two waves in flight: no idle worker at a wave's end
                futures, rows = waves.pop(0)
                for future in futures:
                    future.result()
                finished(rows)
                done = min(wave - 1 - len(waves), n_rows - 1)
                needed = {a for i in pending + [r for _, rows in waves for r in rows] for a in halo_rows[i]}
                for key in [key for key in first if key[0] <= done and key[0] not in needed]:
                    del first[key]
            ready = [i for i in pending if max(halo_rows[i]) <= done]
            for i in ready:
                row_outs[i] = sink.rows(int(row_starts[i]), int(row_starts[i + 1]))
            tasks = [partial(run_step1, wave, j) for j in range(n_cols)] if wave < n_rows else []
            tasks += [partial(run_step2, i, j, row_outs[i]) for i in ready for j in range(n_cols)]
            waves.append(([pool.submit(task) for task in tasks], ready))
            pending = [i for i in pending if i not in ready]
        for futures, rows in waves:
            for future in futures:
                future.result()
            finished(rows)
    if pending:
        raise AssertionError(f"block rows {pending} never cleaned")
    return results


def _examined(within, margin: float, after: xr.Dataset, inputs: PairInputs, attrs: dict, halo: int,
              extra: np.ndarray | None = None) -> np.ndarray | None:
    """The blocks to examine (:func:`~rsmon.products.change_extent.examined_blocks` of ``within``
    on the after grid, and the blocks ``extra`` marks), recorded in ``attrs`` (``examined_blocks``,
    ``n_blocks``, ``examined_fraction`` of the pixels, ``examined_margin``, ``examined_added``: the
    blocks of ``extra`` beyond those near ``within``); None (every block) without ``within``.

    The margin is at least 1.5 x (``halo`` + 1) pixels (more than the diagonal of that many): the
    pixels within the halo of a block left out are reported as no data, and no pixel of ``within``
    may be one of them."""
    if within is None:
        return None
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    transform = after.rio.transform(recalc=True)
    margin = max(float(margin), 1.5 * (halo + 1) * max(abs(transform.a), abs(transform.e), abs(transform.b),
                                                       abs(transform.d)))
    examined = examined_blocks(within, transform, inputs.block_starts, margin)
    added = 0
    if extra is not None:
        extra = np.asarray(extra, bool)
        if extra.shape != examined.shape:
            raise InputError(f"extra blocks: expected a {examined.shape} block mask, got {extra.shape}")
        added = int((extra & ~examined).sum())
        examined = examined | extra
    rows, cols = (np.diff(s) for s in inputs.block_starts)
    attrs.update(examined_blocks=int(examined.sum()), n_blocks=int(examined.size),
                 examined_fraction=float((rows[:, None] * cols[None, :])[examined].sum() / (rows.sum() * cols.sum())),
                 examined_margin=float(margin), examined_added=added)
    log.info("change: %d of %d blocks within %g of the given areas examined%s", attrs["examined_blocks"],
             attrs["n_blocks"], margin, f" ({added} added)" if added else "")
    return examined


@contextlib.contextmanager
def _tiles_kept_for_the_pass():
    """Around a fit and its pass: the JPEG 2000 code tiles (and partly read GeoTIFF tiles)
    decoded for the fit's blocks (spread over the scene, :func:`rsmon.io.jp2_blocks.keeping_tiles`)
    are kept until the pass is over, so they are not decoded again when the pass reaches them (a
    Sentinel-2 SAFE tile pair decoded ~25 % more than once before)."""
    try:
        yield
    finally:
        release_tiles()


def detect_change_blocks(before: xr.Dataset, after: xr.Dataset, params: ChangeParams | None = None, *,
                         num_workers: int | None = None, spill=None, within=None, margin: float = 0.0,
                         extra_blocks: np.ndarray | None = None) -> ChangeBlocks:
    """Change detection of an aligned pair in one pass over its blocks (module doc).

    Parameters
    ----------
    before, after : xarray.Dataset
        As for :func:`rsmon.products.change.detect_change` (lazy or in memory); the blocks are the
        after scene's dask chunks (512 x 512 for in-memory input).
    params : ChangeParams, optional
    num_workers : int, optional
        Threads of the pass (default: one per core).
    spill : rsmon.io.spill.ChangeSpill, optional
        Stream the outputs into it, block row by block row, instead of holding them (a scene of
        any size in bounded memory): the returned rasters are then lazy arrays read from it and
        the samples are read back by rows (:meth:`ChangeBlocks.samples_in_rows`). Its shape must
        be the after scene's.
    within : sequence of shapely geometries, optional
        Examine only the blocks within ``margin`` (units of the after grid's CRS) of these (in
        that CRS; e.g. the redline polygons): the others are not read and are no data in the
        rasters, as are the examined pixels within the clean-up's halo of them
        (:mod:`rsmon.products.change_extent`). The fit still uses blocks of the whole scene, so
        every pixel reported equals a whole-scene run's.
    extra_blocks : numpy.ndarray of bool, optional
        With ``within``: blocks to examine besides those near it (one flag per block, the block
        grid of :attr:`ChangeBlocks.block_starts`).

    Returns
    -------
    ChangeBlocks
        The uint8 rasters, the sparse index samples of the change pixels and the attributes; equal
        to :func:`~rsmon.products.change.detect_change` (same fit, same kernel).

    Raises
    ------
    InputError
        Missing bands, different grids or radiometries.
    """
    p, before, inputs = prepared_pair(before, after, params)
    names = change_sample_names(before, series=False)
    _check_spill(spill, names)
    sink = _sink(inputs.shape, spill)
    read = _reader(inputs)
    clean, halo = _clean_halo(p)
    extent: dict = {}
    examined = _examined(within, margin, after, inputs, extent, halo, extra_blocks)
    to_read = examined if examined is not None else np.ones([len(c) for c in inputs.chunks], bool)
    first_blocks = [(int(i), int(j)) for i, j in zip(*np.nonzero(to_read))][:PREFETCH_BLOCKS]
    with ThreadPoolExecutor(1) as early, _tiles_kept_for_the_pass():
        # the first blocks are read while the fit computes its statistics (mostly one core's work)
        with keeping_tiles():
            prefetched = {ij: early.submit(read, *ij) for ij in first_blocks}
            fit = fit_change(inputs, p)
        # the step-2 tasks write into the sink's arrays: a local threaded computation by design
        step1 = partial(_step1, has_qa=inputs.has_qa, k=inputs.k, reflectance=inputs.reflectance,
                        fit=fit.normalisation, threshold=fit.threshold, radius=p.closing_px + p.mmu_px,
                        observation=inputs.observation)
        step2 = partial(_step2, params=p, clean=clean, width=inputs.shape[1])
        results = _run(inputs, halo, read, step1, step2, sink, num_workers, prefetched=prefetched,
                       examined=examined, n_planes=len(names))
    out = _blocks(inputs, sink, results,
                  _pass_attrs(base_attrs(before, after, p, inputs.radiometry, fit), before) | extent, spill, names,
                  examined, halo)
    log.info("change: %d of %d valid pixels (%d blocks), threshold %.3f", out.n_change, out.n_valid, len(results),
             fit.threshold)
    return out


def _series_step1(values, *, pairs, fits, radius):
    """Every pair's raw codes of one block position (uint8 (n_pairs, h, w)), the series'
    candidates (the union of the pairs', local flat indices) and each pair's samples there
    (index values, rule classes, index-rule flags); the input bands are then freed."""
    blocks = [inputs.block(v) for inputs, v in zip(pairs, values)]
    raws = np.stack([block.codes(fit.normalisation, fit.threshold) for block, fit in zip(blocks, fits)])
    mask, n = kernel.candidate_mask(raws, radius)
    flat, samples = None, []
    for block, fit in zip(blocks, fits):  # (the same flat indices for every pair: the mask's)
        flat, index_values, classes, fired = block.samples_at(mask, n, fit.normalisation)
        samples.append((index_values, classes, fired))
    return raws, flat, samples, _reference_at(values[0], flat, pairs[0].observation)


def _series_step2(parts, *, core, pieces, window, outputs, params, clean, width, sensor_ids, edge=None):
    """Clean every pair's codes of one block with its halo, confirm the flags over the pairs
    (:func:`~rsmon.products.change_series.series_kernel`) where some pair flags, write the outputs and
    return the active detections' index samples (those of their first flagging pair). ``edge`` as
    for :func:`_step2`."""
    r0, r1, c0, c1 = core
    raws, flat, samples, reference = parts[0]
    n_pairs = raws.shape[0]
    if clean:
        cleaned = np.stack([_cleaned([None if part is None else part[0][m] for part in parts], pieces, core, window,
                                     params) for m in range(n_pairs)])
    else:
        cleaned = raws
    if edge is not None:
        cleaned = cleaned.copy() if cleaned is raws else cleaned
        cleaned[:, edge] = NODATA
    out_change, out_class, out_confidence = (out[:, c0:c1] for out in outputs)
    n_clear, n_flagged = kernel.series_background(cleaned, out_change, out_class, out_confidence)
    # the candidates some pair flags: elsewhere the background values are the series' values
    flags = cleaned.reshape(n_pairs, -1)[:, flat]
    hit = np.flatnonzero((flags == 1).any(axis=0))
    if hit.size != n_flagged:  # the candidates cover every flag
        raise AssertionError(f"block at ({r0}, {c0}): flagged pixels outside the candidates")
    flat, flags = flat[hit], flags[:, hit]  # (n_pairs, n flagged somewhere)
    reference = reference[hit] if reference is not None else None
    flagged = flags == 1
    rules = np.stack([fired[hit] for _, _, fired in samples]) & flagged
    classes = np.where(flags == NODATA, np.uint8(NODATA),
                       np.where(flagged, np.stack([codes[hit] for _, codes, _ in samples]), np.uint8(0)))
    values = np.stack([index_values[:, hit] for index_values, _, _ in samples])  # (n_pairs, 8, n)
    # the series' confirmation pixel by pixel (numba; rsmon.products.change_series.series_kernel in NumPy)
    change, change_class, confidence, first, picked = kernel.series_confirm(
        np.ascontiguousarray(flags), np.ascontiguousarray(rules), np.ascontiguousarray(classes, dtype=np.uint8),
        values, INDEX_SAMPLE_NAMES.index("ndvi_after"), np.asarray(sensor_ids, np.int64), int(params.confirm_window),
        int(params.confirm_min), np.float32(params.veg_ndvi_min))
    rows, cols = np.divmod(flat, c1 - c0)
    out_change[rows, cols] = change
    out_class[rows, cols] = change_class
    out_confidence[rows, cols] = confidence
    active = change == 1
    kept_flat = (r0 + rows[active]) * width + c0 + cols[active]
    planes = [np.ascontiguousarray(plane[active]) for plane in picked] + [first[active].astype(np.float32)]
    planes += [reference[active].astype(np.float32)] if reference is not None else []
    return kept_flat, planes, n_clear, int(active.sum())


class _SeriesReader:
    """``read(i, j)``: the input blocks of every pair of a series at one block position. When
    every pair's reference is the same reader (:class:`rsmon.io.optical_raster.SceneBlocks`), it
    is read once per position for all pairs; else every pair's blocks come from the inputs' graph
    (:class:`_InputBlocks`), the tasks the pairs share (the reference) computed once."""

    def __init__(self, pairs: list[PairInputs]) -> None:
        self.pairs = pairs
        self.shared = all(inputs.scenes is not None and inputs.scenes[0] is pairs[0].scenes[0] for inputs in pairs)
        self.graph = None if self.shared else _InputBlocks(*pairs)

    def __call__(self, i: int, j: int) -> list:
        if not self.shared:
            return self.graph.pairs(self.pairs, i, j)
        rows, cols = self.pairs[0].block_window(i, j)
        reference = self.pairs[0].scenes[0].read(rows, cols)
        return [inputs.values_of(reference, inputs.scenes[1].read(rows, cols)) for inputs in self.pairs]


def series_change_blocks(scenes, params: ChangeParams | None = None, *, num_workers: int | None = None,
                         spill=None, within=None, margin: float = 0.0,
                         extra_blocks: np.ndarray | None = None) -> ChangeBlocks:
    """The change, class and confidence rasters of a series and the index samples of its active
    detections, in one pass over its blocks: equal to the ``change``, ``change_class`` and
    ``confidence`` of the lazy :func:`~rsmon.products.change.detect_series` and to its index
    variables at the change pixels.

    The scenes are ordered as there (:func:`~rsmon.products.change_series.series_order`) and each
    later scene is fitted against the reference (:func:`~rsmon.products.change_fit.fit_change`).
    Then every block position is read once, the reference once for all pairs (by the scenes'
    readers when they are unmodified reader arrays, else from the inputs' graph): step 1 computes
    each pair's raw codes and, at the union of the pairs' candidates, each pair's index values,
    rule classes and rule flags; step 2 cleans each pair's codes with its halo and confirms the
    flags where some pair flags (the other pixels cannot be flagged by any pair). Memory as :func:`detect_change_blocks`, times the number of pairs
    for the step-1 results; ``spill`` streams the outputs likewise, ``within`` and ``margin``
    restrict the blocks examined likewise, ``extra_blocks`` adds blocks likewise.

    Raises
    ------
    InputError
        Fewer than two scenes, scenes :func:`detect_change_blocks` rejects, too many sensors, or
        a ``spill`` of another shape.
    """
    reference, later = series_order(scenes)
    sensor_ids = series_sensor_ids(later)
    p, _, first = prepared_pair(reference, later[0], params)
    pairs = [first] + [prepared_pair(reference, scene, p, first.chunks)[2] for scene in later[1:]]
    sink = _sink(first.shape, spill)
    names = change_sample_names(reference, series=True)
    _check_spill(spill, names)
    with _tiles_kept_for_the_pass():
        with keeping_tiles():
            fits = [fit_change(inputs, p) for inputs in pairs]
        clean, halo = _clean_halo(p)
        read = _SeriesReader(pairs)
        step1 = partial(_series_step1, pairs=pairs, fits=fits, radius=p.closing_px + p.mmu_px)
        step2 = partial(_series_step2, params=p, clean=clean, width=first.shape[1], sensor_ids=sensor_ids)
        extent: dict = {}
        examined = _examined(within, margin, later[0], first, extent, halo, extra_blocks)
        results = _run(first, halo, read, step1, step2, sink, num_workers, examined=examined, n_planes=len(names))
    out = _blocks(first, sink, results, _pass_attrs(series_attrs(reference, later, p, [fit.attrs["threshold"]
                                                                                 for fit in fits]), reference)
                  | extent, spill, names, examined, halo)
    log.info("series change: %d of %d pixels clear at least once (%d later scenes, %d blocks, shared reference "
             "reads: %s)", out.n_change, out.n_valid, len(later), len(results), read.shared)
    return out
