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
"""

from __future__ import annotations

import math
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


def _read_band(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read(1)
    except RasterioIOError as exc:
        raise FormatError(f"{path}: cannot read as a raster mask ({exc})") from exc


def read_reference_mask(path_or_pair) -> np.ndarray:
    """Read a reference change mask as uint8: 0 no change, 1 change, 255 unlabelled.

    Parameters
    ----------
    path_or_pair : path, or (change, unchanged) pair of paths, or a folder
        - a pair ``(change.bmp, unchanged.bmp)`` (Taizhou/Nanjing style; 255 = in class in each;
          pixels in neither are unlabelled), or a folder holding these two files;
        - an OSCD ``<city>-cm.tif`` (1 no change, 2 change: 1 is subtracted);
        - any raster already holding 0/1(/255).

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
        change, unchanged = _read_band(change_path), _read_band(unchanged_path)
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
        return read_reference_mask((path, path.parent / "unchanged.bmp"))
    data = _read_band(path)
    values = set(np.unique(data).tolist())
    if values <= {1, 2}:  # OSCD cm.tif: 1 no change, 2 change (its README's 0/1 is wrong)
        return (data - 1).astype(np.uint8)
    if values <= {0, 1, UNLABELLED}:
        return data.astype(np.uint8)
    if values <= {0, 255} and "change" in path.stem.lower():
        # a single change.bmp / cm.png-like mask: 255 change, 0 no change
        return (data == 255).astype(np.uint8)
    raise FormatError(f"{path}: values {sorted(values)[:6]} fit no known change-mask encoding "
                      "(1/2 OSCD, 0/1/255, or a change.bmp + unchanged.bmp pair)")
