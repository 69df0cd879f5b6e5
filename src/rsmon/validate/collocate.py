"""Collocation of satellite products with ground stations: L2 swaths, L3 grids and area-average series.

All three functions take a Station table and return a Matchup table (contracts in
:mod:`rsmon.validate`), one row per station and satellite time, with the parameters in ``df.attrs``.

Conventions shared by the three modes
-------------------------------------
* **Distances** are great-circle (haversine) on a sphere of the WGS84 mean radius
  :data:`EARTH_MEAN_RADIUS_KM` = 6371.0088 km.
* **Stations.** The Station table is filtered to one ``variable``; all its rows must share one unit
  (else :class:`~rsmon.errors.InputError` naming the units found). Stations without ``lon``/``lat``
  are skipped with a warning and listed in ``attrs["stations_without_coordinates"]``; if none has
  them (or the column is absent) that is an InputError naming the column. NaN values are ignored.
* **Ground values in a time window** ``[a, b]``: a station value representing the interval
  ``[time_start, time_end)`` is taken when the two overlap by more than an instant
  (``time_start < b`` and ``time_end > a``); an instantaneous value (``time_start == time_end``)
  is taken when ``a <= time <= b``. So an hour-ending value labelled 14:00 ([13:00, 14:00)) is in the
  window 13:40-14:10 and in 13:00-14:00, but not in 14:00-15:00.
* **Hour-ending values** (CNEMC convention, ``shared/reference/atmos.md`` section 5.2): the value
  labelled ``h`` is the mean of ``[h-1, h)`` Beijing time. The NO2 rules (``"bracket_hours"``, and
  ``"window"``/``"overpass_window"`` with hourly stations) therefore pick, for a 13:30-14:30 overpass
  window, the values labelled 14:00 and 15:00, as atmos.md 5.2 prescribes.
* **Nominal overpass** of a sun-synchronous sensor at a station: ``overpass_local_solar`` local solar
  time, where local solar time = UTC + lon / 15 h (:func:`nominal_overpass_utc`). TROPOMI crosses at
  ~13:30 (Veefkind et al. 2012), OMI at ~13:45; at 116.4E 13:30 LST is 05:44 UTC (13:44 Beijing time),
  at 87.6E 07:40 UTC (15:40 Beijing time): atmos.md 5.2.
* **Statistics.** ``*_mean`` is the plain mean, ``*_std`` the sample standard deviation (ddof = 1;
  NaN when ``*_n`` < 2), ``*_n`` the number of values. Rows with ``sat_n`` below the minimum number of
  pixels/cells or ``ground_n`` below ``min_ground`` are dropped; when nothing is left a
  :class:`~rsmon.errors.NoDataError` names the product and the stations.

References
----------
``shared/reference/atmos.md``: section 4.2 (AOD: ground within +-30 min, satellite within 25 km,
mean of each set), section 5.1 (the TROPOMI pixel *containing* the station, Verhoelst et al., AMT 14,
481, 2021), section 5.2 (CNEMC: ``qa_value > 0.75``, containing pixel or a <= 5-10 km average,
per-pixel overpass time, hour-ending values bracketing the overpass).

The code lives in :mod:`rsmon.validate.geo` (distances, point-in-polygon, overpass times),
:mod:`rsmon.validate.collocate_swath`, :mod:`rsmon.validate.collocate_grid` (grids and series) and
``rsmon.validate._matchups`` (Station and Matchup tables); this module is their public face.
"""

from __future__ import annotations

from rsmon.validate._matchups import MATCHUP_COLUMNS, STATION_COLUMNS  # noqa: F401  (STATION_COLUMNS: re-export)
from rsmon.validate._matchups import _check_count, _prepare_stations  # noqa: F401  (re-export: validate.hourly)
from rsmon.validate.collocate_grid import collocate_grid, collocate_series
from rsmon.validate.collocate_swath import collocate_swath
from rsmon.validate.geo import EDGE_RULE  # noqa: F401  (re-export: validate.hourly)
from rsmon.validate.geo import (
    EARTH_MEAN_RADIUS_KM,
    box_distance_km,
    haversine_km,
    nominal_overpass_utc,
    point_in_quads,
)

__all__ = [
    "EARTH_MEAN_RADIUS_KM",
    "MATCHUP_COLUMNS",
    "box_distance_km",
    "collocate_grid",
    "collocate_series",
    "collocate_swath",
    "haversine_km",
    "nominal_overpass_utc",
    "point_in_quads",
]
