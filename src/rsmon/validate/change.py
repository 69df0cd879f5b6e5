"""Change-map validation against reference masks: pixel and object scores.

Masks are uint8 on one grid: 1 change, 0 no change, 255 unlabelled (reference) or no data
(prediction). A pixel is scored only where the reference is labelled (0/1) and the prediction
is not 255; :attr:`ChangeScores.n_excluded` counts the rest.

Pixel scores (positive class = change): precision = TP/(TP+FP), recall = TP/(TP+FN),
F1 = 2PR/(P+R), IoU = TP/(TP+FP+FN), overall accuracy = (TP+TN)/N and Cohen's (1960) kappa
= (p_o - p_e)/(1 - p_e) with p_e = ((TP+FP)(TP+FN) + (FN+TN)(FP+TN))/N^2.

Object scores: objects are 8-connected components of change (prediction: change pixels that are
scored, i.e. where the reference is labelled; reference: its change pixels). Rule "iou": a
predicted object matches a reference object when their IoU >= ``iou_min`` (0.5: at most one
partner each way, so matching is one-to-one); object precision = matched predicted objects /
predicted objects, object recall = matched reference objects / reference objects. Rule "overlap"
(also reported): an object matches when it shares at least one pixel with an object of the other
map.

Grids: a reference mask without a georeference (the benchmark sets' masks) must be on the
product's pixel grid: same shape, pixel for pixel. A georeferenced reference (a GeoTIFF with a CRS)
may be on any grid and CRS, and may be scored against several change rasters at once (the tiles of a
multi-tile job): :func:`changes_on_grid` resamples each product onto the reference's grid, cut to
the products' footprint, with nearest neighbour (the usual way to bring a map onto a reference's
sample units; no class is invented), and combines overlapping products as the patch merge does
(:mod:`rsmon.products.patch_merge`): change where any product says change, no change where another
one says no change, no data where none has data.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from rsmon.errors import FormatError, InputError

UNLABELLED = 255


@dataclass(frozen=True)
class ChangeScores:
    """Pixel and object scores of a change map (NaN where a ratio is undefined)."""

    tp: int
    fp: int
    fn: int
    tn: int
    n_scored: int
    n_excluded: int
    precision: float
    recall: float
    f1: float
    iou: float
    overall_accuracy: float
    kappa: float
    n_objects_predicted: int
    n_objects_reference: int
    object_precision: float
    object_recall: float
    object_precision_overlap: float
    object_recall_overlap: float
    object_iou_min: float

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _as_mask(array, name: str) -> np.ndarray:
    data = getattr(array, "values", array)
    data = np.asarray(data)
    if data.ndim != 2:
        raise InputError(f"{name}: expected a 2-D mask, got shape {data.shape}")
    bad = ~np.isin(data, (0, 1, UNLABELLED))
    if bad.any():
        raise InputError(f"{name}: values must be 0 (no change), 1 (change) or 255 (unlabelled/no data); "
                         f"found {np.unique(data[bad])[:5].tolist()}")
    return data.astype(np.uint8)


def object_match(predicted: np.ndarray, reference: np.ndarray, iou_min: float = 0.5) -> dict:
    """Object matching of two boolean change maps (8-connected components).

    Returns the number of objects of each map and of matched objects under the IoU rule
    (``iou_min``) and the any-overlap rule.
    """
    structure = np.ones((3, 3), bool)
    lab_p, n_p = ndimage.label(predicted, structure=structure)
    lab_r, n_r = ndimage.label(reference, structure=structure)
    size_p = np.bincount(lab_p.ravel(), minlength=n_p + 1)
    size_r = np.bincount(lab_r.ravel(), minlength=n_r + 1)
    both = (lab_p > 0) & (lab_r > 0)
    pairs, inter = np.unique(np.stack([lab_p[both], lab_r[both]]), axis=1, return_counts=True)
    if pairs.size:
        union = size_p[pairs[0]] + size_r[pairs[1]] - inter
        good = inter / union >= iou_min
        matched_p = np.unique(pairs[0][good]).size
        matched_r = np.unique(pairs[1][good]).size
        overlap_p, overlap_r = np.unique(pairs[0]).size, np.unique(pairs[1]).size
    else:
        matched_p = matched_r = overlap_p = overlap_r = 0
    return {"n_predicted": int(n_p), "n_reference": int(n_r), "matched_predicted": int(matched_p),
            "matched_reference": int(matched_r), "overlap_predicted": int(overlap_p),
            "overlap_reference": int(overlap_r)}


def change_scores(predicted, reference, *, valid=None, iou_min: float = 0.5) -> ChangeScores:
    """Pixel confusion matrix, precision/recall/F1/IoU/OA/kappa and object precision/recall.

    Parameters
    ----------
    predicted : array-like (2-D, uint8)
        1 change, 0 no change, 255 no data (NumPy, xarray or dask; computed here).
    reference : array-like (2-D, uint8)
        1 change, 0 no change, 255 unlabelled (:func:`read_reference_mask`), same shape.
    valid : array-like of bool, optional
        Score only where True (e.g. inside a study area), in addition to the rules above.
    iou_min : float
        IoU a predicted and a reference object need to match (default 0.5, one-to-one).

    Returns
    -------
    ChangeScores

    Raises
    ------
    InputError
        Different shapes, or values other than 0, 1, 255.
    """
    pred = _as_mask(predicted, "predicted")
    ref = _as_mask(reference, "reference")
    if pred.shape != ref.shape:
        raise InputError(f"predicted shape {pred.shape} differs from reference shape {ref.shape}")
    scored = (ref != UNLABELLED) & (pred != UNLABELLED)
    if valid is not None:
        v = np.asarray(getattr(valid, "values", valid), dtype=bool)
        if v.shape != ref.shape:
            raise InputError(f"valid shape {v.shape} differs from reference shape {ref.shape}")
        scored &= v
    p = (pred == 1) & scored
    r = (ref == 1) & scored
    tp = int((p & r).sum())
    fp = int((p & ~r).sum())
    fn = int((~p & r & scored).sum())
    n = int(scored.sum())
    tn = n - tp - fp - fn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    iou = _ratio(tp, tp + fp + fn)
    oa = _ratio(tp + tn, n)
    if n:
        pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
        kappa = _ratio(oa - pe, 1 - pe) if pe != 1 else math.nan
    else:
        kappa = math.nan
    obj = object_match(p, (ref == 1), iou_min)
    return ChangeScores(
        tp=tp, fp=fp, fn=fn, tn=tn, n_scored=n, n_excluded=int(ref.size - n),
        precision=precision, recall=recall, f1=f1, iou=iou, overall_accuracy=oa, kappa=kappa,
        n_objects_predicted=obj["n_predicted"], n_objects_reference=obj["n_reference"],
        object_precision=_ratio(obj["matched_predicted"], obj["n_predicted"]),
        object_recall=_ratio(obj["matched_reference"], obj["n_reference"]),
        object_precision_overlap=_ratio(obj["overlap_predicted"], obj["n_predicted"]),
        object_recall_overlap=_ratio(obj["overlap_reference"], obj["n_reference"]),
        object_iou_min=float(iou_min))


@dataclass(frozen=True)
class MaskGrid:
    """Where a mask's pixels are: CRS (None when the file has no georeference), transform, shape."""

    crs: object
    transform: object
    shape: tuple[int, int]

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    def same_as(self, other: "MaskGrid") -> bool:
        """The same pixels: equal CRS and shape, transforms equal to a millionth of a pixel."""
        if not (self.georeferenced and other.georeferenced) or self.shape != other.shape or self.crs != other.crs:
            return False
        tol = 1e-6 * min(abs(self.transform.a), abs(self.transform.e))
        return all(abs(a - b) <= tol for a, b in zip(self.transform[:6], other.transform[:6]))


def _grid_of(src) -> MaskGrid:
    return MaskGrid(src.crs, src.transform, (src.height, src.width))


def _first_path(path_or_pair) -> Path:
    """The file of a reference whose georeference counts: the file, a pair's change mask, a folder's change.bmp."""
    if isinstance(path_or_pair, (tuple, list)):
        return Path(path_or_pair[0])
    path = Path(path_or_pair)
    return path / "change.bmp" if path.is_dir() else path


def reference_grid(path_or_pair) -> MaskGrid:
    """The grid of a reference mask (:func:`read_reference_mask`'s input): CRS None without a georeference.

    Raises
    ------
    FormatError
        Unreadable file.
    """
    with _open_mask(_first_path(path_or_pair)) as src:
        return _grid_of(src)


def _check_change_values(data: np.ndarray, what: str) -> np.ndarray:
    """``data`` (uint8) if it holds only 0, 1 and 255 (counted, not sorted: a tile is 120 Mpixel)."""
    present = np.flatnonzero(np.bincount(data.ravel(), minlength=256))
    bad = [int(v) for v in present if v not in (0, 1, UNLABELLED)]
    if bad:
        raise InputError(f"{what}: values {bad[:5]} are not 0/1/255")
    return data


def _patch_values(data: np.ndarray, grid: MaskGrid, patches, what: str) -> np.ndarray:
    """A change raster's values with its change replaced by the patches: 1 inside a patch (cell
    centre), 0 elsewhere, 255 where the raster has no data."""
    from rasterio.features import rasterize

    if not grid.georeferenced:
        raise InputError(f"{what}: no CRS, so the patches cannot be placed on it")
    geoms = [g for g in patches.to_crs(grid.crs).geometry if g is not None and not g.is_empty]
    inside = (rasterize(((g, 1) for g in geoms), out_shape=data.shape, transform=grid.transform, fill=0,
                        dtype="uint8") if geoms else np.zeros(data.shape, np.uint8))
    return np.where(data == UNLABELLED, np.uint8(UNLABELLED), inside).astype(np.uint8)


def _change_raster(path: str | Path, what: str, read: bool, patches=None) -> tuple[MaskGrid, np.ndarray | None]:
    """The grid of a change raster, checked to be one uint8 band, and with ``read`` its values,
    checked to be 0/1/255 (with ``patches``, a GeoDataFrame: change inside them, see
    :func:`masks_to_score`); one open of the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    with _open_mask(path, f"{what} ") as src:
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise InputError(f"{what} {path}: expected a one-band uint8 change raster (1 change, 0 none, "
                             f"255 no data), got {src.count} band(s) of {src.dtypes[0]}")
        grid = _grid_of(src)
        data = src.read(1) if read else None
    if not read:
        return grid, None
    data = _check_change_values(data, f"{what} {path}")
    return grid, (_patch_values(data, grid, patches, f"{what} {path}") if patches is not None else data)


def change_raster_grid(path: str | Path, what: str = "--product") -> MaskGrid:
    """The grid of a change raster (``rsmon redline detect``'s ``change.tif``), checked to be one uint8 band.

    Raises
    ------
    InputError
        Missing file, or not one uint8 band (``what`` and the path are named).
    FormatError
        Unreadable file.
    """
    return _change_raster(path, what, read=False)[0]


def read_change_raster(path: str | Path, what: str = "--product", patches=None) -> np.ndarray:
    """A change raster's values (uint8: 1 change, 0 none, 255 no data), checked; with ``patches``
    (a GeoDataFrame) its change replaced by theirs.

    Raises
    ------
    InputError
        Missing file, not one uint8 band, or values other than 0/1/255 (the path is named).
    FormatError
        Unreadable file.
    """
    return _change_raster(path, what, read=True, patches=patches)[1]


def footprint_window(grids: list[MaskGrid], onto: MaskGrid) -> tuple[slice, slice] | None:
    """The rows and columns of ``onto`` that the grids' footprints cover (their union's bounding
    box, outward to whole pixels, cut to ``onto``); None when none of them overlaps it."""
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    r0 = c0 = math.inf
    r1 = c1 = -math.inf
    for g in grids:
        west, south, east, north = array_bounds(*g.shape, g.transform)
        bounds = transform_bounds(g.crs, onto.crs, west, south, east, north, densify_pts=21)
        w = from_bounds(*bounds, transform=onto.transform)
        r0, c0 = min(r0, w.row_off), min(c0, w.col_off)
        r1, c1 = max(r1, w.row_off + w.height), max(c1, w.col_off + w.width)
    rows = (max(0, math.floor(r0 + 1e-9)), min(onto.shape[0], math.ceil(r1 - 1e-9)))
    cols = (max(0, math.floor(c0 + 1e-9)), min(onto.shape[1], math.ceil(c1 - 1e-9)))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return None
    return slice(*rows), slice(*cols)


def changes_on_grid(products: list[str | Path], onto: MaskGrid, what: str = "--product", patches=None) -> np.ndarray:
    """Change rasters resampled (nearest) onto the grid ``onto`` and combined: 1 where any product
    says change, 0 where none does and one says no change, 255 where none has data.

    One product is read at a time (peak: two of ``onto``'s size plus one product).

    Raises
    ------
    InputError
        A product that is no 0/1/255 uint8 raster, or has no CRS (named).
    """
    from rasterio.warp import Resampling, reproject

    out = np.full(onto.shape, UNLABELLED, np.uint8)
    warped = np.empty(onto.shape, np.uint8)
    for path in products:
        grid, data = _change_raster(path, what, read=True, patches=patches)
        if not grid.georeferenced:
            raise InputError(f"{what} {path}: no CRS, so it cannot be placed on the reference's grid")
        warped.fill(UNLABELLED)
        reproject(data, warped, src_transform=grid.transform, src_crs=grid.crs, src_nodata=UNLABELLED,
                  dst_transform=onto.transform, dst_crs=onto.crs, dst_nodata=UNLABELLED,
                  resampling=Resampling.nearest)
        out[warped == 1] = 1
        out[(warped == 0) & (out == UNLABELLED)] = 0
    return out


def masks_to_score(products, reference, patches=None) -> tuple[np.ndarray, np.ndarray, str]:
    """The prediction and the reference on one grid, ready for :func:`change_scores`.

    Parameters
    ----------
    products : path or sequence of paths
        Change rasters (1 change, 0 none, 255 no data), e.g. one ``change.tif`` per tile.
    reference : path, (change, unchanged) pair or folder
        What :func:`read_reference_mask` reads.
    patches : GeoDataFrame, optional
        Score these patches instead of the rasters' change: change where a pixel's centre lies in a
        patch, no change elsewhere, within the rasters' data (e.g. ``patches.gpkg`` after the
        crop-cycle screen, which the rasters do not show).

    Returns
    -------
    predicted, reference : ndarray (uint8, one shape)
    scored_on : str
        ``"product grid"`` (one product, pixel for pixel with the reference: same shape, and either
        side without a georeference or both on the same grid) or ``"reference grid, rows a-b,
        columns c-d"`` (the products resampled onto the georeferenced reference, cut to their footprint).

    Resampling, only the window of the reference under the products' footprint is read (its
    encoding, e.g. OSCD's 1/2, is still told from all its values, read strip by strip); the
    products are read one at a time.

    Raises
    ------
    InputError
        A reference without a georeference that is not on the (single) product's grid, a product
        without a CRS when resampling is needed, products that do not overlap the reference, bad values.
    FormatError
        Unreadable files.
    """
    from affine import Affine

    paths = [Path(products)] if isinstance(products, (str, os.PathLike)) else [Path(p) for p in products]
    if not paths:
        raise InputError("--product: no change raster given")
    name = (", ".join(map(str, reference)) if isinstance(reference, (tuple, list)) else str(reference))
    ref_grid = reference_grid(reference)
    grids = [change_raster_grid(p) for p in paths]
    one = grids[0]
    if len(paths) == 1 and one.shape == ref_grid.shape and not (ref_grid.georeferenced and one.georeferenced
                                                                  and not one.same_as(ref_grid)):
        return read_change_raster(paths[0], patches=patches), read_reference_mask(reference), "product grid"
    if not ref_grid.georeferenced:
        if len(paths) > 1:
            raise InputError(f"--reference {name}: has no georeference (CRS), so it cannot be scored against "
                             f"{len(paths)} change rasters; give a georeferenced reference (e.g. a GeoTIFF with a CRS)")
        raise InputError(f"--product {paths[0]} is {one.shape[0]}x{one.shape[1]} pixels but the reference {name} is "
                         f"{ref_grid.shape[0]}x{ref_grid.shape[1]} and has no georeference (CRS): without one they must "
                         "share one grid")
    for path, grid in zip(paths, grids):
        if not grid.georeferenced:
            raise InputError(f"--product {path}: no CRS, so it cannot be placed on the reference's grid")
    window = footprint_window(grids, ref_grid)
    if window is None:
        raise InputError(f"--product {', '.join(map(str, paths))}: none overlaps the reference {name}")
    rows, cols = window
    onto = MaskGrid(ref_grid.crs, ref_grid.transform @ Affine.translation(cols.start, rows.start),
                    (rows.stop - rows.start, cols.stop - cols.start))
    pred = changes_on_grid(paths, onto, patches=patches)
    ref = read_reference_mask(reference, window=(rows, cols))
    return pred, ref, f"reference grid, rows {rows.start}-{rows.stop}, columns {cols.start}-{cols.stop}"


#: Image formats whose 0/255 masks are binary pictures (255 = change), as OSCD's ``cm.png``; a
#: GeoTIFF's 0/1/255 is rsmon's own encoding (255 = unlabelled / no data).
_PICTURE_DRIVERS = ("PNG", "BMP", "GIF", "JPEG")


def _open_mask(path: Path, prefix: str = ""):
    """``rasterio.open(path)`` without the warning for files that have no georeference (the
    benchmark masks); an unreadable file is a :class:`FormatError` naming ``prefix`` + the path."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise FormatError(f"{prefix}{path}: cannot read as a raster ({exc})") from exc


def _read_band(path: Path, window=None) -> np.ndarray:
    with _open_mask(path) as src:
        return src.read(1, window=window)


def _mask_values(path: Path) -> tuple[set[int], str]:
    """Every value of band 1 (read strip by strip: memory bounded whatever the size) and the driver."""
    from rasterio.windows import Window

    with _open_mask(path) as src:
        values: set = set()
        step = max(1, (64 << 20) // max(1, src.width * np.dtype(src.dtypes[0]).itemsize))  # ~64 MB a strip
        for row in range(0, src.height, step):
            strip = src.read(1, window=Window(0, row, src.width, min(step, src.height - row)))
            values.update(np.unique(strip).tolist())
        return values, src.driver


def read_reference_mask(path_or_pair, window=None) -> np.ndarray:
    """Read a reference change mask as uint8: 0 no change, 1 change, 255 unlabelled.

    Parameters
    ----------
    path_or_pair : path, or (change, unchanged) pair of paths, or a folder
        - a pair ``(change.bmp, unchanged.bmp)`` (Taizhou/Nanjing style; 255 = in class in each;
          pixels in neither are unlabelled), or a folder holding these two files;
        - an OSCD ``<city>-cm.tif`` (1 no change, 2 change: 1 is subtracted);
        - a 0/255 picture (PNG, BMP, GIF, JPEG; band 1), e.g. OSCD's ``cm.png``: 255 change, 0 none;
        - any other raster already holding 0/1(/255).
    window : rasterio Window or pair of slices, optional
        Read only this window (of every file). The encoding is still told from all the values of
        the file, read strip by strip, so a window holding only 1s of an OSCD map stays "no change".

    Raises
    ------
    FormatError
        Unreadable file, or values that fit none of the encodings.
    InputError
        The two masks of a pair differ in shape or overlap.
    """
    if isinstance(path_or_pair, (str, Path)) and Path(path_or_pair).is_dir():
        folder = Path(path_or_pair)
        path_or_pair = (folder / "change.bmp", folder / "unchanged.bmp")
    if isinstance(path_or_pair, (tuple, list)):
        if len(path_or_pair) != 2:
            raise InputError(f"reference pair: expected (change, unchanged) paths, got {path_or_pair!r}")
        change_path, unchanged_path = (Path(p) for p in path_or_pair)
        change, unchanged = _read_band(change_path, window), _read_band(unchanged_path, window)
        if change.shape != unchanged.shape:
            raise InputError(f"{change_path} {change.shape} and {unchanged_path} {unchanged.shape} differ in shape")
        both = (change == 255) & (unchanged == 255)
        if both.any():
            raise InputError(f"{change_path} and {unchanged_path}: {int(both.sum())} pixels are in both classes")
        out = np.full(change.shape, UNLABELLED, np.uint8)
        out[unchanged == 255] = 0
        out[change == 255] = 1
        return out
    path = Path(path_or_pair)
    if path.name.lower() == "change.bmp" and (path.parent / "unchanged.bmp").exists():
        return read_reference_mask((path, path.parent / "unchanged.bmp"), window)
    values, driver = _mask_values(path)
    data = _read_band(path, window)
    if values <= {1, 2}:  # OSCD cm.tif: 1 no change, 2 change (its README's 0/1 is wrong)
        return (data - 1).astype(np.uint8)
    if values <= {0, 255} and driver in _PICTURE_DRIVERS:  # a picture: 255 change, 0 no change
        return (data == 255).astype(np.uint8)
    if values <= {0, 1, UNLABELLED}:
        return data.astype(np.uint8)
    raise FormatError(f"{path}: values {sorted(values)[:6]} fit no known change-mask encoding "
                      "(1/2 OSCD, 0/255 picture, 0/1/255, or a change.bmp + unchanged.bmp pair)")
