"""The inputs of the fused change kernel (:mod:`rsmon.kernels.change`) and the calls into it.

:func:`pair_inputs` turns an aligned pair into the kernel's view of it: the twelve bands and the
optional QA masks as dask arrays on one chunk grid (the after scene's, 512 pixels for NumPy
input), the scene flags and the float32 threshold vector. :class:`BlockPair` is one block of it
in memory; its methods run the kernels on the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from rsmon.io.optical_raster import BlockSource
from rsmon.kernels import change as kernel
from rsmon.products.change_indices import BANDS
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_threshold import Normalisation

__all__ = ["BlockPair", "PairInputs", "QA_NAMES", "pack_thresholds", "pair_inputs"]

#: Optional QA layers in kernel order: (variable, date, value where the product has none).
QA_NAMES = (("clear", "before", True), ("clear", "after", True), ("water", "before", False),
            ("water", "after", False))
_DEFAULT_CHUNK = 512
#: The variable of a reference composite saying which of its scenes gave each pixel.
OBSERVATION_INDEX = "observation_index"


def pack_thresholds(params: ChangeParams, radiometry: str) -> np.ndarray:
    """The float32 threshold vector of the kernels (slots ``rsmon.kernels.change.K_*``).

    float32 because NumPy 2 compares a float32 array with a Python float in float32: the kernel
    then takes exactly the decisions of the NumPy code."""
    p = params
    k = np.zeros(kernel.N_K, np.float32)
    k[kernel.K_WATER_MNDWI_MIN] = p.water_mndwi_min
    k[kernel.K_WATER_NIR_MAX] = p.water_nir_max
    k[kernel.K_CLOUD_BLUE_MIN] = p.cloud_blue_min
    k[kernel.K_CLOUD_RED_BLUE_MAX] = p.cloud_red_blue_max
    k[kernel.K_CLOUD_HOT_OFFSET] = p.cloud_hot_offset
    k[kernel.K_CLOUD_WHITENESS_MAX] = p.cloud_whiteness_max
    k[kernel.K_CLOUD_SWIR2_MIN] = p.cloud_swir2_min
    k[kernel.K_SHADOW_NIR_MAX] = p.shadow_nir_max
    k[kernel.K_SHADOW_SWIR1_MAX] = p.shadow_swir1_max
    k[kernel.K_SNOW_NDSI_MIN] = p.snow_ndsi_min
    k[kernel.K_SNOW_NIR_MIN] = p.snow_nir_min
    k[kernel.K_SNOW_GREEN_MIN] = p.snow_green_min
    k[kernel.K_SATURATION] = p.saturation_dn_max if radiometry == "dn" else p.saturation_reflectance_max
    k[kernel.K_RULE_NDVI_DROP_NEG] = -p.rule_ndvi_drop
    k[kernel.K_RULE_NDVI_GAIN] = p.rule_ndvi_gain
    k[kernel.K_RULE_BARE_GAIN] = p.rule_bare_gain
    k[kernel.K_RULE_MNDWI_CHANGE] = p.rule_mndwi_change
    k[kernel.K_VEG_NDVI_MIN] = p.veg_ndvi_min
    k[kernel.K_BUILT_NDBI_MIN] = p.built_ndbi_min
    k[kernel.K_MINING_BSI_MIN] = p.mining_bsi_min
    k[kernel.K_MINING_BRIGHTNESS_MIN] = p.mining_brightness_min
    return k


def _chunks(after: xr.Dataset) -> tuple[tuple[int, ...], tuple[int, ...]]:
    for b in BANDS:
        if after[b].chunks:
            return tuple(after[b].chunks)
    shape = (after.sizes["y"], after.sizes["x"])
    return da.core.normalize_chunks((_DEFAULT_CHUNK, _DEFAULT_CHUNK), shape)


def _on_chunks(var: xr.DataArray, chunks, dtype) -> da.Array:
    data = var.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=chunks)
    elif data.chunks != chunks:
        data = data.rechunk(chunks)
    return data.astype(dtype) if data.dtype != dtype else data


@dataclass(frozen=True)
class PairInputs:
    """An aligned pair as the kernel sees it (lazy).

    ``arrays``: the six before bands, the six after bands (float32), then the present QA masks
    (bool) in :data:`QA_NAMES` order; ``has_qa``: which of the four are present; ``k``: the
    threshold vector; ``chunks``: the common block grid; ``scenes``: the direct block access
    (:class:`rsmon.io.optical_raster.BlockSource`: a reader's scene, or a composite of such
    scenes) of the before and after scenes when every array is still such an array on these
    chunks (:meth:`read_block` then skips the graph), else None."""

    arrays: tuple[da.Array, ...]
    has_qa: tuple[bool, ...]
    k: np.ndarray
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    radiometry: str
    scenes: tuple[BlockSource, BlockSource] | None = None
    #: the before scene is a composite whose ``observation_index`` (int8, which of its scenes gave
    #: each pixel) is the last array (:data:`rsmon.products.change_composite.REFERENCE_OBSERVATION`)
    observation: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return sum(self.chunks[0]), sum(self.chunks[1])

    @property
    def reflectance(self) -> bool:
        return self.radiometry == "reflectance"

    def block(self, values) -> BlockPair:
        """The in-memory :class:`BlockPair` of one block's computed input arrays."""
        return BlockPair.of(values, self.has_qa, self.k, self.reflectance)

    @property
    def block_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """First row of each block row, first column of each block column (with the end appended)."""
        return np.cumsum((0,) + self.chunks[0]), np.cumsum((0,) + self.chunks[1])

    def block_keys(self, i: int, j: int) -> list[tuple]:
        """Dask keys of block (i, j) of every input array."""
        return [(a.name, i, j) for a in self.arrays]

    def read_block(self, i: int, j: int) -> list[np.ndarray]:
        """Block (i, j) of every input array, in :attr:`arrays` order, read directly by the
        scenes' readers (requires :attr:`scenes`)."""
        rows, cols = self.block_window(i, j)
        return self.values_of(*(scene.read(rows, cols) for scene in self.scenes))

    def block_window(self, i: int, j: int) -> tuple[slice, slice]:
        """The rows and columns of block (i, j)."""
        row_starts, col_starts = self.block_starts
        return (slice(int(row_starts[i]), int(row_starts[i + 1])), slice(int(col_starts[j]), int(col_starts[j + 1])))

    def values_of(self, before: dict, after: dict) -> list[np.ndarray]:
        """A block's values in :attr:`arrays` order from the variables the before and after
        scenes' block sources give (:meth:`BlockSource.read`)."""
        values = [before[b] for b in BANDS] + [after[b] for b in BANDS]
        for present, (name, when, _) in zip(self.has_qa, QA_NAMES):
            if present:
                values.append((before if when == "before" else after)[name])
        if self.observation:
            values.append(before[OBSERVATION_INDEX])
        return values


def has_observation(reference: xr.Dataset) -> bool:
    """Whether ``reference`` is a composite saying which of its scenes gave each pixel
    (:func:`rsmon.products.change_composite.latest_clear_composite`: ``observation_index`` and
    the ``composite_datetimes`` attribute)."""
    return OBSERVATION_INDEX in reference.data_vars and "composite_datetimes" in reference.attrs


def pair_inputs(before: xr.Dataset, after: xr.Dataset, params: ChangeParams, radiometry: str,
                chunks=None) -> PairInputs:
    """The kernel inputs of a pair already on one grid (``before`` with the after coordinates),
    on ``chunks`` (default: the after scene's chunks, 512-pixel blocks for in-memory input)."""
    chunks = tuple(map(tuple, chunks)) if chunks is not None else _chunks(after)
    arrays = [_on_chunks(ds[b], chunks, np.float32) for ds in (before, after) for b in BANDS]
    has_qa = []
    for name, when, _ in QA_NAMES:
        ds = before if when == "before" else after
        has_qa.append(name in ds.data_vars)
        if has_qa[-1]:
            arrays.append(_on_chunks(ds[name], chunks, np.bool_))
    observation = has_observation(before)
    if observation:
        arrays.append(_on_chunks(before[OBSERVATION_INDEX], chunks, np.int8))
    scenes = []
    for ds, when in ((before, "before"), (after, "after")):
        names = list(BANDS) + [name for present, (name, date, _) in zip(has_qa, QA_NAMES) if present and date == when]
        names += [OBSERVATION_INDEX] if observation and when == "before" else []
        scenes.append(BlockSource.of(ds, names, chunks))
    return PairInputs(tuple(arrays), tuple(has_qa), pack_thresholds(params, radiometry), chunks, radiometry,
                      tuple(scenes) if all(scene is not None for scene in scenes) else None, observation)


@dataclass
class BlockPair:
    """One block of a pair in memory: before/after bands (tuples of six C-contiguous float32
    arrays) and the four QA masks (all True / all False where the product has none)."""

    before: tuple
    after: tuple
    qa: tuple
    reflectance: bool
    k: np.ndarray

    @classmethod
    def of(cls, values, has_qa, k: np.ndarray, reflectance: bool) -> BlockPair:
        """From the computed block of every :attr:`PairInputs.arrays` array, in that order."""
        bands = [_c_order(v, np.float32) for v in values[:12]]
        shape = bands[0].shape
        extra = iter(values[12:])
        qa = tuple(_c_order(next(extra), np.bool_) if present else np.full(shape, default)
                   for present, (_, _, default) in zip(has_qa, QA_NAMES))
        return cls(tuple(bands[:6]), tuple(bands[6:]), qa, bool(reflectance), k)

    @property
    def shape(self) -> tuple[int, int]:
        return self.before[0].shape

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(valid, land) bool arrays."""
        valid = np.empty(self.shape, np.bool_)
        land = np.empty(self.shape, np.bool_)
        kernel.pair_masks(self.before, self.after, self.qa, self.reflectance, self.k, valid, land)
        return valid, land

    def magnitudes(self, fit: Normalisation, where: np.ndarray) -> np.ndarray:
        """float32 magnitudes of the pixels where ``where`` (row-major)."""
        gains, offsets, scales = kernel_coefficients(fit)
        out = np.empty(self.shape, np.float32)
        kernel.magnitudes(self.before, self.after, gains, offsets, scales, out)
        return out[where]

    def codes(self, fit: Normalisation, threshold: float) -> np.ndarray:
        """Raw change codes (uint8: 1 above the threshold, 0 not, 255 not valid; ``detect_pixels``)."""
        gains, offsets, scales = kernel_coefficients(fit)
        raw = np.empty(self.shape, np.uint8)
        kernel.detect_pixels(self.before, self.after, self.qa, self.reflectance, self.k, gains, offsets, scales,
                             kernel_threshold(threshold), raw)
        return raw

    def planes(self, fit: Normalisation, threshold: float) -> np.ndarray:
        """Every per-pixel output as float32 planes (:data:`PLANES`)."""
        gains, offsets, scales = kernel_coefficients(fit)
        h, w = self.shape
        out = np.empty((len(PLANES), h, w), np.float32)
        raw = np.empty((h, w), np.uint8)
        klass = np.empty((h, w), np.uint8)
        rule = np.empty((h, w), np.bool_)
        valid = np.empty((h, w), np.bool_)
        kernel.detect_pixels_full(self.before, self.after, self.qa, self.reflectance, self.k, gains, offsets, scales,
                                  kernel_threshold(threshold), raw, klass, rule, valid, out[4], tuple(out[5:]))
        out[0], out[1], out[2], out[3] = raw, klass, rule, valid
        return out

    def candidates(self, raw: np.ndarray, fit: Normalisation, radius: int):
        """Local flat indices, (8, n) index values and rule classes of the possible change pixels
        (``candidate_samples``)."""
        gains, offsets, _ = kernel_coefficients(fit)
        return kernel.candidate_samples(raw, radius, self.before, self.after, self.reflectance, self.k, gains, offsets)

    def samples_at(self, mask: np.ndarray, n: int, fit: Normalisation):
        """Local flat indices, (8, n) index values, rule classes and index-rule flags of the ``n``
        pixels where ``mask`` (``samples_at``)."""
        gains, offsets, _ = kernel_coefficients(fit)
        return kernel.samples_at(mask, n, self.before, self.after, self.reflectance, self.k, gains, offsets)


#: Planes of :meth:`BlockPair.planes`.
PLANES = ("raw", "klass", "rule", "valid", "magnitude") + kernel.INDEX_PLANES


def _c_order(values, dtype) -> np.ndarray:
    """``values`` as a C-ordered array of ``dtype`` (the kernels vectorise only over C-ordered rows)."""
    values = np.asarray(values)
    if values.dtype != dtype:
        values = values.astype(dtype)
    if values.flags.c_contiguous:
        return values
    return kernel.c_order(values) if values.ndim == 2 else np.ascontiguousarray(values)


def kernel_coefficients(fit: Normalisation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 gains, offsets and diff scales (the NumPy code casts each to float32 too)."""
    return (np.asarray(fit.gains, np.float32), np.asarray(fit.offsets, np.float32),
            np.asarray(fit.diff_scales, np.float32))


def kernel_threshold(threshold: float) -> np.float32:
    """The magnitude threshold as the kernel compares it (float32; +inf when there is none)."""
    return np.float32(threshold) if np.isfinite(threshold) else np.float32(np.inf)
