"""Target grids: regular longitude/latitude grids as first-class objects (odc-geo's GeoBox habit).

A :class:`LonLatGrid` is north-up: row 0 is the northernmost row, column 0 the westernmost.
Cell edges start exactly at ``west`` and ``south``; the grid may extend a fraction of a cell past
``east``/``north`` when the bbox is not a whole number of cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from affine import Affine

from rsmon.errors import InputError

CRS_LONLAT = "EPSG:4326"

#: Named grids (bbox W,S,E,N in degrees, resolution in degrees).
NAMED_GRIDS: dict[str, tuple[tuple[float, float, float, float], float]] = {
    "china-0.05": ((73.0, 18.0, 136.0, 54.0), 0.05),
    "china-0.01": ((73.0, 18.0, 136.0, 54.0), 0.01),
    "east-china-0.05": ((100.0, 10.0, 132.0, 30.0), 0.05),
}


def parse_bbox(text: str | Sequence[float], name: str = "bbox") -> tuple[float, float, float, float]:
    """Parse and check ``W,S,E,N`` (degrees).

    Raises
    ------
    InputError
        Not four numbers, latitudes outside [-90, 90], south >= north, or west >= east
        (a bbox crossing the antimeridian is written with east > 180, e.g. ``170,-10,190,10``).
    """
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p != ""]
    else:
        parts = list(text)
    if len(parts) != 4:
        raise InputError(f"{name}: expected W,S,E,N (four numbers), got {text!r}")
    try:
        west, south, east, north = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected W,S,E,N as numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InputError(f"{name}: values must be finite, got {text!r}")
    if not (-90.0 <= south <= 90.0 and -90.0 <= north <= 90.0):
        raise InputError(f"{name}: latitudes must lie in [-90, 90], got S={south}, N={north}")
    if south >= north:
        raise InputError(f"{name}: south ({south}) must be less than north ({north}); is the bbox inverted?")
    if west >= east:
        raise InputError(
            f"{name}: west ({west}) must be less than east ({east}); is the bbox inverted? "
            "(write an antimeridian-crossing bbox with east > 180)"
        )
    if east - west > 360.0:
        raise InputError(f"{name}: spans more than 360 degrees of longitude ({west}..{east})")
    return west, south, east, north


@dataclass(frozen=True)
class LonLatGrid:
    """A regular north-up lon/lat grid.

    Attributes
    ----------
    west, south : float
        Outer edges of the first column and of the last (southernmost) row, degrees.
    res : float
        Cell size in degrees (square cells).
    width, height : int
        Number of columns and rows.
    """

    west: float
    south: float
    res: float
    width: int
    height: int
    #: For a block of a larger grid: the parent's (west, south) and this block's offsets in cells
    #: from it (columns from the west edge, rows from the south edge), so that cell edges are
    #: computed exactly as in the parent. ``None`` for a grid of its own.
    edge_origin: tuple[float, float] | None = None
    edge_offset: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if not (self.res > 0 and math.isfinite(self.res)):
            raise InputError(f"res: resolution must be a positive number of degrees, got {self.res}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"grid: width and height must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_bbox(cls, bbox: str | Sequence[float], res: float) -> "LonLatGrid":
        """Grid whose cell edges start exactly at W and S and that covers the bbox."""
        try:
            res = float(res)
        except (TypeError, ValueError):
            raise InputError(f"res: expected a number of degrees, got {res!r}") from None
        if not (res > 0 and math.isfinite(res)):
            raise InputError(f"res: resolution must be > 0 degrees, got {res}")
        west, south, east, north = parse_bbox(bbox)
        # A tolerance keeps 0.05-degree grids over whole degrees from gaining a sliver column.
        width = max(1, math.ceil((east - west) / res - 1e-6))
        height = max(1, math.ceil((north - south) / res - 1e-6))
        if height * res + south > 90.0 + 1e-9:
            raise InputError(f"res: {res} does not divide the bbox and the grid would pass the pole")
        return cls(west, south, res, width, height)

    @classmethod
    def named(cls, name: str) -> "LonLatGrid":
        """One of :data:`NAMED_GRIDS`, e.g. ``"china-0.05"``."""
        try:
            bbox, res = NAMED_GRIDS[name]
        except KeyError:
            raise InputError(f"grid: unknown grid name {name!r}; known: {sorted(NAMED_GRIDS)}") from None
        return cls.from_bbox(bbox, res)

    # --- geometry ---------------------------------------------------------------------------
    @property
    def east(self) -> float:
        return self.west + self.width * self.res

    @property
    def north(self) -> float:
        return self.south + self.height * self.res

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def crs(self) -> str:
        return CRS_LONLAT

    @property
    def transform(self) -> Affine:
        """North-up affine transform (pixel corner convention)."""
        return Affine(self.res, 0.0, self.west, 0.0, -self.res, self.north)

    @property
    def cell_area_deg2(self) -> float:
        return self.res * self.res

    def lon_edges(self) -> np.ndarray:
        return self.west + self.res * np.arange(self.width + 1, dtype=np.float64)

    def lat_edges(self) -> np.ndarray:
        """Latitude edges from north to south (row order)."""
        return self.north - self.res * np.arange(self.height + 1, dtype=np.float64)

    def lon_centers(self) -> np.ndarray:
        return self.west + self.res * (np.arange(self.width, dtype=np.float64) + 0.5)

    def lat_centers(self) -> np.ndarray:
        """Latitude centres from north to south (row order)."""
        return self.north - self.res * (np.arange(self.height, dtype=np.float64) + 0.5)

    def cell_area_m2(self) -> np.ndarray:
        """Area of each row's cells on the WGS84 authalic sphere (m2), shape (height, 1)."""
        radius = 6371007.2  # authalic radius of WGS84, m
        lat = np.radians(self.lat_edges())
        band = np.abs(np.sin(lat[:-1]) - np.sin(lat[1:]))
        return (radius**2 * np.radians(self.res) * band)[:, None]

    # --- tiling -----------------------------------------------------------------------------
    def window(self, row_off: int, col_off: int, height: int, width: int) -> "LonLatGrid":
        """The sub-grid of ``height`` x ``width`` cells starting at (row_off, col_off)."""
        if row_off < 0 or col_off < 0 or row_off + height > self.height or col_off + width > self.width:
            raise InputError(
                f"window: ({row_off},{col_off},{height},{width}) lies outside the {self.height}x{self.width} grid"
            )
        origin = self.edge_origin or (self.west, self.south)
        off_x = self.edge_offset[0] + col_off
        off_y = self.edge_offset[1] + (self.height - row_off - height)
        return LonLatGrid(origin[0] + off_x * self.res, origin[1] + off_y * self.res, self.res, width, height,
                          edge_origin=origin, edge_offset=(off_x, off_y))

    def edge_reference(self) -> tuple[float, float, int, int]:
        """``(west0, south0, col_off, row_off)``: cell edges are ``west0 + (col_off + i) * res``."""
        origin = self.edge_origin or (self.west, self.south)
        return origin[0], origin[1], self.edge_offset[0], self.edge_offset[1]

    def blocks(self, block_size: int = 2048) -> Iterator[tuple[int, int, "LonLatGrid"]]:
        """Tile the grid into blocks of at most ``block_size`` x ``block_size`` cells.

        Yields ``(row_off, col_off, subgrid)``; block edges are exact multiples of ``res``.
        """
        if block_size <= 0:
            raise InputError(f"block_size must be positive, got {block_size}")
        for r in range(0, self.height, block_size):
            for c in range(0, self.width, block_size):
                yield r, c, self.window(r, c, min(block_size, self.height - r), min(block_size, self.width - c))

    def to_dict(self) -> dict:
        return {"west": self.west, "south": self.south, "res": self.res, "width": self.width, "height": self.height}
