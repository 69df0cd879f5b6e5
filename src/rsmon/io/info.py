"""``rsmon info FILE``: a human-readable summary of any file a registered reader recognises."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rsmon.io.registry import find_reader

__all__ = ["describe"]


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return str(value) if value else "unknown"


def _fmt_bbox(bbox: Any) -> str:
    if not bbox:
        return "unknown"
    west, south, east, north = (float(v) for v in bbox)
    text = f"lon {west:.3f} .. {east:.3f}, lat {south:.3f} .. {north:.3f} (W, S, E, N degrees)"
    if west > east:
        text += ", crosses the antimeridian"
    return text


def describe(path: str | Path) -> str:
    """Multi-line description of a file: reader, product, orbit, times, footprint, dims, variables.

    Reads metadata only (geolocation edges for the footprint); never pixel values.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        Lines of ``key: value`` text, then one line per variable with its units and dimensions.

    Raises
    ------
    FormatError, UnsupportedFormatError
        The file is missing, unreadable, or no reader recognises it.
    """
    spec = find_reader(path)
    meta = spec.metadata(path)
    lines = [
        f"file: {meta.get('path', Path(path).resolve())}",
        f"reader: {spec.name} ({spec.description})",
    ]
    platform = " / ".join(str(meta[k]) for k in ("platform", "instrument") if meta.get(k))
    if platform:
        lines.append(f"platform: {platform}")
    lines.append(f"product: {meta.get('product') or 'unknown'}"
                 + (f" (main variable {meta['main_variable']})" if meta.get("main_variable") else ""))
    if "mode" in meta:
        lines.append(f"mode: {meta['mode']}")
    if "orbit" in meta:
        lines.append(f"orbit: {meta['orbit']}")
    if meta.get("processor_version") or meta.get("processor"):
        lines.append(f"processor: {meta.get('processor_version') or '?'} ({meta.get('processor') or '?'})")
    if meta.get("collection") is not None:
        lines.append(f"collection: {int(meta['collection']):02d}")
    lines.append(f"time: {_fmt_time(meta.get('start_datetime'))} .. {_fmt_time(meta.get('end_datetime'))}")
    cov = (meta.get("time_coverage_start"), meta.get("time_coverage_end"))
    if all(cov):
        lines.append(f"time coverage (file attributes): {cov[0]} .. {cov[1]}")
    source = meta.get("footprint_source")
    lines.append(f"footprint bbox: {_fmt_bbox(meta.get('bbox'))}" + (f" [from {source}]" if source else ""))
    dims = meta.get("dims") or {}
    if dims:
        lines.append("dims: " + ", ".join(f"{k}={v}" for k, v in dims.items()))
    details = meta.get("variable_details") or {}
    names = meta.get("variables") or []
    if "has_pixel_data" in meta and not meta["has_pixel_data"]:
        lines.append("variables: none (the file holds metadata only, no pixel data)")
    elif names:
        lines.append("variables:")
        width = max(len(n) for n in names)
        for name in names:
            d = details.get(name, {})
            units = d.get("units") or "-"
            dim_text = f"({', '.join(d['dims'])})" if d.get("dims") else ""
            src = d.get("source_variable")
            src_text = f"  <- {src}" if src and src != name else ""
            lines.append(f"  {name:<{width}}  [{units}] {dim_text}{src_text}".rstrip())
    return "\n".join(lines)
