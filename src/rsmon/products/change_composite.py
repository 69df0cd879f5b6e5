"""Reference composites for change detection: the latest clear observation of each pixel.

A monitoring centre compares this month's scene with the most recent cloud-free view of every
pixel, not with one older scene that may be cloudy where it matters (the "latest clear pixel"
reference of operational alert systems such as GLAD-L, which compare each new observation with a
per-pixel clear baseline; ../shared/reference/redline_eqi.md section 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.io.optical_raster import SCENE_BLOCKS, BlockSource
from rsmon.kernels import change as kernel
from rsmon.products.change_indices import BANDS, check_scene, spectral_masks
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_pixels import OBSERVATION_INDEX, pack_thresholds

__all__ = ["CompositeBlocks", "REFERENCE_OBSERVATION", "latest_clear_composite"]

#: The change pass's sample of a composite reference: which of its scenes (position in the
#: ``reference_datetimes`` attribute) gave each change pixel's reference values.
REFERENCE_OBSERVATION = "reference_observation"


def _when(ds: xr.Dataset) -> np.datetime64:
    text = ds.attrs.get("datetime")
    if not text:
        return np.datetime64("NaT")
    return np.datetime64(str(text).replace("Z", "").replace("+00:00", ""))


def latest_clear_composite(scenes: Sequence[xr.Dataset], params: ChangeParams | None = None) -> xr.Dataset:
    """Per pixel, the bands of the most recent scene in which the pixel is clear (lazy).

    Parameters
    ----------
    scenes : sequence of xarray.Dataset
        Scenes on one grid (:func:`rsmon.io.optical.align_pair`), the
        :func:`rsmon.io.optical.open_optical` contract; sorted here by their ``datetime`` attribute
        (scenes without one keep their order, before dated ones).
    params : ChangeParams, optional
        Cloud/shadow/snow thresholds for :func:`~rsmon.products.change_indices.spectral_masks`.

    Returns
    -------
    xarray.Dataset
        The six bands (NaN where no scene is clear), ``clear`` (bool: some scene was clear there)
        ``water`` (the product's water flag of the scene that gave the pixel, when a scene has
        one) and ``observation_index`` (int8: which scene, in date order, gave the pixel; -1
        none); attrs of the latest scene with ``datetime`` = the latest scene's, ``composite_of``
        = the sources and ``composite_datetimes`` = the scenes' datetimes, in date order.

    Raises
    ------
    InputError
        No scene, scenes on different grids, or mixed radiometries (DN and reflectance).
    """
    scenes = list(scenes)
    if not scenes:
        raise InputError("latest_clear_composite: no scene")
    if len(scenes) == 1:
        return scenes[0]
    radiometries = {check_scene(s, f"scene {i}") for i, s in enumerate(scenes)}
    if len(radiometries) > 1:
        raise InputError(f"latest_clear_composite: scenes mix radiometries {sorted(radiometries)}")
    shape = scenes[0][BANDS[0]].shape
    for i, s in enumerate(scenes[1:], 1):
        if s[BANDS[0]].shape != shape:
            raise InputError(f"latest_clear_composite: scene {i} is {s[BANDS[0]].shape}, expected {shape} "
                             "(align the scenes onto one grid first)")
    order = sorted(range(len(scenes)), key=lambda i: (not np.isnat(_when(scenes[i])), _when(scenes[i])))
    p = params or ChangeParams()
    ordered = [scenes[i] for i in order]
    out = _composite(ordered, p)
    out[OBSERVATION_INDEX] = out[OBSERVATION_INDEX].assign_attrs(
        long_name="scene (date order) of the composite pixel")
    out.attrs["composite_of"] = [str(s.attrs.get("source", "")) for s in ordered]
    out.attrs["composite_datetimes"] = [s.attrs.get("datetime") for s in ordered]
    blocks = CompositeBlocks.of_scenes(ordered, out, p)
    if blocks is not None:
        out.encoding[SCENE_BLOCKS] = blocks
    return out


def _composite(ordered: list[xr.Dataset], p: ChangeParams) -> xr.Dataset:
    """The composite of scenes in date order (lazy or in memory, as the scenes are)."""
    latest = ordered[-1]
    bands = {b: latest[b] for b in BANDS}
    clear = spectral_masks(latest, p)["clear"]
    with_water = any("water" in scene.data_vars for scene in ordered)

    def qa_water(scene):
        return scene["water"].astype(bool) if "water" in scene.data_vars else xr.zeros_like(clear)

    water = qa_water(latest) if with_water else None
    source = xr.full_like(clear, len(ordered) - 1, dtype="int8").where(clear, -1).astype("int8")
    for k in range(len(ordered) - 2, -1, -1):  # fill from ever older scenes
        scene = ordered[k]
        fill = ~clear & spectral_masks(scene, p)["clear"]
        for b in BANDS:
            bands[b] = xr.where(fill, scene[b], bands[b])
        if with_water:
            water = xr.where(fill, qa_water(scene), water)
        source = xr.where(fill, np.int8(k), source).astype("int8")
        clear = clear | fill
    out = xr.Dataset({b: bands[b].where(clear).astype("float32").assign_attrs(latest[b].attrs) for b in BANDS},
                     coords=latest.coords, attrs=dict(latest.attrs))
    out["clear"] = clear
    if with_water:  # the product's water flag (e.g. SCL class 6) of the scene that gave the pixel
        out["water"] = water & clear
    out[OBSERVATION_INDEX] = source
    return out


@dataclass(frozen=True)
class CompositeBlocks(BlockSource):
    """Direct block access of a composite whose scenes all have direct block access (readers'
    scenes on one block grid): a block's values are the composite of the scenes' blocks, each
    read by its reader (:class:`rsmon.io.optical_raster.SceneBlocks`) and composited in one numba
    pass per pixel whose clear test is the change kernel's (:func:`rsmon.kernels.change.latest_clear`),
    equal to the lazy composite's block (tested). The change pass then reads a composite
    reference without evaluating its dask graph (~40 whole-block NumPy operations per scene)."""

    scenes: tuple[tuple[BlockSource, tuple[str, ...], dict], ...]  # (source, variables, attrs), date order
    radiometry: str
    k: np.ndarray  # the kernels' float32 thresholds (rsmon.products.change_pixels.pack_thresholds)
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    names: tuple[tuple[str, str], ...]

    @classmethod
    def of_scenes(cls, ordered: list[xr.Dataset], out: xr.Dataset, params: ChangeParams) -> CompositeBlocks | None:
        """The block access of ``out`` (the composite of ``ordered``), or None when a scene has none."""
        chunks = out[BANDS[0]].chunks
        if chunks is None:
            return None
        sources = []
        for scene in ordered:
            names = tuple(str(n) for n in scene.data_vars)
            source = BlockSource.of(scene, names, chunks)
            if source is None:
                return None
            sources.append((source, names, dict(scene.attrs)))
        names = tuple((v, out[v].data.name) for v in (*BANDS, "clear", "water", OBSERVATION_INDEX)
                      if v in out.data_vars)
        radiometry = check_scene(ordered[-1])
        return cls(tuple(sources), radiometry, pack_thresholds(params, radiometry), tuple(map(tuple, chunks)), names)

    def read(self, rows: slice, cols: slice, bands=None) -> dict[str, np.ndarray]:
        """The six bands, ``clear``, ``observation_index`` and (when the scenes have one)
        ``water`` of the composite on a block window (every band: ``bands`` is not used) (one numba pass,
        :func:`rsmon.kernels.change.latest_clear`: the tests of
        :func:`~rsmon.products.change_indices.spectral_masks` per pixel, bit-identical)."""
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        n = len(self.scenes)
        bands = np.empty((n, len(BANDS), *shape), np.float32)
        qa_clear = np.ones((n, *shape), np.bool_)
        qa_water = np.zeros((n, *shape), np.bool_)
        for s, (source, _, _) in enumerate(self.scenes):
            values = source.read(rows, cols)
            for b, name in enumerate(BANDS):
                bands[s, b] = values[name]
            if values.get("clear") is not None:  # the product's QA, as spectral_masks takes it
                qa_clear[s] = values["clear"].astype(bool, copy=False)
            if values.get("water") is not None:
                qa_water[s] = values["water"].astype(bool, copy=False)
        out = np.empty((len(BANDS), *shape), np.float32)
        clear = np.empty(shape, np.bool_)
        water = np.empty(shape, np.bool_)
        index = np.empty(shape, np.int8)
        kernel.latest_clear(bands, qa_clear, qa_water, self.radiometry == "reflectance", self.k, out, clear, water,
                            index)
        values = {**{name: out[b] for b, name in enumerate(BANDS)}, "clear": clear, OBSERVATION_INDEX: index}
        if any(name == "water" for name, _ in self.names):
            values["water"] = water
        return values
