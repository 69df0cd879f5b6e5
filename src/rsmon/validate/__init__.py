"""Validation of products against ground truth: collocation, statistics, reports.

Table contracts shared by readers, collocation, statistics and reports (pandas DataFrames):

Station table (``rsmon.io.stations`` readers return it; one row per station x time x variable)
    ``station_id`` str, ``station_name`` str, ``lon``/``lat`` float (degrees, WGS84; NaN when the
    file has no coordinates: join a site list), ``time_start``/``time_end`` datetime64[ns, UTC]
    (the interval the value represents; equal for instantaneous values), ``variable`` str
    (``no2``, ``pm25``, ``pm10``, ``so2``, ``o3``, ``co``, ``aod_500``, ``aod_550``, ``angstrom_440_870``,
    ``xch4``, ...), ``value`` float, ``units`` str (``ug m-3``, ``ppb``, ``mg m-3``, ``1``, ``ppb``),
    ``source`` str (file path). ``df.attrs`` may hold reader notes (e.g. ``reference_state``).

Matchup table (``rsmon.validate.collocate`` returns it; one row per station x satellite time)
    ``station_id``, ``station_name``, ``lon``, ``lat``, ``time`` (datetime64[ns, UTC], the satellite
    observation time or the day), ``sat_mean``, ``sat_std``, ``sat_n``, ``ground_mean``, ``ground_std``,
    ``ground_n``, ``distance_km``, ``product`` (source file or series name).
"""
