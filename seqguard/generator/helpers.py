"""Small vectorised numpy helpers shared by the world, the normal sessions and the scenarios."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqguard.generator.config import SHOP_UTC_OFFSET_HOURS
from seqguard.generator.vocab import HOUR_WEIGHTS


def _lognormal(rng: np.random.Generator, median: Any, sigma: Any, size: int, lo: float = 0.0,
               hi: float = np.inf) -> np.ndarray:
    return np.clip(np.asarray(median) * np.exp(np.asarray(sigma) * rng.standard_normal(size)), lo, hi)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts per owner: the owner of each expanded element and its position within the owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - offsets[owner]


def _bounded_zipf(rng: np.random.Generator, n: np.ndarray, a: float = 0.95) -> np.ndarray:
    """Ranks in [0, n) with P(rank k) ~ (k+1)^-a, by inverting the continuous power law (n may vary per draw)."""
    u = rng.random(len(n))
    e = 1.0 - a
    x = (((n + 1.0) ** e - 1.0) * u + 1.0) ** (1.0 / e)
    return np.minimum(np.floor(x).astype(np.int64) - 1, n - 1)


def _diurnal_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, hour_weights: np.ndarray = HOUR_WEIGHTS,
                   utc_offset_hours: float = SHOP_UTC_OFFSET_HOURS) -> np.ndarray:
    """Times in [lo, hi) following the shop's hour-of-day rhythm, by rejection (interpolated between hours).

    `hour_weights` are per local hour (UTC + `utc_offset_hours`); `seqguard inject` passes a real traffic's own."""
    lo = np.asarray(lo, dtype=float)
    hi = np.maximum(np.asarray(hi, dtype=float), lo + 1.0)
    out = np.empty(len(lo))
    todo = np.arange(len(lo))
    wmax = hour_weights.max()
    hours = np.arange(25) + 0.5
    weights = np.r_[hour_weights, hour_weights[0]]
    for _ in range(200):
        if not len(todo):
            break
        t = lo[todo] + rng.random(len(todo)) * (hi[todo] - lo[todo])
        h = ((t / 3600.0 + utc_offset_hours) % 24.0 + 23.5) % 24.0 + 0.5  # shift so interp spans 0.5..24.5
        ok = rng.random(len(todo)) * wmax < np.interp(h, hours, weights)
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    out[todo] = lo[todo]  # windows so short that no draw was accepted: start at once
    return out


def _groups(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """Group id for each of n members, group sizes uniform in [lo, hi]."""
    sizes = rng.integers(lo, hi + 1, size=max(1, n // max(1, lo) + 1))
    gid = np.repeat(np.arange(len(sizes)), sizes)[:n]
    return gid


def _scramble(codes: np.ndarray, bits: int, salt: int) -> np.ndarray:
    """A bijection on [0, 2^bits): ids that look random but stay unique."""
    mask = np.uint64((1 << bits) - 1)
    shift = np.uint64(bits // 2)
    x = (codes.astype(np.uint64) + np.uint64(salt)) & mask
    for mult in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9):  # odd multipliers and xor-shifts are invertible mod 2^bits
        x = (x * np.uint64(mult)) & mask
        x ^= x >> shift
    return x


def _pick(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    return pool[rng.integers(0, len(pool), size=size)]
