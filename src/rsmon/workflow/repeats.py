"""One observation is used once: repeats of an acquisition left out of a job's inputs.

A centre's inbox often holds a product twice:

- the ``.SAFE.zip`` as downloaded and the folder unpacked beside it, or a product and its
  reprocessing (:func:`drop_repeated_scenes`, by tile, sensing start, platform, product and
  footprint);
- Sentinel-5P near-real-time granules (``NRTI``, about five minutes of an orbit each, delivered
  within three hours for quick looks) and, days later, the offline orbit (``OFFL``) that holds the
  same measurements again, or a reprocessing (``RPRO``) of it. Their names give different start
  times, so the acquisition key above does not match them; :func:`drop_covered_granules` leaves out
  a granule whose whole time span newer processings of the same product cover, and
  :func:`remeasured_scanlines` finds the scanlines of a granule only partly covered (one running
  past the end of the offline orbit there) that a newer processing holds again, for the L3 job and
  the validation to leave out.

Counted twice, one clear observation would confirm itself (confidence high) in a redline series,
and an orbit part would weigh double in an L3 mean. Of the copies, the newest processing by
:func:`processing_rank` is used.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import numpy as np

from rsmon.io.optical_landsat import parse_landsat_id
from rsmon.io.optical_s2 import s2_processing_of_name
from rsmon.io.s5p_layout import S5PFileName, parse_s5p_filename
from rsmon.workflow.redline_tiles import tile_key

log = logging.getLogger(__name__)

__all__ = ["drop_covered_granules", "drop_repeated_scenes", "processing_rank", "remeasured_scanlines",
           "without_remeasured"]

#: Sentinel-5P processing streams, newest processing last (reprocessing over offline over near real
#: time; Sentinel-5P Level 2 Product User Manual, "File name convention", processing modes).
_S5P_STREAMS = ("NRTI", "OFFL", "RPRO")

#: Slack on the time limits in Sentinel-5P names (whole seconds; an NRTI granule's limits and the
#: offline orbit's are cut by different processors).
_NAME_SLACK = timedelta(seconds=1)


def _names(item) -> list[str]:
    return [Path(getattr(item, "path", item)).name, str(getattr(item, "item_id", "")),
            *(Path(f).name for f in getattr(item, "files", ()))]


def _s5p_name(item) -> S5PFileName | None:
    for name in _names(item):
        s5p = parse_s5p_filename(name)
        if s5p is not None:
            return s5p
    return None


def _stream_rank(mode: str) -> int:
    """Rank of a Sentinel-5P processing stream (:data:`_S5P_STREAMS`; -1 for an unknown one)."""
    return _S5P_STREAMS.index(mode) if mode in _S5P_STREAMS else -1


def processing_rank(item) -> tuple:
    """How recent a copy's processing is, from its names (larger is newer): Sentinel-5P stream
    (reprocessing, offline, near real time), processor version and production time; Sentinel-2
    processing baseline (``N0511``) and generation time; Landsat processing date. () when the names
    say nothing (a flat folder of band files): such a copy is never preferred over a named one."""
    for name in _names(item):
        s5p = parse_s5p_filename(name)
        if s5p is not None:
            return (_stream_rank(s5p.mode), s5p.processor, s5p.production.strftime("%Y%m%dT%H%M%S"))
        s2 = s2_processing_of_name(name)
        if s2 is not None:
            return s2
        landsat = parse_landsat_id(name)
        if landsat is not None and landsat.processed:
            return (landsat.processed,)
    return ()


#: Two scanlines of one instrument are one measurement when their times differ by less than this
#: (seconds): the processings of one orbit part share the level-1b times to the millisecond, and
#: TROPOMI's scanlines are 0.84 s apart (1.08 s before 2019-08-06; Sentinel-5P Level 2 Product
#: User Manual, "time_utc" and the along-track sampling).
SAME_SCANLINE_S = 0.1
_NAT = np.iinfo(np.int64).min  # a scanline without a time (NaT): never the same as another


def _s5p_order(path: str, ds) -> tuple | None:
    """(platform, product, level) and the sort key of a granule's processing (newest last: the
    stream, processor and production time of its name, else its ``mode``/``processor``
    attributes; then the file name, so two equal copies are still ordered); None if it says
    nothing of its product."""
    attrs = getattr(ds, "attrs", {})
    s5p = parse_s5p_filename(Path(path).name)
    product = s5p.product if s5p is not None else attrs.get("product")
    if not product:
        return None
    rank = processing_rank(path)
    if not rank:
        rank = (_stream_rank(str(attrs.get("mode", ""))), str(attrs.get("processor", "")), "")
    level = s5p.level if s5p is not None else "L2"
    return (str(attrs.get("platform", "Sentinel-5P")), str(product).strip("_"), level), (rank, Path(path).name)


def remeasured_scanlines(datasets) -> dict[str, np.ndarray]:
    """Per Sentinel-5P granule (``{path: dataset}`` as :func:`rsmon.io.s5p.open_s5p` gives them,
    with ``time_utc`` per scanline), which of its scanlines a newer processing of the same product
    among ``datasets`` holds again (a scanline of the other granule within :data:`SAME_SCANLINE_S`
    of it): a near-real-time granule running past the end of an offline orbit (the part inside the
    orbit), an offline orbit part also in a reprocessing. Only granules with such scanlines are
    listed (bool per scanline, True = measured again: leave it out). Of two copies of one
    processing, the one whose file name sorts last keeps the shared scanlines."""
    granules: dict[tuple, list[tuple[tuple, str, np.ndarray, np.ndarray]]] = {}
    for path, ds in datasets.items():
        order = _s5p_order(path, ds)
        if order is None or "time_utc" not in getattr(ds, "variables", {}):
            continue
        stamps = np.asarray(ds["time_utc"].values).astype("datetime64[ms]")
        times = np.where(np.isnat(stamps), _NAT, stamps.astype(np.int64))
        known = np.sort(times[times != _NAT])  # what an older granule's scanlines are matched against
        granules.setdefault(order[0], []).append((order[1], path, times, known))
    out: dict[str, np.ndarray] = {}
    tolerance = int(SAME_SCANLINE_S * 1000)
    for group in granules.values():
        group.sort(key=lambda g: g[0])
        for k, (_, path, times, _) in enumerate(group):
            again = np.zeros(times.shape, bool)
            timed = times != _NAT
            for *_, newer in group[k + 1:]:
                if not newer.size or not timed.any():
                    continue
                i = np.searchsorted(newer, times)  # the newer scanlines on both sides of each time
                below, above = newer[np.clip(i - 1, 0, newer.size - 1)], newer[np.clip(i, 0, newer.size - 1)]
                near = np.minimum(np.abs(times[timed] - below[timed]), np.abs(times[timed] - above[timed]))
                again[timed] |= near <= tolerance
            if again.any():
                out[path] = again
    return out


def without_remeasured(ds, again: np.ndarray | None, role: str = "granule"):
    """``ds`` without the scanlines ``again`` marks (:func:`remeasured_scanlines`), logged; None
    when none is left; ``ds`` itself when ``again`` is None or marks none."""
    if again is None or not again.any():
        return ds
    source = ds.attrs.get("source_path", "")
    if again.all():
        log.warning("%s %s: all %d scanlines are held by a newer processing; left out", role, source, again.size)
        return None
    log.warning("%s %s: %d of %d scanlines are held by a newer processing; those are left out", role, source,
                int(again.sum()), again.size)
    return ds.isel(scanline=np.flatnonzero(~again))


def _acquisition(item) -> tuple:
    """What makes two catalogued scenes one observation: tile, sensing start, platform, product and
    footprint (rounded to ~100 m, so two scenes without a tile in their names stay apart)."""
    bbox = getattr(item, "bbox", None)
    return (tile_key(item), getattr(item, "start", None), getattr(item, "platform", None),
            getattr(item, "product", None), None if bbox is None else tuple(round(v, 3) for v in bbox))


def drop_repeated_scenes(items: Sequence, role: str) -> list:
    """``items`` (catalogued inputs) without repeats of one observation (logged), in their order.

    First the copies of one acquisition (same tile, sensing start, platform, product and
    footprint): of them the newest processing by :func:`processing_rank` is used, the first in
    order on a tie (a zip and its unpacked folder are the same data). Then
    :func:`drop_covered_granules`. Items without a time are all kept."""
    kept: list = []
    where: dict[tuple, int] = {}
    for item in items:
        key = _acquisition(item)
        if key[1] is None or key not in where:
            if key[1] is not None:
                where[key] = len(kept)
            kept.append(item)
            continue
        first = kept[where[key]]
        if processing_rank(item) > processing_rank(first):
            kept[where[key]], item, first = item, first, item
        log.warning("%s scene %s is the acquisition of %s (tile, time, platform, footprint); %s is used",
                    role, getattr(item, "path", item), getattr(first, "path", first), getattr(first, "path", first))
    return drop_covered_granules(kept, role)


def drop_covered_granules(items: Sequence, role: str) -> list:
    """``items`` without the Sentinel-5P granules that newer processings among them cover (logged).

    A granule is left out when granules of the same product and level with a higher
    :func:`processing_rank` cover its whole time span between them (the start and end in the
    names, to a second): near-real-time granules once the offline orbit has arrived (also across
    the orbit's end when the next offline orbit is there), an offline orbit once its reprocessing
    has. A granule only partly covered is kept: left out, the part no newer copy holds would be
    lost; the readers of its pixels leave out the overlap (:func:`remeasured_scanlines`). Other
    items are kept, in their order."""
    parsed = [(item, _s5p_name(item)) for item in items]
    by_product: dict[tuple[str, str], list[tuple[tuple, S5PFileName, object]]] = {}
    for item, s5p in parsed:
        if s5p is not None:
            by_product.setdefault((s5p.product, s5p.level), []).append((processing_rank(item), s5p, item))
    kept = []
    for item, s5p in parsed:
        covering = [] if s5p is None else _covering(s5p, processing_rank(item), by_product[s5p.product, s5p.level])
        if not covering:
            kept.append(item)
            continue
        log.warning("%s granule %s is covered by newer processing (%s); left out", role,
                    getattr(item, "path", item), ", ".join(Path(getattr(c, "path", c)).name for c in covering))
    return kept


def _covering(granule: S5PFileName, rank: tuple, others: list[tuple[tuple, S5PFileName, object]]) -> list:
    """The items of a higher rank whose time spans together cover ``granule``'s; [] if they do not."""
    newer = sorted(((s.start, s.end, item) for r, s, item in others
                    if r > rank and s.end > granule.start and s.start < granule.end), key=lambda t: t[:2])
    reached, used = granule.start, []
    for start, end, item in newer:
        if start - _NAME_SLACK > reached:
            break  # a gap before this one
        if end > reached:
            reached, used = end, used + [item]
        if reached + _NAME_SLACK >= granule.end:
            return used
    return []
