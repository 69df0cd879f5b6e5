"""File layout of the simulated Sentinel-5P L2 NO2 files (:mod:`rsmon.sim.s5p`): what is written where.

The variable table (group, dtype, dimensions and attributes of every variable, as in the real
products), the processing-quality flag table, the coordinate variables, the global and
``METADATA`` attributes, chunking and bit-grooming, the product file name, and :func:`_write`, which
lays the file out and fills it block by block with the fields of a scene function (the physics is
in :mod:`rsmon.sim.s5p`).

References
----------
* Local real files (``shared/data``, also in ``seeds/s5p``):
  ``S5P_OFFL_L2__NO2____20200303T013547_..._12367_01_010302_...nc`` (global attributes,
  ``METADATA/GRANULE_DESCRIPTION``, PRODUCT dimension sizes);
  ``S5P_OFFL_L2__CH4____20190311T101655_..._07293_01_010202_...SUB.nc4`` (variable dtypes, fill values,
  attributes, corner order, ``delta_time``/``time_utc`` conventions).
* HARP ``S5P_L2_NO2`` ingestion mapping (stcorp/harp ``doc/html/ingestions/S5P_L2_NO2.html``) for the
  variables HARP reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from rsmon.sim.s5p_orbit import N_GROUND_PIXELS, UTC, _datetime, _Plan, _seconds, _to_utc

#: Fields of absolute scanlines [k0, k1) -> {variable name: array}, plus ``"_t_ms"`` (scanline times,
#: ms since 2010) and ``"_valid"`` (pixels with a retrieval); see ``rsmon.sim.s5p._block``.
SceneFields = Callable[[int, int], dict[str, np.ndarray]]


# --------------------------------------------------------------------------------------------------
# Constants (each with its source)
# --------------------------------------------------------------------------------------------------

#: TM5 layers (real NO2 file ``layer`` dimension).
N_LAYERS = 34

#: netCDF fill values as in the real files (``_FillValue`` attributes of the CH4 file).
FILL_FLOAT = np.float32(9.96921e36)
FILL_INT32 = np.int32(-2147483647)
FILL_UINT8 = np.uint8(255)
FILL_UINT32 = np.uint32(4294967295)
#: Avogadro / 1e4: mol m-2 -> molecules cm-2 (the attribute real files carry).
MOL_M2_TO_MOLEC_CM2 = np.float32(6.02214e19)

_MODES = {"OFFL": "Offline", "NRTI": "Near-realtime", "RPRO": "Reprocessing"}
_BLOCK = 256  # scanlines written per block (also the chunk length of 2-D fields)


# --------------------------------------------------------------------------------------------------
# TM5 vertical grid (the layer dimension)
# --------------------------------------------------------------------------------------------------


def _tm5_levels() -> tuple[np.ndarray, np.ndarray]:
    """Hybrid coefficients a (Pa) and b (1) of 35 level interfaces, surface first, top (0 Pa) last.

    A synthetic 34-layer hybrid sigma-pressure grid shaped like TM5's (thin layers near the surface,
    pure pressure levels above ~100 hPa); not the operational TM5 coefficients.
    """
    z_km = np.array([0.0, 0.1, 0.25, 0.45, 0.7, 1.0, 1.35, 1.75, 2.2, 2.7, 3.25, 3.85, 4.5, 5.2, 5.95,
                     6.75, 7.6, 8.5, 9.45, 10.45, 11.5, 12.6, 13.8, 15.1, 16.5, 18.1, 19.9, 22.0, 24.5,
                     27.5, 31.0, 35.5, 41.0, 48.5])
    p_ref = np.append(101325.0 * np.exp(-z_km / 7.0), 0.0)
    p_top_sigma = 10000.0
    b = np.clip((p_ref - p_top_sigma) / (101325.0 - p_top_sigma), 0.0, 1.0) ** 1.5
    a = p_ref - b * 101325.0
    return a, b


_TM5_A, _TM5_B = _tm5_levels()
#: Total-column averaging kernel per layer (rises from ~0.4 near the surface to ~1.2 aloft, the
#: typical shape for NO2 in clear skies; Eskes & Boersma, ACP 3, 1285, 2003).
_LAYER_MID_P = 0.5 * (_TM5_A[:-1] + _TM5_A[1:]) + 0.5 * (_TM5_B[:-1] + _TM5_B[1:]) * 101325.0
_AK_PROFILE = (0.35 + 0.85 * (1.0 - _LAYER_MID_P / 101325.0) ** 0.6).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# File layout: variables and attributes
# --------------------------------------------------------------------------------------------------

_D2 = ("time", "scanline", "ground_pixel")
_DS = ("time", "scanline")
_DC = ("time", "scanline", "ground_pixel", "corner")
_DL = ("time", "scanline", "ground_pixel", "layer")

_P = "PRODUCT"
_GEO = "PRODUCT/SUPPORT_DATA/GEOLOCATIONS"
_DET = "PRODUCT/SUPPORT_DATA/DETAILED_RESULTS"
_INP = "PRODUCT/SUPPORT_DATA/INPUT_DATA"
_O22 = "PRODUCT/SUPPORT_DATA/DETAILED_RESULTS/O22CLD"
_COORDS = "longitude latitude"
_GCOORDS = "/PRODUCT/longitude /PRODUCT/latitude"

_ERRORS = (
    "success radiance_missing irradiance_missing input_spectrum_missing reflectance_range_error "
    "ler_range_error snr_range_error sza_range_error vza_range_error lut_range_error ozone_range_error "
    "wavelength_offset_error initialization_error memory_error assertion_error io_error numerical_error "
    "lut_error ISRF_error convergence_error cloud_filter_convergence_error max_iteration_convergence_error "
    "aot_lower_boundary_convergence_error other_boundary_convergence_error geolocation_error "
    "ch4_noscat_zero_error h2o_noscat_zero_error max_optical_thickness_error aerosol_boundary_error "
    "boundary_hit_error chi2_error svd_error dfs_error radiative_transfer_error optimal_estimation_error "
    "profile_error cloud_error model_error number_of_input_data_points_too_low_error "
    "cloud_pressure_spread_too_low_error cloud_too_low_level_error generic_range_error generic_exception "
    "input_spectrum_alignment_error abort_error wrong_input_type_error wavelength_calibration_error "
    "coregistration_error slant_column_density_error airmass_factor_error vertical_column_density_error "
    "signal_to_noise_ratio_error configuration_error key_error saturation_error"
).split()
_FILTERS = (
    "solar_eclipse_filter cloud_filter altitude_consistency_filter altitude_roughness_filter "
    "sun_glint_filter mixed_surface_type_filter snow_ice_filter aai_filter cloud_fraction_fresco_filter "
    "aai_scene_albedo_filter small_pixel_radiance_std_filter cloud_fraction_viirs_filter "
    "cirrus_reflectance_viirs_filter cf_viirs_swir_ifov_filter cf_viirs_swir_ofova_filter "
    "cf_viirs_swir_ofovb_filter cf_viirs_swir_ofovc_filter cf_viirs_nir_ifov_filter "
    "cf_viirs_nir_ofova_filter cf_viirs_nir_ofovb_filter cf_viirs_nir_ofovc_filter "
    "refl_cirrus_viirs_swir_filter refl_cirrus_viirs_nir_filter diff_refl_cirrus_viirs_filter "
    "ch4_noscat_ratio_filter ch4_noscat_ratio_std_filter h2o_noscat_ratio_filter "
    "h2o_noscat_ratio_std_filter diff_psurf_fresco_ecmwf_filter psurf_fresco_stdv_filter ocean_filter "
    "time_range_filter pixel_or_scanline_index_filter geographic_region_filter"
).split()
_WARNINGS = (
    "input_spectrum_warning wavelength_calibration_warning extrapolation_warning sun_glint_warning "
    "south_atlantic_anomaly_warning sun_glint_correction snow_ice_warning cloud_warning AAI_warning "
    "pixel_level_input_data_missing data_range_warning low_cloud_fraction_warning "
    "altitude_consistency_warning signal_to_noise_ratio_warning deconvolution_warning "
    "so2_volcanic_origin_likely_warning so2_volcanic_origin_certain_warning interpolation_warning "
    "saturation_warning"
).split()
#: ``processing_quality_flags`` codes used here (real flag table, CH4 file).
FLAG_SZA_RANGE_ERROR = _ERRORS.index("sza_range_error")
FLAG_SCD_ERROR = _ERRORS.index("slant_column_density_error")
FLAG_CLOUD_WARNING = 256 << _WARNINGS.index("cloud_warning")


def _quality_flag_attrs() -> dict:
    values = list(range(len(_ERRORS))) + [64 + i for i in range(len(_FILTERS))]
    bits = [256 << i for i in range(len(_WARNINGS))]
    return {
        "long_name": "Processing quality flags",
        "comment": "Flags indicating conditions that affect quality of the retrieval.",
        "flag_meanings": " ".join(_ERRORS + _FILTERS + _WARNINGS),
        "flag_masks": np.array([255] * len(values) + bits, dtype=np.uint32),
        "flag_values": np.array(values + bits, dtype=np.uint32),
        "coordinates": _GCOORDS,
    }


def _f(long_name: str, units: str, coords: str = _GCOORDS, **extra) -> dict:
    attrs = {"units": units, "long_name": long_name, "coordinates": coords}
    attrs.update(extra)
    return attrs


def _col(long_name: str, standard_name: str, coords: str = _GCOORDS, **extra) -> dict:
    return _f(long_name, "mol m-2", coords, standard_name=standard_name,
              multiplication_factor_to_convert_to_molecules_percm2=MOL_M2_TO_MOLEC_CM2, **extra)


_NO2 = "nitrogendioxide"
_ANGLE = dict(valid_min=np.float32(0.0), valid_max=np.float32(180.0))
_AZIMUTH = dict(valid_min=np.float32(-180.0), valid_max=np.float32(180.0))

#: name -> (group, dtype, dims, attributes). ``_FillValue`` is added from the dtype.
_VARIABLES: dict[str, tuple[str, str, tuple[str, ...], dict]] = {
    # PRODUCT
    "latitude": (_P, "f4", _D2, dict(long_name="pixel center latitude", units="degrees_north",
                                     standard_name="latitude", valid_min=np.float32(-90.0),
                                     valid_max=np.float32(90.0), bounds=f"/{_GEO}/latitude_bounds")),
    "longitude": (_P, "f4", _D2, dict(long_name="pixel center longitude", units="degrees_east",
                                      standard_name="longitude", valid_min=np.float32(-180.0),
                                      valid_max=np.float32(180.0), bounds=f"/{_GEO}/longitude_bounds")),
    "delta_time": (_P, "i4", _DS, dict(long_name="offset from reference start time of measurement",
                                       units="milliseconds")),
    "time_utc": (_P, "str", _DS, dict(long_name="Time of observation as ISO 8601 date-time string")),
    "qa_value": (_P, "u1", _D2, dict(
        scale_factor=np.float32(0.01), units="1", add_offset=np.float32(0.0), valid_min=np.uint8(0),
        valid_max=np.uint8(100), long_name="data quality value",
        comment="A continuous quality descriptor, varying between 0 (no data) and 1 (full quality data). "
                "Recommend to ignore data with qa_value < 0.75",
        coordinates=_COORDS)),
    f"{_NO2}_tropospheric_column": (_P, "f4", _D2, _col(
        "Tropospheric vertical column of nitrogen dioxide", "troposphere_mole_content_of_nitrogen_dioxide",
        _COORDS, ancillary_variables=f"{_NO2}_tropospheric_column_precision air_mass_factor_troposphere "
                                     "air_mass_factor_total averaging_kernel")),
    f"{_NO2}_tropospheric_column_precision": (_P, "f4", _D2, _col(
        "Precision of the tropospheric vertical column of nitrogen dioxide",
        "troposphere_mole_content_of_nitrogen_dioxide standard_error", _COORDS)),
    f"{_NO2}_tropospheric_column_precision_kernel": (_P, "f4", _D2, _col(
        "Precision of the tropospheric vertical column of nitrogen dioxide when applying the averaging kernel",
        "troposphere_mole_content_of_nitrogen_dioxide standard_error", _COORDS)),
    "averaging_kernel": (_P, "f4", _DL, _f("Averaging kernel", "1", _COORDS)),
    "air_mass_factor_troposphere": (_P, "f4", _D2, _f("Tropospheric air mass factor", "1", _COORDS)),
    "air_mass_factor_total": (_P, "f4", _D2, _f("Total air mass factor", "1", _COORDS)),
    "tm5_tropopause_layer_index": (_P, "i4", _D2, _f(
        "TM5 layer index of the highest layer in the tropopause", "1", _COORDS)),
    "tm5_constant_a": (_P, "f4", ("layer", "vertices"), dict(
        long_name="TM5 hybrid A coefficient at upper and lower interface levels", units="Pa")),
    "tm5_constant_b": (_P, "f4", ("layer", "vertices"), dict(
        long_name="TM5 hybrid B coefficient at upper and lower interface levels", units="1")),
    # GEOLOCATIONS
    "satellite_latitude": (_GEO, "f4", _DS, _f(
        "sub satellite latitude", "degrees_north", valid_min=np.float32(-90.0), valid_max=np.float32(90.0),
        comment="Latitude of the geodetic sub satellite point on the WGS84 reference ellipsoid")),
    "satellite_longitude": (_GEO, "f4", _DS, _f(
        "satellite_longitude", "degrees_east", valid_min=np.float32(-180.0), valid_max=np.float32(180.0),
        comment="Longitude of the geodetic sub satellite point on the WGS84 reference ellipsoid")),
    "satellite_altitude": (_GEO, "f4", _DS, _f(
        "satellite altitude", "m", valid_min=np.float32(700000.0), valid_max=np.float32(900000.0),
        comment="The altitude of the satellite with respect to the geodetic sub satellite point on the WGS84 "
                "reference ellipsoid")),
    "satellite_orbit_phase": (_GEO, "f4", _DS, _f(
        "fractional satellite orbit phase", "1", valid_min=np.float32(-0.02), valid_max=np.float32(1.02),
        comment="Relative offset [0.0, ..., 1.0] of the measurement in the orbit")),
    "solar_zenith_angle": (_GEO, "f4", _D2, _f(
        "solar zenith angle", "degree", standard_name="solar_zenith_angle", **_ANGLE,
        comment="Solar zenith angle at the ground pixel location on the reference ellipsoid. Angle is "
                "measured away from the vertical")),
    "solar_azimuth_angle": (_GEO, "f4", _D2, _f(
        "solar azimuth angle", "degree", standard_name="solar_azimuth_angle", **_AZIMUTH,
        comment="Solar azimuth angle at the ground pixel location on the reference ellipsoid. Angle is "
                "measured clockwise from the North (East = 90, South = 180, West = 270)")),
    "viewing_zenith_angle": (_GEO, "f4", _D2, _f(
        "viewing zenith angle", "degree", standard_name="viewing_zenith_angle", **_ANGLE,
        comment="Zenith angle of the satellite at the ground pixel location on the reference ellipsoid. "
                "Angle is measured away from the vertical")),
    "viewing_azimuth_angle": (_GEO, "f4", _D2, _f(
        "viewing azimuth angle", "degree", standard_name="viewing_azimuth_angle", **_AZIMUTH,
        comment="Satellite azimuth angle at the ground pixel location on the reference ellipsoid. Angle is "
                "measured clockwise from the North (East = 90, South = 180, West = 270)")),
    "latitude_bounds": (_GEO, "f4", _DC, dict(long_name="latitude_bounds", coordinates=_GCOORDS)),
    "longitude_bounds": (_GEO, "f4", _DC, dict(long_name="longitude_bounds", coordinates=_GCOORDS)),
    "geolocation_flags": (_GEO, "u1", _D2, dict(
        coordinates=_GCOORDS, flag_masks=np.array([0, 1, 2, 4, 8, 16, 128], dtype=np.uint8),
        flag_meanings="no_error solar_eclipse sun_glint_possible descending night geo_boundary_crossing "
                      "geolocation_error",
        flag_values=np.array([0, 1, 2, 4, 8, 16, 128], dtype=np.uint8), long_name="ground pixel quality flag",
        max_val=np.uint8(254), min_val=np.uint8(0), units="1")),
    # DETAILED_RESULTS
    "processing_quality_flags": (_DET, "u4", _D2, _quality_flag_attrs()),
    f"{_NO2}_slant_column_density": (_DET, "f4", _D2, _col(
        "Nitrogen dioxide slant column density", "atmosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_slant_column_density_precision": (_DET, "f4", _D2, _col(
        "Precision of the nitrogen dioxide slant column density",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_stratospheric_column": (_DET, "f4", _D2, _col(
        "Stratospheric vertical column of nitrogen dioxide", "stratosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_stratospheric_column_precision": (_DET, "f4", _D2, _col(
        "Precision of the stratospheric vertical column of nitrogen dioxide",
        "stratosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_total_column": (_DET, "f4", _D2, _col(
        "Total vertical column of nitrogen dioxide derived from the total slant column and total air mass factor",
        "atmosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_total_column_precision": (_DET, "f4", _D2, _col(
        "Precision of the total vertical column of nitrogen dioxide",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_total_column_precision_kernel": (_DET, "f4", _D2, _col(
        "Precision of the total vertical column of nitrogen dioxide when applying the averaging kernel",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    f"{_NO2}_summed_total_column": (_DET, "f4", _D2, _col(
        "Sum of the tropospheric and stratospheric vertical columns of nitrogen dioxide",
        "atmosphere_mole_content_of_nitrogen_dioxide")),
    f"{_NO2}_summed_total_column_precision": (_DET, "f4", _D2, _col(
        "Precision of the summed total vertical column of nitrogen dioxide",
        "atmosphere_mole_content_of_nitrogen_dioxide standard_error")),
    "air_mass_factor_stratosphere": (_DET, "f4", _D2, _f("Stratospheric air mass factor", "1")),
    "air_mass_factor_clear": (_DET, "f4", _D2, _f("Air mass factor for the clear-sky part of the scene", "1")),
    "air_mass_factor_cloudy": (_DET, "f4", _D2, _f("Air mass factor for the cloud-covered part of the scene", "1")),
    "cloud_fraction_crb_nitrogendioxide_window": (_DET, "f4", _D2, _f(
        "Cloud fraction at 440 nm for NO2 retrieval", "1", radiation_wavelength=np.float32(440.0))),
    "cloud_radiance_fraction_nitrogendioxide_window": (_DET, "f4", _D2, _f(
        "Cloud radiance fraction at 440 nm for NO2 retrieval", "1", radiation_wavelength=np.float32(440.0))),
    "chi_square": (_DET, "f4", _D2, _f("Chi-square of the DOAS fit", "1")),
    # DETAILED_RESULTS/O22CLD (processor >= 2: O2-O2 cloud retrieval; HARP option data=o22cld)
    "o22cld_cloud_fraction_crb": (_O22, "f4", _D2, _f("O2-O2 cloud fraction at 477 nm", "1")),
    "o22cld_cloud_fraction_crb_precision": (_O22, "f4", _D2, _f("Precision of the O2-O2 cloud fraction", "1")),
    "o22cld_cloud_pressure_crb": (_O22, "f4", _D2, _f("O2-O2 cloud pressure", "Pa")),
    "o22cld_cloud_pressure_crb_precision": (_O22, "f4", _D2, _f("Precision of the O2-O2 cloud pressure", "Pa")),
    "o22cld_cloud_height_crb": (_O22, "f4", _D2, _f("O2-O2 cloud height", "m")),
    "o22cld_cloud_height_crb_precision": (_O22, "f4", _D2, _f("Precision of the O2-O2 cloud height", "m")),
    "o22cld_cloud_albedo_crb": (_O22, "f4", _D2, _f("O2-O2 cloud albedo", "1")),
    "o22cld_surface_albedo": (_O22, "f4", _D2, _f("Surface albedo assumed in the O2-O2 cloud retrieval", "1",
                                                  radiation_wavelength=np.float32(477.0))),
    # INPUT_DATA
    "surface_altitude": (_INP, "f4", _D2, _f(
        "Surface altitude", "m", standard_name="surface_altitude",
        source="http://topotools.cr.usgs.gov/gmted_viewer/",
        comment="The mean of the sub-pixels of the surface altitudewithin the approximate field of view, based "
                "on the GMTED2010 surface elevation database")),
    "surface_altitude_precision": (_INP, "f4", _D2, _f(
        "surface altitude precision", "m", standard_name="surface_altitude standard_error",
        standard_error_multiplier=np.float32(1.0), source="http://topotools.cr.usgs.gov/gmted_viewer/",
        comment="The standard deviation of sub-pixels used in calculating the mean surface altitude, based on "
                "the GMTED2010 surface elevation database")),
    "surface_classification": (_INP, "u1", _D2, dict(
        long_name="Land-water mask and surface classification based on a static database",
        comment="Flag indicating land/water and further surface classifications for the ground pixel",
        source="USGS (https://lta.cr.usgs.gov/GLCC) and NASA SDP toolkit "
               "(http://newsroom.gsfc.nasa.gov/sdptoolkit/toolkit.html)",
        flag_meanings="land water some_water coast value_covers_majority_of_pixel",
        flag_values=np.array([0, 1, 2, 3, 4], dtype=np.uint8),
        flag_masks=np.array([3, 3, 3, 3, 4], dtype=np.uint8),
        coordinates=_GCOORDS)),
    "surface_pressure": (_INP, "f4", _D2, _f("surface air pressure", "Pa", standard_name="surface_air_pressure")),
    "surface_albedo_nitrogendioxide_window": (_INP, "f4", _D2, _f(
        "Surface albedo in the nitrogen dioxide window", "1", standard_name="surface_albedo",
        radiation_wavelength=np.float32(440.0))),
    "surface_albedo": (_INP, "f4", _D2, _f("Surface albedo in the cloud product", "1",
                                           standard_name="surface_albedo")),
    "cloud_pressure_crb": (_INP, "f4", _D2, _f("Cloud optical centroid pressure", "Pa")),
    "cloud_albedo_crb": (_INP, "f4", _D2, _f("Cloud albedo", "1")),
    "cloud_fraction_crb": (_INP, "f4", _D2, _f("Effective cloud fraction from the cloud product", "1")),
    "scene_albedo": (_INP, "f4", _D2, _f("Scene albedo", "1")),
    "apparent_scene_pressure": (_INP, "f4", _D2, _f("Apparent scene pressure", "Pa")),
    "snow_ice_flag": (_INP, "u1", _D2, dict(
        long_name="Snow-ice mask", coordinates=_GCOORDS,
        comment="0: snow-free land; 1-100: sea-ice concentration (percent); 101: permanent ice; 103: snow; "
                "255: ocean")),
    "aerosol_index_354_388": (_INP, "f4", _D2, _f("Aerosol index from 388 and 354 nm", "1")),
    "aerosol_index_340_380": (_INP, "f4", _D2, _f("Aerosol index from 380 and 340 nm", "1")),
    "eastward_wind": (_INP, "f4", _D2, _f("Eastward wind from ECMWF at 10 meter height level", "m s-1",
                                          standard_name="eastward_wind")),
    "northward_wind": (_INP, "f4", _D2, _f("Northward wind from ECMWF at 10 meter height level", "m s-1",
                                           standard_name="northward_wind")),
}

#: Bit-groomed significant digits of float fields that rsmon does not grid: quantisation keeps a full
#: orbit small (smooth float32 fields otherwise compress only ~2x). Geolocation, corners, the
#: tropospheric and slant columns and the cloud fractions that set ``qa_value`` are written exactly.
_SIGNIFICANT_DIGITS: dict[str, int] = {
    **{name: 4 for name in ("solar_zenith_angle", "solar_azimuth_angle", "viewing_zenith_angle",
                            "viewing_azimuth_angle", f"{_NO2}_total_column", f"{_NO2}_summed_total_column")},
    **{name: 3 for name, (group, dtype, dims, _) in _VARIABLES.items()
       if dtype == "f4" and dims == _D2 and group in (_DET, _INP, _O22) and name not in (
           f"{_NO2}_slant_column_density", f"{_NO2}_total_column", f"{_NO2}_summed_total_column",
           "cloud_fraction_crb_nitrogendioxide_window", "cloud_radiance_fraction_nitrogendioxide_window")},
    **{name: 3 for name in (f"{_NO2}_tropospheric_column_precision", f"{_NO2}_tropospheric_column_precision_kernel",
                            "air_mass_factor_troposphere", "air_mass_factor_total")},
    "surface_pressure": 5,
}

_FILLS = {"f4": FILL_FLOAT, "i4": FILL_INT32, "u1": FILL_UINT8, "u4": FILL_UINT32, "str": ""}

_COORD_VARS = {
    "scanline": dict(units="1", axis="Y", long_name="along-track dimension index",
                     comment="This coordinate variable defines the indices along track; index starts at 0"),
    "ground_pixel": dict(units="1", axis="X", long_name="across-track dimension index",
                         comment="This coordinate variable defines the indices across track, from west to east; "
                                 "index starts at 0"),
    "time": dict(units="seconds since 2010-01-01 00:00:00", standard_name="time", axis="T",
                 long_name="reference time for the measurements",
                 comment="The time in this variable corresponds to the time in the time_reference global "
                         "attribute"),
    "corner": dict(units="1", long_name="pixel corner index",
                   comment="This coordinate variable defines the indices for the pixel corners; index starts at "
                           "0 (counter-clockwise, starting from south-western corner of the pixel in ascending "
                           "part of the orbit)"),
    "polynomial_exponents": dict(units="1", long_name="polynomial exponents",
                                 comment="This coordinate variable defines the indices for the polynomial "
                                         "exponents; index starts at 0"),
    "intensity_offset_polynomial_exponents": dict(units="1", long_name="intensity offset polynomial exponents"),
    "layer": dict(units="1", axis="Z", positive="down", long_name="layer"),
    "vertices": dict(units="1", long_name="vertices index",
                     comment="This coordinate variable defines the indices for the interface levels of a layer"),
}


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _iso(t: datetime, frac: bool = False) -> str:
    t = _to_utc(t)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if frac else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact(t: datetime) -> str:
    return _to_utc(t).strftime("%Y%m%dT%H%M%S")


def _collection(processor: str) -> int:
    """Collection of a processor version: 03 from 02.03.01 (the 2022 reprocessing), 01 before."""
    return 3 if int(processor) >= 20301 else 1


def _product_name(plan: _Plan) -> str:
    """The real name: the orbit's start and end for offline and reprocessed files (a subset keeps
    its orbit's name, as GES DISC subsets do); a near-real-time file is a granule of the orbit,
    named by its own first and last scanline times and produced within hours (Sentinel-5P Level 2
    Product User Manual, file name convention)."""
    geo = plan.geometry
    if plan.mode == "NRTI":
        start = _datetime(int(np.floor(plan.scan_times(plan.first))))
        end = _datetime(int(np.ceil(plan.scan_times(plan.stop - 1) + plan.scanline_ms / 1000.0)))
        production = end + timedelta(seconds=3600 + 37 * (geo.number % 97))
    else:
        start = _datetime(round(geo.start_s))
        end = _datetime(round(geo.start_s + geo.period_s))
        production = end + timedelta(days=3, seconds=3600 + 37 * (geo.number % 97))
    return (f"S5P_{plan.mode}_L2__NO2____{_compact(start)}_{_compact(end)}_{geo.number:05d}_"
            f"{_collection(plan.processor):02d}_{plan.processor}_{_compact(production)}")


def _processor_dotted(processor: str) -> str:
    return f"{int(processor[0:2])}.{int(processor[2:4])}.{int(processor[4:6])}"


def _write(path: Path, plan: _Plan, complevel: int, scene: SceneFields) -> None:
    """Write the file of ``plan`` to ``path``, with the fields ``scene(k0, k1)`` of each block of scanlines."""
    import netCDF4

    geo = plan.geometry
    n_file = plan.stop - plan.first
    name = _product_name(plan)
    t_first = _datetime(plan.scan_times(plan.first))
    t_last = _datetime(plan.scan_times(plan.stop - 1))
    ref_day = datetime(t_first.year, t_first.month, t_first.day, tzinfo=UTC)
    ref_s = _seconds(ref_day)
    dotted = _processor_dotted(plan.processor)
    comp = dict(zlib=True, complevel=complevel, shuffle=True)

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(_global_attrs(plan, name, t_first, t_last, ref_day))
        prod = ds.createGroup("PRODUCT")
        dims = {"scanline": n_file, "ground_pixel": N_GROUND_PIXELS, "corner": 4, "time": 1,
                "polynomial_exponents": 6, "intensity_offset_polynomial_exponents": 1, "layer": N_LAYERS,
                "vertices": 2}
        for dim, size in dims.items():
            prod.createDimension(dim, size)
        coord_values = {"scanline": np.arange(plan.first, plan.stop), "ground_pixel": np.arange(N_GROUND_PIXELS),
                        "time": np.array([round(ref_s)]), "corner": np.arange(4),
                        "polynomial_exponents": np.arange(6), "intensity_offset_polynomial_exponents": np.arange(1),
                        "layer": np.arange(N_LAYERS), "vertices": np.arange(2)}
        for dim, attrs in _COORD_VARS.items():
            var = prod.createVariable(dim, "i4", (dim,), fill_value=FILL_INT32, **comp)
            var.setncatts(attrs)
            var[:] = coord_values[dim].astype(np.int32)
        support = prod.createGroup("SUPPORT_DATA")
        for sub in ("GEOLOCATIONS", "DETAILED_RESULTS", "INPUT_DATA"):
            support.createGroup(sub)
        support["DETAILED_RESULTS"].createGroup("O22CLD")
        meta = ds.createGroup("METADATA")
        for sub in ("QA_STATISTICS", "ALGORITHM_SETTINGS", "GRANULE_DESCRIPTION", "ISO_METADATA",
                    "EOP_METADATA", "ESA_METADATA"):
            meta.createGroup(sub)
        meta["GRANULE_DESCRIPTION"].setncatts({
            "GranuleStart": _iso(t_first), "GranuleEnd": _iso(t_last), "InstrumentName": "TROPOMI",
            "MissionName": "Sentinel-5 precursor", "MissionShortName": "S5P", "ProcessLevel": "2",
            "ProcessingCenter": "PDGS-OP", "ProcessingNode": "rsmon-sim", "ProcessorVersion": dotted,
            "ProductFormatVersion": np.int32(10100), "ProcessingMode": _MODES[plan.mode],
            "LongitudeOfDaysideNadirEquatorCrossing": np.float32(geo.anx_lon_deg),
            "ProductShortName": "L2__NO2___",
        })
        meta["ALGORITHM_SETTINGS"].setncatts({"simulator": "rsmon.sim.s5p", "seed": np.int32(plan.seed)})

        variables = {}
        for vname, (group, dtype, vdims, attrs) in _VARIABLES.items():
            grp = ds[group]
            if dtype == "str":
                var = grp.createVariable(vname, str, vdims, fill_value="")
            else:
                chunks = _chunks(vdims, n_file)
                digits = _SIGNIFICANT_DIGITS.get(vname) if dtype == "f4" else None
                extra = {} if digits is None else {"significant_digits": digits}
                var = grp.createVariable(vname, dtype, vdims, fill_value=_FILLS[dtype], chunksizes=chunks, **comp,
                                         **extra)
                # we write whole chunks once: a one-chunk cache keeps ~70 variables from holding ~1 GB
                var.set_var_chunk_cache(size=int(np.prod(chunks)) * np.dtype(dtype).itemsize + 1024, nelems=7)
            var.set_auto_maskandscale(False)  # we write stored values (qa_value is packed uint8)
            var.setncatts(attrs)
            variables[vname] = var
        variables["tm5_constant_a"][:] = np.stack([_TM5_A[:-1], _TM5_A[1:]], axis=-1).astype(np.float32)
        variables["tm5_constant_b"][:] = np.stack([_TM5_B[:-1], _TM5_B[1:]], axis=-1).astype(np.float32)

        lat_rng = [np.inf, -np.inf]
        lon_rng = [np.inf, -np.inf]
        ak_var = variables["averaging_kernel"]
        for r0 in range(0, n_file, _BLOCK):
            r1 = min(n_file, r0 + _BLOCK)
            fields = scene(plan.first + r0, plan.first + r1)
            t_ms = fields.pop("_t_ms")
            valid = fields.pop("_valid")
            delta_ms = t_ms - int(round(ref_s * 1000.0))
            variables["delta_time"][0, r0:r1] = delta_ms.astype(np.int32)
            stamps = np.array([_iso(ref_day + timedelta(milliseconds=int(ms)), frac=True) for ms in delta_ms],
                              dtype=object)
            variables["time_utc"][0, r0:r1] = stamps
            for vname, arr in fields.items():
                var = variables[vname]
                if var.dimensions == _DS:
                    var[0, r0:r1] = arr
                else:
                    var[0, r0:r1, ...] = arr
            ak = np.where(valid[..., None], _AK_PROFILE[None, None, :], FILL_FLOAT).astype(np.float32)
            ak_var[0, r0:r1, :, :] = ak
            lat_b, lon_b = fields["latitude_bounds"], fields["longitude_bounds"]
            lat_rng = [min(lat_rng[0], float(lat_b.min())), max(lat_rng[1], float(lat_b.max()))]
            lon_rng = [min(lon_rng[0], float(lon_b.min())), max(lon_rng[1], float(lon_b.max()))]
        ds.setncatts({"geospatial_lat_min": np.float32(lat_rng[0]), "geospatial_lat_max": np.float32(lat_rng[1]),
                      "geospatial_lon_min": np.float32(lon_rng[0]), "geospatial_lon_max": np.float32(lon_rng[1])})


def _chunks(dims: tuple[str, ...], n_file: int) -> list[int]:
    along = {_D2: _BLOCK, _DS: _BLOCK, _DC: 256, _DL: 64}.get(dims)
    if along is None:
        return [2 if d == "vertices" else N_LAYERS for d in dims]
    size = {"time": 1, "scanline": min(n_file, along), "ground_pixel": N_GROUND_PIXELS, "corner": 4,
            "layer": N_LAYERS}
    return [size[d] for d in dims]


def _global_attrs(plan: _Plan, name: str, t_first: datetime, t_last: datetime, ref_day: datetime) -> dict:
    geo = plan.geometry
    dotted = _processor_dotted(plan.processor)
    created = _datetime(round(geo.start_s + geo.period_s)) + timedelta(days=3)
    res_s = plan.scanline_ms / 1000.0
    duration = (plan.stop - plan.first - 1) * res_s
    subset = (plan.first, plan.stop) != (0, plan.n_scanlines)
    history = f"{_iso(created)} rsmon.sim.s5p (simulated TROPOMI L2 NO2; seed {plan.seed})"
    if subset:
        history += f"; scanline subset [{plan.first}, {plan.stop}) of {plan.n_scanlines}"
    return {
        "Conventions": "CF-1.7",
        "institution": "KNMI",
        "source": "Sentinel 5 precursor, TROPOMI, space-borne remote sensing, L2",
        "summary": "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km (SIMULATED by rsmon.sim.s5p)",
        "tracking_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rsmon-sim/{name}/{plan.seed}")),
        "id": name,
        "time_reference": _iso(ref_day),
        "time_reference_days_since_1950": np.int32((ref_day - datetime(1950, 1, 1, tzinfo=UTC)).days),
        "time_reference_julian_day": np.float64(2440587.5 + ref_day.timestamp() / 86400.0),
        "time_reference_seconds_since_1970": np.int64(ref_day.timestamp()),
        "time_coverage_start": _iso(t_first),
        "time_coverage_end": _iso(t_last),
        "time_coverage_duration": f"PT{duration:.3f}S",
        "time_coverage_resolution": f"PT{res_s:.3f}S",
        "orbit": np.int32(geo.number),
        "references": "http://www.tropomi.eu/data-products/nitrogen-dioxide",
        "processor_version": dotted,
        "keywords_vocabulary": "AGU index terms, http://publications.agu.org/author-resource-center/index-terms/",
        "keywords": "0345 Pollution, Urban and Regional; 0365 Troposphere, Composition and Chemistry; "
                    "0368 Troposphere, Constituent Transport and Chemistry; 3360 Remote Sensing; "
                    "3363 Stratospheric Dynamics",
        "standard_name_vocabulary": "NetCDF Climate and Forecast Metadata Conventions Standard Name Table "
                                    "(v29, 08 July 2015), http://cfconventions.org/standard-names.html",
        "naming_authority": "nl.knmi",
        "cdm_data_type": "Swath",
        "date_created": _iso(created),
        "creator_name": "rsmon.sim.s5p (simulated data in the layout of the KNMI TROPOMI L2 NO2 product)",
        "creator_url": "http://www.tropomi.eu",
        "creator_email": "EOSupport@Copernicus.esa.int",
        "project": "Sentinel 5 precursor/TROPOMI",
        "license": "No conditions apply",
        "platform": "S5P",
        "sensor": "TROPOMI",
        "spatial_resolution": "5.5x3.5km2",
        "cpp_compiler_version": "n/a (rsmon.sim.s5p, Python)",
        "cpp_compiler_flags": "",
        "f90_compiler_version": "n/a (rsmon.sim.s5p, Python)",
        "f90_compiler_flags": "",
        "build_date": _iso(created),
        "revision_control_identifier": "",
        "geolocation_grid_from_band": np.int32(4),
        "identifier_product_doi": "10.5270/S5P-9bnp8q8",
        "identifier_product_doi_authority": "http://dx.doi.org/",
        "algorithm_version": dotted,
        "title": "TROPOMI/S5P NO2 1-Orbit L2 Swath 5.5x3.5km",
        "product_version": "3.0.0",
        "Status_MET_2D": "Nominal",
        "Status_NISE__": "Nominal",
        "Status_CTMFCT": "Nominal",
        "history": history,
        "processing_status": f"{plan.mode}-processing nominal product (simulated)",
        "date_modified": _iso(created),
    }
