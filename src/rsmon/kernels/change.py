"""Fused per-pixel change detection and the change-mask clean-up (numba kernels).

One pass over a block of an aligned optical pair computes, per pixel, what
:mod:`rsmon.products.change_indices`, :mod:`~rsmon.products.change_threshold` and
:mod:`~rsmon.products.change_classes` compute with whole-array NumPy: the spectral masks of both
dates (QA ``clear``/``water`` combined), the relative normalisation of the before bands, the
standardised CVA magnitude and its threshold, the four indices of both dates, the index rule and
the rule class. :mod:`rsmon.products.change_blocks` drives it; the NumPy version
(:func:`rsmon.products.change.detect_change_numpy`) is the reference it is tested against.

Every operation is done in float32 in the order of the NumPy code (NumPy 2 compares a float32
array with a Python float in float32, so the thresholds are passed as float32), which makes the
kernel's masks, codes, magnitudes and index values bit-identical to the NumPy ones. Thresholds
travel in one float32 vector whose slots are the ``K_*`` constants below. The per-pixel code has
no branches (``&``/``|`` and selects instead of ``and``/``or``, every quantity computed), so LLVM
vectorises the pixel loop: about 2-4 ns per pixel instead of 30 for the branching version.

The clean-up (:func:`clean_codes`) is :func:`rsmon.products.change_morphology.clean_block` without
scipy (whose ndimage calls hold the GIL): opening and closing with a diamond as repeated 3 x 3
cross erosions/dilations, and the minimum mapping unit by a flood fill that stops as soon as a
component reaches ``mmu_px`` pixels, so the work stays linear in the block size.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# -- threshold vector slots (float32) -------------------------------------------------------------
K_WATER_MNDWI_MIN = 0
K_WATER_NIR_MAX = 1
K_CLOUD_BLUE_MIN = 2
K_CLOUD_RED_BLUE_MAX = 3
K_CLOUD_HOT_OFFSET = 4
K_CLOUD_WHITENESS_MAX = 5
K_CLOUD_SWIR2_MIN = 6
K_SHADOW_NIR_MAX = 7
K_SHADOW_SWIR1_MAX = 8
K_SNOW_NDSI_MIN = 9
K_SNOW_NIR_MIN = 10
K_SNOW_GREEN_MIN = 11
K_SATURATION = 12          # reflectance: invalid above; DN: invalid at or above
K_RULE_NDVI_DROP_NEG = 13  # -rule_ndvi_drop
K_RULE_NDVI_GAIN = 14
K_RULE_BARE_GAIN = 15
K_RULE_MNDWI_CHANGE = 16
K_VEG_NDVI_MIN = 17
K_BUILT_NDBI_MIN = 18
K_MINING_BSI_MIN = 19
K_MINING_BRIGHTNESS_MIN = 20
N_K = 21

#: Order of the index planes of :func:`detect_pixels_full` and :func:`candidate_samples`.
INDEX_PLANES = ("ndvi_before", "ndvi_after", "ndbi_before", "ndbi_after", "mndwi_before", "mndwi_after",
                "bsi_before", "bsi_after")

NODATA = 255
_F32_NAN = np.float32(np.nan)


# --------------------------------------------------------------------------------------------------
# per pixel (inlined, branch-free)
# --------------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _nd(a, b):
    """(a - b) / (a + b); NaN where a + b == 0 or an input is NaN (float32)."""
    total = a + b
    ratio = (a - b) / total
    return _F32_NAN if total == 0 else ratio


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _clear_water(blue, green, red, nir, swir1, swir2, reflectance, qa_clear, qa_water, k):
    """(clear, water) of one pixel of one date, as :func:`rsmon.products.change_indices.spectral_masks`
    (``qa_clear`` True and ``qa_water`` False where the product has no QA layer)."""
    finite = ((blue == blue) & (green == green) & (red == red) & (nir == nir) & (swir1 == swir1)
              & (swir2 == swir2))
    limit = k[K_SATURATION]
    # reflectance: invalid above the limit; DN: at or above it
    at_limit = (not reflectance) & ((blue == limit) | (green == limit) | (red == limit) | (nir == limit)
                                    | (swir1 == limit) | (swir2 == limit))
    saturated = ((blue > limit) | (green > limit) | (red > limit) | (nir > limit) | (swir1 > limit)
                 | (swir2 > limit) | at_limit)
    invalid = (not finite) | saturated
    mndwi = _nd(green, swir1)
    water = (mndwi > k[K_WATER_MNDWI_MIN]) & (not invalid) & ((not reflectance) | (nir < k[K_WATER_NIR_MAX]))
    water = water | (qa_water & (not invalid))
    mean_vis = (blue + green + red) / np.float32(3.0)
    whiteness = (abs(blue - mean_vis) + abs(green - mean_vis) + abs(red - mean_vis)) / (np.float32(3.0) * mean_vis)
    hot = blue - np.float32(0.5) * red - k[K_CLOUD_HOT_OFFSET]
    snow = reflectance & (mndwi > k[K_SNOW_NDSI_MIN]) & (nir > k[K_SNOW_NIR_MIN]) & (green > k[K_SNOW_GREEN_MIN])
    cloud = (reflectance & (blue > k[K_CLOUD_BLUE_MIN]) & (hot > 0) & (red <= k[K_CLOUD_RED_BLUE_MAX] * blue)
             & (whiteness < k[K_CLOUD_WHITENESS_MAX]) & (swir2 > k[K_CLOUD_SWIR2_MIN]) & (not water) & (not snow))
    shadow = reflectance & (nir < k[K_SHADOW_NIR_MAX]) & (swir1 < k[K_SHADOW_SWIR1_MAX]) & (not water)
    clear = (not (invalid | cloud | shadow | snow)) & qa_clear
    return clear, water


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _normalised(b0, b1, b2, b3, b4, b5, gains, offsets):
    """The before bands normalised onto the after date (float32: band * gain + offset)."""
    return (b0 * gains[0] + offsets[0], b1 * gains[1] + offsets[1], b2 * gains[2] + offsets[2],
            b3 * gains[3] + offsets[3], b4 * gains[4] + offsets[4], b5 * gains[5] + offsets[5])


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _magnitude(n0, n1, n2, n3, n4, n5, a0, a1, a2, a3, a4, a5, scales):
    """Standardised CVA magnitude from the normalised before and the after bands (float32,
    accumulated in band order)."""
    d = (a0 - n0) / scales[0]
    total = d * d
    d = (a1 - n1) / scales[1]
    total += d * d
    d = (a2 - n2) / scales[2]
    total += d * d
    d = (a3 - n3) / scales[3]
    total += d * d
    d = (a4 - n4) / scales[4]
    total += d * d
    d = (a5 - n5) / scales[5]
    total += d * d
    return np.sqrt(total)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _indices(n0, n1, n2, n3, n4, a0, a1, a2, a3, a4):
    """NDVI, NDBI, MNDWI, BSI of the normalised before bands and of the after bands (8 float32,
    in :data:`INDEX_PLANES` order)."""
    return (_nd(n3, n2), _nd(a3, a2), _nd(n4, n3), _nd(a4, a3), _nd(n1, n4), _nd(a1, a4), _nd(n4 + n2, n3 + n0),
            _nd(a4 + a2, a3 + a0))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _rule_and_class(ndvi_b, ndvi_a, ndbi_b, ndbi_a, mndwi_b, mndwi_a, bsi_b, bsi_a, brightness, k):
    """(index rule fired, rule class code 1..6 if the pixel is change), as
    :func:`rsmon.products.change_classes.index_rule` and ``classify_change``."""
    d_ndvi = ndvi_a - ndvi_b
    d_bsi = bsi_a - bsi_b
    d_ndbi = ndbi_a - ndbi_b
    water_b = mndwi_b > k[K_WATER_MNDWI_MIN]
    water_a = mndwi_a > k[K_WATER_MNDWI_MIN]
    water = (water_b != water_a) & (abs(mndwi_a - mndwi_b) >= k[K_RULE_MNDWI_CHANGE])
    rule = ((d_ndvi <= k[K_RULE_NDVI_DROP_NEG]) | (d_ndvi >= k[K_RULE_NDVI_GAIN]) | (d_bsi >= k[K_RULE_BARE_GAIN])
            | (d_ndbi >= k[K_RULE_BARE_GAIN]) | water)
    veg_b = ndvi_b >= k[K_VEG_NDVI_MIN]
    veg_a = ndvi_a >= k[K_VEG_NDVI_MIN]
    miningish = (bsi_a >= k[K_MINING_BSI_MIN]) | (brightness >= k[K_MINING_BRIGHTNESS_MIN])
    built_a = ndbi_a > k[K_BUILT_NDBI_MIN]
    barer = (d_ndbi >= k[K_RULE_BARE_GAIN]) | (d_bsi >= k[K_RULE_BARE_GAIN])
    land = not water
    loss = land & veg_b & (not veg_a)
    gain = land & (not veg_b) & veg_a
    bare_both = land & (not veg_b) & (not veg_a)
    veg_both = land & veg_b & veg_a
    mining = (loss & miningish) | (bare_both & barer & miningish)
    construction = (loss & (not miningish) & built_a) | (bare_both & barer & (not miningish))
    clearing = (loss & (not miningish) & (not built_a)) | (veg_both & (d_ndvi <= k[K_RULE_NDVI_DROP_NEG]))
    farmland = gain
    classified = water | mining | construction | clearing | farmland
    # a sum as in the NumPy code (the classes are exclusive, so it is the one code that applies)
    code = (5 * np.int32(water) + 2 * np.int32(mining) + np.int32(construction) + 4 * np.int32(clearing)
            + 3 * np.int32(farmland) + 6 * np.int32(not classified))
    return rule, code


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _brightness(a0, a1, a2, a3, a4, a5, reflectance):
    """Mean of the six after bands (float32, summed in band order); NaN for DN."""
    mean = (a0 + a1 + a2 + a3 + a4 + a5) / np.float32(6.0)
    return mean if reflectance else _F32_NAN


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _pair_pixel(bb, ba, qa, reflectance, k, gains, offsets, scales, i, j):
    """Pixel (i, j) of a pair: (valid, magnitude, the normalised before bands, the after bands)."""
    b0, b1, b2, b3, b4, b5 = bb[0][i, j], bb[1][i, j], bb[2][i, j], bb[3][i, j], bb[4][i, j], bb[5][i, j]
    a0, a1, a2, a3, a4, a5 = ba[0][i, j], ba[1][i, j], ba[2][i, j], ba[3][i, j], ba[4][i, j], ba[5][i, j]
    clear_b, _ = _clear_water(b0, b1, b2, b3, b4, b5, reflectance, qa[0][i, j], qa[2][i, j], k)
    clear_a, _ = _clear_water(a0, a1, a2, a3, a4, a5, reflectance, qa[1][i, j], qa[3][i, j], k)
    n0, n1, n2, n3, n4, n5 = _normalised(b0, b1, b2, b3, b4, b5, gains, offsets)
    magnitude = _magnitude(n0, n1, n2, n3, n4, n5, a0, a1, a2, a3, a4, a5, scales)
    return clear_b & clear_a, magnitude, (n0, n1, n2, n3, n4, n5), (a0, a1, a2, a3, a4, a5)


# --------------------------------------------------------------------------------------------------
# block kernels
# --------------------------------------------------------------------------------------------------
# Arguments: ``bb``/``ba`` tuples of the six float32 (h, w) bands (blue, green, red, nir, swir1,
# swir2) of the before and after dates; ``qa`` a tuple of four bool (h, w) arrays (clear before,
# clear after, water before, water after; all True / all False where the product has none);
# ``reflectance`` (False for DN stacks); ``k`` the float32 thresholds (``K_*`` slots);
# ``gains``/``offsets``/``scales`` float32 (6,); ``threshold`` float32 (+inf for none).

@njit(cache=True, nogil=True, error_model="numpy")
def pair_masks(bb, ba, qa, reflectance, k, valid, land):
    """Fill ``valid`` (clear on both dates) and ``land`` (not water on both dates), bool (h, w)."""
    B0, B1, B2, B3, B4, B5 = bb
    A0, A1, A2, A3, A4, A5 = ba
    CB, CA, WB, WA = qa
    for i in range(valid.shape[0]):
        for j in range(valid.shape[1]):
            clear_b, water_b = _clear_water(B0[i, j], B1[i, j], B2[i, j], B3[i, j], B4[i, j], B5[i, j], reflectance,
                                            CB[i, j], WB[i, j], k)
            clear_a, water_a = _clear_water(A0[i, j], A1[i, j], A2[i, j], A3[i, j], A4[i, j], A5[i, j], reflectance,
                                            CA[i, j], WA[i, j], k)
            valid[i, j] = clear_b & clear_a
            land[i, j] = not (water_b & water_a)


@njit(cache=True, nogil=True, error_model="numpy")
def magnitudes(bb, ba, gains, offsets, scales, out):
    """Fill ``out`` (float32 (h, w)) with the standardised CVA magnitude of every pixel."""
    B0, B1, B2, B3, B4, B5 = bb
    A0, A1, A2, A3, A4, A5 = ba
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            n0, n1, n2, n3, n4, n5 = _normalised(B0[i, j], B1[i, j], B2[i, j], B3[i, j], B4[i, j], B5[i, j],
                                                 gains, offsets)
            out[i, j] = _magnitude(n0, n1, n2, n3, n4, n5, A0[i, j], A1[i, j], A2[i, j], A3[i, j], A4[i, j],
                                   A5[i, j], scales)


@njit(cache=True, nogil=True, error_model="numpy")
def detect_pixels(bb, ba, qa, reflectance, k, gains, offsets, scales, threshold, raw):
    """The raw change codes of a block: ``raw`` (uint8) = 1 where the magnitude is above
    ``threshold``, 0 where not, 255 where not clear on both dates. The rule classes are computed
    for the candidates only (:func:`candidate_samples`)."""
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            valid, magnitude, _, _ = _pair_pixel(bb, ba, qa, reflectance, k, gains, offsets, scales, i, j)
            raw[i, j] = np.uint8(magnitude > threshold) if valid else np.uint8(NODATA)


@njit(cache=True, nogil=True, error_model="numpy")
def detect_pixels_full(bb, ba, qa, reflectance, k, gains, offsets, scales, threshold, raw, klass, rule, valid,
                       magnitude, indices):
    """Every per-pixel output of the lazy product: ``raw`` as :func:`detect_pixels`, ``klass``
    (uint8: the rule class as change, 1..6; 255 where not valid), ``rule`` (bool, the index rule
    and valid), ``valid`` (bool), ``magnitude`` (float32, NaN where not valid) and ``indices``
    (a tuple of eight float32 (h, w) arrays, :data:`INDEX_PLANES`; on every pixel)."""
    X0, X1, X2, X3, X4, X5, X6, X7 = indices
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            ok, m, (n0, n1, n2, n3, n4, _), (a0, a1, a2, a3, a4, a5) = _pair_pixel(bb, ba, qa, reflectance, k, gains,
                                                                                   offsets, scales, i, j)
            i0, i1, i2, i3, i4, i5, i6, i7 = _indices(n0, n1, n2, n3, n4, a0, a1, a2, a3, a4)
            fired, code = _rule_and_class(i0, i1, i2, i3, i4, i5, i6, i7, _brightness(a0, a1, a2, a3, a4, a5,
                                                                                      reflectance), k)
            X0[i, j] = i0
            X1[i, j] = i1
            X2[i, j] = i2
            X3[i, j] = i3
            X4[i, j] = i4
            X5[i, j] = i5
            X6[i, j] = i6
            X7[i, j] = i7
            valid[i, j] = ok
            rule[i, j] = fired & ok
            raw[i, j] = np.uint8(m > threshold) if ok else np.uint8(NODATA)
            klass[i, j] = np.uint8(code) if ok else np.uint8(NODATA)
            magnitude[i, j] = m if ok else _F32_NAN


@njit(cache=True, nogil=True)
def _near_change(raw, radius):
    """True within Chebyshev distance ``radius`` of a pixel with ``raw == 1``: separable running
    counts (along each row a prefix count of change pixels, then down each column a running count
    of the rows' results over the ``2 * radius + 1`` window), so the cost does not grow with
    ``radius``."""
    h, w = raw.shape
    across = np.empty((h, w), np.bool_)
    run = np.empty(w + 1, np.int32)
    for i in range(h):
        run[0] = 0
        for j in range(w):
            run[j + 1] = run[j] + np.int32(raw[i, j] == 1)
        for j in range(w):
            across[i, j] = run[min(j + radius + 1, w)] - run[max(j - radius, 0)] > 0
    near = np.empty((h, w), np.bool_)
    count = np.zeros(w, np.int32)  # rows i - radius .. i + radius of ``across``, per column
    for i in range(min(radius, h)):
        for j in range(w):
            count[j] += across[i, j]
    for i in range(h):
        if i + radius < h:
            for j in range(w):
                count[j] += across[i + radius, j]
        if i - radius - 1 >= 0:
            for j in range(w):
                count[j] -= across[i - radius - 1, j]
        for j in range(w):
            near[i, j] = count[j] > 0
    return near


@njit(cache=True, nogil=True)
def candidate_mask(raws, radius):
    """The candidates of :func:`candidate_samples` for one or more pairs of the same block (``raws``
    uint8 (n_pairs, h, w); a series' block: the union of its pairs'): valid in some pair and within
    ``radius`` (Chebyshev) of a pixel with ``raw == 1`` in some pair, or of the block edge.
    Returns (bool mask, count)."""
    n_pairs, h, w = raws.shape
    near = _near_change(raws[0], radius)
    valid = raws[0] != NODATA
    for m in range(1, n_pairs):
        near |= _near_change(raws[m], radius)
        valid |= raws[m] != NODATA
    n = 0
    for i in range(h):
        edge_row = i < radius or i >= h - radius
        for j in range(w):
            if valid[i, j] and (near[i, j] or edge_row or j < radius or j >= w - radius):
                near[i, j] = True
                n += 1
            else:
                near[i, j] = False
    return near, n


@njit(cache=True, nogil=True, error_model="numpy")
def samples_at(mask, n, bb, ba, reflectance, k, gains, offsets):
    """Row-major local flat indices (int64), index values (float32 (8, n), :data:`INDEX_PLANES`),
    rule classes (uint8, 1..6) and index-rule flags (bool) of the ``n`` pixels where ``mask``."""
    h, w = mask.shape
    B0, B1, B2, B3, B4, B5 = bb
    A0, A1, A2, A3, A4, A5 = ba
    flat = np.empty(n, np.int64)
    values = np.empty((8, n), np.float32)
    codes = np.empty(n, np.uint8)
    fired = np.empty(n, np.bool_)
    n = 0
    for i in range(h):
        for j in range(w):
            if mask[i, j]:
                flat[n] = i * w + j
                a0, a1, a2, a3, a4, a5 = A0[i, j], A1[i, j], A2[i, j], A3[i, j], A4[i, j], A5[i, j]
                n0, n1, n2, n3, n4, _ = _normalised(B0[i, j], B1[i, j], B2[i, j], B3[i, j], B4[i, j], B5[i, j],
                                                    gains, offsets)
                i0, i1, i2, i3, i4, i5, i6, i7 = _indices(n0, n1, n2, n3, n4, a0, a1, a2, a3, a4)
                values[0, n] = i0
                values[1, n] = i1
                values[2, n] = i2
                values[3, n] = i3
                values[4, n] = i4
                values[5, n] = i5
                values[6, n] = i6
                values[7, n] = i7
                rule, code = _rule_and_class(i0, i1, i2, i3, i4, i5, i6, i7, _brightness(a0, a1, a2, a3, a4, a5,
                                                                                         reflectance), k)
                codes[n] = code
                fired[n] = rule
                n += 1
    return flat, values, codes, fired


@njit(cache=True, nogil=True, error_model="numpy")
def candidate_samples(raw, radius, bb, ba, reflectance, k, gains, offsets):
    """Index values and rule classes of the pixels that can be change after the clean-up.

    Closing and hole filling only add pixels within ``radius`` (Chebyshev) of a detected pixel, so
    the candidates are the valid pixels within ``radius`` of ``raw == 1`` in the block, plus every
    valid pixel within ``radius`` of the block edge (its detected neighbour may lie in the next
    block). Returns the row-major local flat indices (int64), the index values (float32 (8, n),
    :data:`INDEX_PLANES`) and the rule class each would have as change (uint8, 1..6).
    """
    mask, n = candidate_mask(raw.reshape((1,) + raw.shape), radius)
    flat, values, codes, _ = samples_at(mask, n, bb, ba, reflectance, k, gains, offsets)
    return flat, values, codes


@njit(cache=True, nogil=True, error_model="numpy")
def latest_clear(bands, qa_clear, qa_water, reflectance, k, out, clear, water, index):
    """The latest-clear-pixel composite of one block
    (:func:`rsmon.products.change_composite.latest_clear_composite`): per pixel the six bands of
    the last scene (in the given order) in which the pixel is clear by :func:`_clear_water`, that
    scene's ``qa_water``, its position in ``index`` (int8) and ``clear`` True; NaN bands, False,
    -1 and False where no scene is.

    ``bands``: float32 (n_scenes, 6, h, w); ``qa_clear``/``qa_water``: bool (n_scenes, h, w) (all
    True / all False for a scene without QA); ``out``: float32 (6, h, w)."""
    n, _, h, w = bands.shape
    for i in range(h):
        for j in range(w):
            found = -1
            for s in range(n - 1, -1, -1):
                ok, _ = _clear_water(bands[s, 0, i, j], bands[s, 1, i, j], bands[s, 2, i, j], bands[s, 3, i, j],
                                     bands[s, 4, i, j], bands[s, 5, i, j], reflectance, qa_clear[s, i, j],
                                     qa_water[s, i, j], k)
                if ok:
                    found = s
                    break
            for b in range(6):
                out[b, i, j] = bands[found, b, i, j] if found >= 0 else _F32_NAN
            clear[i, j] = found >= 0
            water[i, j] = qa_water[found, i, j] if found >= 0 else False
            index[i, j] = found


@njit(cache=True, nogil=True)
def series_background(cleaned, out_change, out_class, out_confidence):
    """The series outputs of the pixels no pair flags (the candidates are overwritten after):
    ``change`` and ``change_class`` 0 where some pair is clear, else 255 (no data); ``confidence``
    0. ``cleaned``: every pair's cleaned codes, uint8 (n_pairs, h, w). Returns the number of
    pixels clear in some pair and of pixels change in some pair."""
    n_pairs, h, w = cleaned.shape
    n_clear = 0
    n_flagged = 0
    for i in range(h):
        for j in range(w):
            clear = False
            flagged = False
            for m in range(n_pairs):
                c = cleaned[m, i, j]
                clear |= c != NODATA
                flagged |= c == 1
            value = np.uint8(0) if clear else np.uint8(NODATA)
            out_change[i, j] = value
            out_class[i, j] = value
            out_confidence[i, j] = 0
            n_clear += clear
            n_flagged += flagged
    return n_clear, n_flagged


#: rsmon.products.change_classes codes the series trajectory rule uses (clearing then regrowth ->
#: farmland); tests/test_change_synthetic.py compares this kernel with the NumPy series_kernel.
_FARMLAND, _CLEARING = 3, 4


@njit(cache=True, nogil=True)
def series_confirm(flags, rules, classes, values, ndvi_plane, sensor_ids, confirm_window, confirm_min,
                   veg_ndvi_min):
    """GLAD-style confirmation, event class and trajectory of pixels over the observations of a
    series, pixel by pixel: the same results as
    :func:`rsmon.products.change_series.series_kernel` (with
    :func:`rsmon.products.change_classes.confirm_observations`), observations on the first axis.

    ``flags`` (uint8 (n_obs, n): 1 change, 0 not, 255 not clear), ``rules`` (bool: the index rule
    and the flag), ``classes`` (uint8 rule class where flagged), ``values`` (float32 (n_obs,
    n_planes, n) index values; plane ``ndvi_plane`` is the after NDVI), ``sensor_ids`` (int64 per
    observation, 0..30). Returns ``change``, ``change_class``, ``confidence`` (uint8 (n,)),
    ``first`` (int16, the first flagging observation of the detection, -1 none) and ``picked``
    (float32 (n_planes, n): the values of that observation where the detection is active, NaN
    elsewhere)."""
    n_obs, n = flags.shape
    n_planes = values.shape[1]
    change = np.empty(n, np.uint8)
    change_class = np.empty(n, np.uint8)
    confidence = np.empty(n, np.uint8)
    first_out = np.empty(n, np.int16)
    picked = np.full((n_planes, n), np.nan, np.float32)
    for i in range(n):
        state = 0  # 0 none, 1 pending (low), 2 confirmed
        first = -1
        seen = 0
        hits = 0
        rule_agreed = False
        sensors = np.int64(0)
        any_clear = False
        for k in range(n_obs):
            f = flags[k, i]
            clear = f != NODATA
            any_clear |= clear
            flagged = clear and f == 1
            bit = np.int64(1) << np.int64(sensor_ids[k])
            pending = state == 1 and clear
            if pending:
                seen += 1
            confirm_hit = pending and flagged
            if confirm_hit:
                hits += 1
                rule_agreed |= rules[k, i]
                sensors |= bit
            confirmed_now = pending and hits >= confirm_min
            if confirmed_now:
                state = 2
            expired = pending and not confirmed_now and (confirm_window - seen) < (confirm_min - hits)
            if expired:
                state = 0
                first = -1
            if state == 2 and flagged and not confirm_hit:
                rule_agreed |= rules[k, i]
                sensors |= bit
            if state == 0 and flagged and not expired:
                state = 1
                first = k
                seen = 0
                hits = 0
                rule_agreed = rules[k, i]
                sensors = bit
        n_sensors = 0
        while sensors:
            n_sensors += sensors & 1
            sensors >>= 1
        conf = state
        if state == 2 and (rule_agreed or n_sensors >= 2):
            conf = 3
        confidence[i] = conf
        first_out[i] = first
        if conf > 0:
            event = classes[first, i]
            if event == _CLEARING:  # cleared, then vegetated again in a later clear observation
                for k in range(first + 1, n_obs):
                    if flags[k, i] != NODATA and values[k, ndvi_plane, i] >= veg_ndvi_min:
                        event = _FARMLAND
                        break
            change[i] = 1
            change_class[i] = event
            for m in range(n_planes):
                picked[m, i] = values[first, m, i]
        else:
            change[i] = 0 if any_clear else NODATA
            change_class[i] = 0 if any_clear else NODATA
    return change, change_class, confidence, first_out, picked


@njit(cache=True, nogil=True)
def finish_codes(change, flat, codes, out_class, out_confidence, keep):
    """``change_class`` (the candidate's rule class where change, 0 where not, 255 where no data)
    and ``confidence`` (1 where change, else 0) of a cleaned block, and ``keep`` (bool, per
    candidate: it is change); returns (n_valid, n_change, n_kept)."""
    h, w = change.shape
    n_valid = 0
    n_change = 0
    for i in range(h):
        for j in range(w):
            c = change[i, j]
            out_class[i, j] = np.uint8(NODATA) if c == NODATA else np.uint8(0)
            out_confidence[i, j] = np.uint8(c == 1)
            n_valid += c != NODATA
            n_change += c == 1
    n_kept = 0
    for m in range(flat.shape[0]):
        i = flat[m] // w
        j = flat[m] - i * w
        keep[m] = change[i, j] == 1
        if keep[m]:
            out_class[i, j] = codes[m]
            n_kept += 1
    return n_valid, n_change, n_kept


@njit(cache=True, nogil=True)
def kept_samples(flat, keep, values, block_width, row0, col0, width, n_kept):
    """The candidates that are change (``keep``) after :func:`finish_codes`: their scene flat
    indices ``(row0 + i) * width + col0 + j`` from the block-local ``flat = i * block_width + j``
    (int64), and their eight index values as eight separate float32 arrays (so a join can free
    them plane by plane)."""
    out_flat = np.empty(n_kept, np.int64)
    planes = (np.empty(n_kept, np.float32), np.empty(n_kept, np.float32), np.empty(n_kept, np.float32),
              np.empty(n_kept, np.float32), np.empty(n_kept, np.float32), np.empty(n_kept, np.float32),
              np.empty(n_kept, np.float32), np.empty(n_kept, np.float32))
    P0, P1, P2, P3, P4, P5, P6, P7 = planes
    n = 0
    for m in range(flat.shape[0]):
        if keep[m]:
            i = flat[m] // block_width
            out_flat[n] = (row0 + i) * width + col0 + (flat[m] - i * block_width)
            P0[n] = values[0, m]
            P1[n] = values[1, m]
            P2[n] = values[2, m]
            P3[n] = values[3, m]
            P4[n] = values[4, m]
            P5[n] = values[5, m]
            P6[n] = values[6, m]
            P7[n] = values[7, m]
            n += 1
    return out_flat, planes


@njit(cache=True, nogil=True)
def c_order(src):
    """A C-ordered copy of a 2-D array (in 16 x 16 tiles: about 3 times faster than NumPy's copy of
    a Fortran-ordered array, which the reader gives for resampled bands)."""
    h, w = src.shape
    out = np.empty((h, w), src.dtype)
    for i0 in range(0, h, 16):
        for j0 in range(0, w, 16):
            for j in range(j0, min(j0 + 16, w)):
                for i in range(i0, min(i0 + 16, h)):
                    out[i, j] = src[i, j]
    return out


# --------------------------------------------------------------------------------------------------
# clean-up
# --------------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _cross_at(src, i, j, dilate):
    """The cross dilation / erosion at one pixel, with the edge tests."""
    h, w = src.shape
    outside = not dilate
    up = src[i - 1, j] if i > 0 else outside
    down = src[i + 1, j] if i < h - 1 else outside
    left = src[i, j - 1] if j > 0 else outside
    right = src[i, j + 1] if j < w - 1 else outside
    if dilate:
        return src[i, j] | up | down | left | right
    return src[i, j] & up & down & left & right


@njit(cache=True, nogil=True)
def _cross(src, dilate):
    """Binary dilation (outside = False) or erosion (outside = True) by the 3 x 3 cross; the
    interior loop has no edge tests, so it vectorises."""
    h, w = src.shape
    out = np.empty((h, w), np.bool_)
    for i in range(1, h - 1):
        for j in range(1, w - 1):
            if dilate:
                out[i, j] = src[i, j] | src[i - 1, j] | src[i + 1, j] | src[i, j - 1] | src[i, j + 1]
            else:
                out[i, j] = src[i, j] & src[i - 1, j] & src[i + 1, j] & src[i, j - 1] & src[i, j + 1]
    for i in range(h):
        if i == 0 or i == h - 1:
            for j in range(w):
                out[i, j] = _cross_at(src, i, j, dilate)
        else:
            out[i, 0] = _cross_at(src, i, 0, dilate)
            out[i, w - 1] = _cross_at(src, i, w - 1, dilate)
    return out


@njit(cache=True, nogil=True)
def _open_close(mask, radius, closing):
    """Opening (erosions, then dilations) or closing (dilations, then erosions) by the diamond of
    ``radius`` (``radius`` crosses)."""
    out = mask
    for _ in range(radius):
        out = _cross(out, closing)
    for _ in range(radius):
        out = _cross(out, not closing)
    return out


@njit(cache=True, nogil=True)
def _sieve(member_value, change, valid, min_px, eight, fill):
    """Flip the components of fewer than ``min_px`` pixels of one class, in place.

    ``fill`` False: the class is ``change`` (True) and small components become False. ``fill``
    True: the class is valid no-change pixels and small components touching change become change.
    A flood fill stops once a component reaches ``min_px`` pixels and marks the pixels it saw as
    "large", so a later fill that meets them stops at once (linear work overall).
    """
    h, w = change.shape
    state = np.zeros((h, w), np.uint8)       # 0 unseen, 1 large, 2 in the current fill, 3 small
    queue_i = np.empty(min_px, np.int64)
    queue_j = np.empty(min_px, np.int64)
    di = np.array([-1, 1, 0, 0, -1, -1, 1, 1])
    dj = np.array([0, 0, -1, 1, -1, 1, -1, 1])
    n_dir = 8 if eight else 4
    for i0 in range(h):
        for j0 in range(w):
            if state[i0, j0] != 0 or change[i0, j0] != member_value or (fill and not valid[i0, j0]):
                continue
            # a member next to a known large component's pixel belongs to it (the common case)
            if ((j0 > 0 and state[i0, j0 - 1] == 1 and change[i0, j0 - 1] == member_value)
                    or (i0 > 0 and state[i0 - 1, j0] == 1 and change[i0 - 1, j0] == member_value)):
                state[i0, j0] = 1
                continue
            queue_i[0] = i0
            queue_j[0] = j0
            state[i0, j0] = 2
            n = 1
            head = 0
            large = False
            touches = False
            while head < n and not large:
                ci = queue_i[head]
                cj = queue_j[head]
                head += 1
                for d in range(n_dir):
                    ni = ci + di[d]
                    nj = cj + dj[d]
                    if ni < 0 or ni >= h or nj < 0 or nj >= w:
                        continue
                    member = change[ni, nj] == member_value and (not fill or valid[ni, nj])
                    if not member:
                        if fill and change[ni, nj]:
                            touches = True
                        continue
                    s = state[ni, nj]
                    if s == 1:
                        large = True
                        break
                    if s == 0:
                        if n >= min_px - 1:
                            large = True
                            break
                        state[ni, nj] = 2
                        queue_i[n] = ni
                        queue_j[n] = nj
                        n += 1
            if large:
                for m in range(n):
                    state[queue_i[m], queue_j[m]] = 1
            else:
                flip = touches if fill else True
                for m in range(n):
                    state[queue_i[m], queue_j[m]] = 3
                    if flip:
                        change[queue_i[m], queue_j[m]] = fill


@njit(cache=True, nogil=True)
def clean_codes(codes, opening_px, closing_px, mmu_px, connectivity):
    """Opening, closing and minimum mapping unit of a uint8 change mask (1 change, 0 no change,
    255 no data): :func:`rsmon.products.change_morphology.clean_block` without scipy."""
    h, w = codes.shape
    valid = np.empty((h, w), np.bool_)
    change = np.empty((h, w), np.bool_)
    for i in range(h):
        for j in range(w):
            valid[i, j] = codes[i, j] != NODATA
            change[i, j] = codes[i, j] == 1
    if opening_px > 0:
        change = _open_close(change, opening_px, False) & change
    if closing_px > 0:
        change = (_open_close(change, closing_px, True) | change) & valid
    if mmu_px > 1:
        eight = connectivity == 8
        _sieve(True, change, valid, mmu_px, eight, False)
        _sieve(False, change, valid, mmu_px, eight, True)
    out = np.empty((h, w), np.uint8)
    for i in range(h):
        for j in range(w):
            out[i, j] = NODATA if not valid[i, j] else (1 if change[i, j] else 0)
    return out
