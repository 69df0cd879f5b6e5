"""Contextual active-fire window statistics (numba kernels and their pure-NumPy references).

The VIIRS 375 m algorithm (Schroeder et al. 2014, RSE 143:85-96) compares each candidate pixel with
the valid pixels of a window around it. Only candidates need a window, so the kernels take the
candidate indices and loop over them; the image-wide screening (cloud, water, candidates) is
vectorised NumPy in :mod:`rsmon.products.fire`.

Three kernels, each with a ``*_numpy`` twin that computes the same numbers with array operations
(used by :func:`rsmon.products.fire.detect_numpy`, the benchmark and the equality test):

- :func:`background_stats`: grow a square window (``w_min`` .. ``w_max``, odd sizes) around each
  candidate until enough valid background pixels are inside, then the mean and mean absolute
  deviation (MAD) of BT4, BT5, ΔT45 and I4 radiance over them, plus the count, mean and MAD of BT4 of
  the potential background fires in the same window (BT'4, δ'4 of the paper).
- :func:`clipped_median_blocks`: the daytime dynamic candidate threshold BT4s = min(hi, max(lo, M)),
  M the median of valid BT4 in a large (501 x 501) window. Only the clipped value is needed, so the
  kernel histograms the window (below ``lo``, above ``hi``, 512 bins between) and selects
  (quickselect) only among the values of the bins holding the middle ranks: exact.
- :func:`ring_stats`: the 3 x 3 neighbourhood of a fire pixel (adjacent fires, valid neighbours and
  their hottest BT4) for the daytime low-confidence rule.

All sums are accumulated in float64. The window excludes the centre pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---------------------------------------------------------------------------------------------
# background window statistics
# ---------------------------------------------------------------------------------------------

#: Column order of the float64 statistics array returned by :func:`background_stats`.
STAT_NAMES = (
    "mean_bt4", "mad_bt4", "mean_bt5", "mad_bt5", "mean_dt", "mad_dt", "mean_rad4",
    "mean_bt4_bgfire", "mad_bt4_bgfire",
)


@njit(cache=True, nogil=True, inline="always")
def _window_ok(n_valid, w, min_valid, min_fraction, need_both):
    enough_count = n_valid >= min_valid
    enough_fraction = n_valid >= min_fraction * w * w
    if need_both:
        return enough_count and enough_fraction
    return enough_count or enough_fraction


@njit(cache=True, nogil=True)
def background_stats(bt4, bt5, dt, rad4, valid_bg, bgfire, cand_y, cand_x, w_min, w_max,
                     min_valid, min_fraction, need_both):
    """Window statistics around each candidate pixel.

    Parameters
    ----------
    bt4, bt5, dt, rad4 : 2-D float32 arrays (y, x)
        BT4 and BT5 (K), ΔT45 = BT4 - BT5 (K) and I4 radiance (W m-2 sr-1 um-1).
    valid_bg : 2-D bool array
        Pixels usable as background (not cloud, not water, not a potential background fire, all
        quality flags zero).
    bgfire : 2-D bool array
        Potential background fires (their BT4 gives BT'4 and δ'4).
    cand_y, cand_x : 1-D int64 arrays
        Candidate pixel indices.
    w_min, w_max : int
        First and last window size (odd, pixels per side); the window grows by 2.
    min_valid : int
        Minimum number of valid background pixels.
    min_fraction : float
        Minimum valid pixels as a fraction of the window size w*w.
    need_both : bool
        True: both conditions must hold ("and"); False: either one ("or").

    Returns
    -------
    n_valid : int32 array
        Valid background pixels in the window used.
    window : int32 array
        Size of the window that met the rule, 0 when even ``w_max`` did not (statistics are then
        those of the ``w_max`` window, for diagnostics and FRP only).
    n_bgfire : int32 array
        Potential background fires in the window used.
    stats : float64 array (n, 9)
        Columns as in :data:`STAT_NAMES`; NaN where no pixel contributes.
    """
    n = cand_y.shape[0]
    ny, nx = bt4.shape
    n_valid = np.zeros(n, np.int32)
    window = np.zeros(n, np.int32)
    n_fire = np.zeros(n, np.int32)
    stats = np.full((n, 9), np.nan)
    for k in range(n):
        cy = cand_y[k]
        cx = cand_x[k]
        used = w_max
        w = w_min
        while w <= w_max:
            h = w // 2
            cnt = 0
            for yy in range(max(cy - h, 0), min(cy + h + 1, ny)):
                for xx in range(max(cx - h, 0), min(cx + h + 1, nx)):
                    if valid_bg[yy, xx] and not (yy == cy and xx == cx):
                        cnt += 1
            if _window_ok(cnt, w, min_valid, min_fraction, need_both):
                window[k] = w
                used = w
                break
            w += 2
        h = used // 2
        y0 = max(cy - h, 0)
        y1 = min(cy + h + 1, ny)
        x0 = max(cx - h, 0)
        x1 = min(cx + h + 1, nx)
        cnt = 0
        nf = 0
        s4 = 0.0
        s5 = 0.0
        sd = 0.0
        sr = 0.0
        nr = 0
        sf = 0.0
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                if yy == cy and xx == cx:
                    continue
                if valid_bg[yy, xx]:
                    cnt += 1
                    s4 += bt4[yy, xx]
                    s5 += bt5[yy, xx]
                    sd += dt[yy, xx]
                    r = rad4[yy, xx]
                    if not np.isnan(r):
                        sr += r
                        nr += 1
                if bgfire[yy, xx]:
                    nf += 1
                    sf += bt4[yy, xx]
        n_valid[k] = cnt
        n_fire[k] = nf
        if nr > 0:
            stats[k, 6] = sr / nr
        if cnt > 0:
            m4 = s4 / cnt
            m5 = s5 / cnt
            md = sd / cnt
            a4 = 0.0
            a5 = 0.0
            ad = 0.0
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    if valid_bg[yy, xx] and not (yy == cy and xx == cx):
                        a4 += abs(bt4[yy, xx] - m4)
                        a5 += abs(bt5[yy, xx] - m5)
                        ad += abs(dt[yy, xx] - md)
            stats[k, 0] = m4
            stats[k, 1] = a4 / cnt
            stats[k, 2] = m5
            stats[k, 3] = a5 / cnt
            stats[k, 4] = md
            stats[k, 5] = ad / cnt
        if nf > 0:
            mf = sf / nf
            af = 0.0
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    if bgfire[yy, xx] and not (yy == cy and xx == cx):
                        af += abs(bt4[yy, xx] - mf)
            stats[k, 7] = mf
            stats[k, 8] = af / nf
    return n_valid, window, n_fire, stats


def background_stats_numpy(bt4, bt5, dt, rad4, valid_bg, bgfire, cand_y, cand_x, w_min, w_max,
                           min_valid, min_fraction, need_both, chunk=2048):
    """Pure-NumPy twin of :func:`background_stats` (same arguments and results).

    Gathers the ``w_max`` x ``w_max`` patch of every candidate (in chunks of ``chunk`` candidates),
    counts valid pixels for every window size at once, then reduces with per-candidate masks.
    """
    n = len(cand_y)
    n_valid = np.zeros(n, np.int32)
    window = np.zeros(n, np.int32)
    n_fire = np.zeros(n, np.int32)
    stats = np.full((n, 9), np.nan)
    if n == 0:
        return n_valid, window, n_fire, stats
    hm = w_max // 2
    pad = ((hm, hm), (hm, hm))
    planes = {
        "bt4": np.pad(bt4.astype(np.float64), pad),
        "bt5": np.pad(bt5.astype(np.float64), pad),
        "dt": np.pad(dt.astype(np.float64), pad),
        "rad4": np.pad(rad4.astype(np.float64), pad, constant_values=np.nan),
        "valid": np.pad(valid_bg, pad),
        "fire": np.pad(bgfire, pad),
    }
    offs = np.arange(-hm, hm + 1)
    ring = np.maximum(np.abs(offs)[:, None], np.abs(offs)[None, :])  # Chebyshev radius
    centre = ring == 0
    sizes = np.arange(w_min, w_max + 1, 2)
    for c0 in range(0, n, chunk):
        cy = np.asarray(cand_y[c0:c0 + chunk]) + hm
        cx = np.asarray(cand_x[c0:c0 + chunk]) + hm
        iy = cy[:, None, None] + offs[None, :, None]
        ix = cx[:, None, None] + offs[None, None, :]
        p = {k: v[iy, ix] for k, v in planes.items()}
        valid = p["valid"] & ~centre
        fire = p["fire"] & ~centre
        # valid count per Chebyshev radius, then cumulative = count per window size
        per_r = np.stack([(valid & (ring == r)).sum(axis=(1, 2)) for r in range(hm + 1)], axis=1)
        cum = np.cumsum(per_r, axis=1)[:, sizes // 2]  # (m, n_sizes)
        frac_ok = cum >= min_fraction * (sizes * sizes)[None, :]
        cnt_ok = cum >= min_valid
        ok = (cnt_ok & frac_ok) if need_both else (cnt_ok | frac_ok)
        any_ok = ok.any(axis=1)
        first = np.argmax(ok, axis=1)
        win = np.where(any_ok, sizes[first], 0)
        used = np.where(any_ok, sizes[first], w_max)
        inside = ring[None, :, :] <= (used // 2)[:, None, None]
        v = valid & inside
        f = fire & inside
        cnt = v.sum(axis=(1, 2))
        nf = f.sum(axis=(1, 2))
        sl = slice(c0, c0 + len(cy))
        n_valid[sl] = cnt
        window[sl] = win
        n_fire[sl] = nf
        with np.errstate(invalid="ignore", divide="ignore"):
            rad_ok = v & ~np.isnan(p["rad4"])
            nr = rad_ok.sum(axis=(1, 2))
            sr = np.where(rad_ok, p["rad4"], 0.0).sum(axis=(1, 2))
            out = np.full((len(cy), 9), np.nan)
            out[:, 6] = np.where(nr > 0, sr / nr, np.nan)
            for col, key in ((0, "bt4"), (2, "bt5"), (4, "dt")):
                vals = np.where(v, p[key], 0.0)
                mean = vals.sum(axis=(1, 2)) / cnt
                mad = np.where(v, np.abs(p[key] - mean[:, None, None]), 0.0).sum(axis=(1, 2)) / cnt
                out[:, col] = np.where(cnt > 0, mean, np.nan)
                out[:, col + 1] = np.where(cnt > 0, mad, np.nan)
            mf = np.where(f, p["bt4"], 0.0).sum(axis=(1, 2)) / nf
            af = np.where(f, np.abs(p["bt4"] - mf[:, None, None]), 0.0).sum(axis=(1, 2)) / nf
            out[:, 7] = np.where(nf > 0, mf, np.nan)
            out[:, 8] = np.where(nf > 0, af, np.nan)
        stats[sl] = out
    return n_valid, window, n_fire, stats


# ---------------------------------------------------------------------------------------------
# clipped median for the daytime dynamic threshold BT4s
# ---------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _select(buf, n, k):
    """k-th smallest of buf[:n] (0-based), partially reordering buf in place (Hoare quickselect)."""
    left = 0
    right = n - 1
    while right > left:
        pivot = buf[(left + right) // 2]
        i = left
        j = right
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            break
    return buf[k]


_MEDIAN_BINS = 512


@njit(cache=True, nogil=True, inline="always")
def _median_bin(v, lo, hi, inv_width, nbins):
    """0 for v <= lo, nbins + 1 for v >= hi (and NaN), 1..nbins for lo < v < hi (branch-free)."""
    t = min(max((v - lo) * inv_width, -1.0), float(nbins))
    b = min(max(int(t) + 1, 1), nbins)
    b = b if v > lo else 0
    return b if v < hi else nbins + 1


@njit(cache=True, nogil=True)
def clipped_median_blocks(bt4, valid, centre_y, centre_x, half, lo, hi, min_valid, fallback):
    """``min(hi, max(lo, median))`` of valid BT4 in a (2*half+1)^2 window around each centre.

    Parameters
    ----------
    bt4 : 2-D float32 array
    valid : 2-D bool array
        Pixels that enter the median.
    centre_y, centre_x : 1-D int64 arrays
        Window centres.
    half : int
        Half window size (250 for the paper's 501 x 501).
    lo, hi : float
        Clip bounds (325 K, 330 K in the paper).
    min_valid : int
        Fewer valid pixels than this gives ``fallback`` (330 K in the paper).

    Returns
    -------
    float64 array, one value per centre. Exact (an even count gives the mean of the two middle
    values, as ``np.median``). Pass 1 histograms the window: one bin for values <= lo, one for values
    >= hi, 512 in between. Only when a middle rank falls between lo and hi (or next to them), pass 2
    collects the values of the bins that hold the middle ranks and quickselect finds them.
    """
    n = centre_y.shape[0]
    ny, nx = bt4.shape
    nbins = _MEDIAN_BINS
    out = np.empty(n)
    buf = np.empty((2 * half + 1) * (2 * half + 1))
    hist = np.zeros(nbins + 2, np.int64)
    inv_width = nbins / (hi - lo)
    for k in range(n):
        cy = centre_y[k]
        cx = centre_x[k]
        y0 = max(cy - half, 0)
        y1 = min(cy + half + 1, ny)
        x0 = max(cx - half, 0)
        x1 = min(cx + half + 1, nx)
        hist[:] = 0
        nb = 0
        na = 0
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                # counters in registers for the common cases; the histogram only for lo < v < hi
                v = np.float64(bt4[yy, xx])
                ok = valid[yy, xx]
                nb += ok and v <= lo
                na += ok and v >= hi
                if ok and lo < v < hi:
                    hist[_median_bin(v, lo, hi, inv_width, nbins)] += 1
        nm = 0
        for b in range(1, nbins + 1):
            nm += hist[b]
        total = nb + na + nm
        if total < min_valid:
            out[k] = fallback
            continue
        k1 = (total - 1) // 2
        k2 = total // 2
        if k2 < nb:  # both middle values are <= lo
            out[k] = lo
            continue
        if k1 >= nb + nm:  # both middle values are >= hi
            out[k] = hi
            continue
        # here nb - 1 <= k1 <= k2 <= k1 + 1 <= nb + nm: each middle rank is the largest value
        # <= lo, a value between lo and hi, or the smallest value >= hi
        mid_ranks = [r - nb for r in (k1, k2) if nb <= r < nb + nm]
        b_lo = nbins + 1
        b_hi = 0
        before = 0
        if len(mid_ranks) > 0:
            r_lo = mid_ranks[0]
            r_hi = mid_ranks[-1]
            cum = 0
            for b in range(1, nbins + 1):
                if b_lo > nbins and cum + hist[b] > r_lo:
                    b_lo = b
                    before = cum
                if cum + hist[b] > r_hi:
                    b_hi = b
                    break
                cum += hist[b]
        max_below = -np.inf
        min_above = np.inf
        c = 0
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                if valid[yy, xx]:
                    v = np.float64(bt4[yy, xx])
                    b = _median_bin(v, lo, hi, inv_width, nbins)
                    if b == 0:
                        max_below = max(max_below, v)
                    elif b == nbins + 1:
                        min_above = min(min_above, v)
                    elif b_lo <= b <= b_hi:
                        buf[c] = v
                        c += 1
        values = np.empty(2)
        for i, r in enumerate((k1, k2)):
            if r == nb - 1:
                values[i] = max_below
            elif r == nb + nm:
                values[i] = min_above
            elif r == k2 and k2 == k1 + 1 and nb <= k1 < nb + nm:
                # after selecting rank k1, every value right of it is >= it: take their minimum
                best = np.inf
                for j in range(k1 - nb - before + 1, c):
                    best = min(best, buf[j])
                values[i] = best
            else:
                values[i] = _select(buf, c, r - nb - before)
        m = (values[0] + values[1]) / 2.0
        out[k] = min(hi, max(lo, m))
    return out


def clipped_median_blocks_numpy(bt4, valid, centre_y, centre_x, half, lo, hi, min_valid, fallback):
    """Pure-NumPy twin of :func:`clipped_median_blocks` (``np.median`` on each window)."""
    ny, nx = bt4.shape
    out = np.empty(len(centre_y))
    for k, (cy, cx) in enumerate(zip(centre_y, centre_x)):
        ys = slice(max(cy - half, 0), min(cy + half + 1, ny))
        xs = slice(max(cx - half, 0), min(cx + half + 1, nx))
        vals = bt4[ys, xs][valid[ys, xs]].astype(np.float64)
        out[k] = fallback if vals.size < min_valid else np.clip(np.median(vals), lo, hi)
    return out


# ---------------------------------------------------------------------------------------------
# 3 x 3 neighbourhood of fire pixels
# ---------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def ring_stats(bt4, valid_ring, fire, ys, xs):
    """The 8 neighbours of each pixel (ys, xs).

    Returns
    -------
    adjacent_fire : bool array
        At least one neighbour is in ``fire``.
    n_valid : int32 array
        Neighbours in ``valid_ring``.
    max_bt4 : float64 array
        Hottest BT4 among the valid neighbours (NaN when none).
    """
    n = ys.shape[0]
    ny, nx = bt4.shape
    adjacent = np.zeros(n, np.bool_)
    n_valid = np.zeros(n, np.int32)
    max_bt4 = np.full(n, np.nan)
    for k in range(n):
        cy = ys[k]
        cx = xs[k]
        best = -np.inf
        for yy in range(max(cy - 1, 0), min(cy + 2, ny)):
            for xx in range(max(cx - 1, 0), min(cx + 2, nx)):
                if yy == cy and xx == cx:
                    continue
                if fire[yy, xx]:
                    adjacent[k] = True
                if valid_ring[yy, xx]:
                    n_valid[k] += 1
                    v = np.float64(bt4[yy, xx])
                    if v > best:
                        best = v
        if n_valid[k] > 0:
            max_bt4[k] = best
    return adjacent, n_valid, max_bt4


def ring_stats_numpy(bt4, valid_ring, fire, ys, xs):
    """Pure-NumPy twin of :func:`ring_stats`."""
    ys = np.asarray(ys)
    xs = np.asarray(xs)
    pad = ((1, 1), (1, 1))
    b = np.pad(bt4.astype(np.float64), pad)
    v = np.pad(valid_ring, pad)
    f = np.pad(fire, pad)
    offs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    iy = np.array([ys + 1 + dy for dy, _ in offs])
    ix = np.array([xs + 1 + dx for _, dx in offs])
    vv = v[iy, ix]
    adjacent = f[iy, ix].any(axis=0)
    n_valid = vv.sum(axis=0).astype(np.int32)
    with np.errstate(invalid="ignore"):
        max_bt4 = np.where(vv, b[iy, ix], -np.inf).max(axis=0, initial=-np.inf)
    max_bt4 = np.where(n_valid > 0, max_bt4, np.nan)
    return adjacent, n_valid, max_bt4
