"""Per-band moments: exact at any size, independent of order and grouping."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectralearth.pipelines.stats import BandMoments, merge_moments, moments_of

NODATA = -32768
FULL_SCALE_PX = 25_000_000 * 128 * 128  # SpectralEarth-MM: 25 M views of 128 × 128 px, per band


def exact(groups):
    """Exact mean and variance (Fractions) of ``[(value, multiplicity), ...]``."""
    n = sum(m for _, m in groups)
    s = sum(v * m for v, m in groups)
    q = sum(v * v * m for v, m in groups)
    return Fraction(s, n), Fraction(n * q - s * s, n * n)


def moments_of_groups(groups):
    return BandMoments((sum(m for _, m in groups),), (sum(v * m for v, m in groups),), (sum(v * v * m for v, m in groups),))


values = st.integers(min_value=-32767, max_value=32767)
groups = st.lists(st.tuples(values, st.integers(min_value=1, max_value=FULL_SCALE_PX)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(groups, st.randoms(use_true_random=False))
def test_merge_is_exact_at_full_scale_counts(gs, rnd):
    """Parts of up to 4.1e11 pixels each merge exactly, in any order and grouping."""
    parts = [moments_of_groups([g]) for g in gs]
    rnd.shuffle(parts)
    merged = merge_moments(parts, 1)
    # any grouping (a tree of partial merges) gives the same integers
    cut = rnd.randint(0, len(parts))
    tree = merge_moments([merge_moments(parts[:cut], 1), merge_moments(parts[cut:], 1)], 1)
    assert merged == tree == moments_of_groups(gs)
    mean, std = merged.mean_std()
    m, var = exact(gs)
    assert mean[0] == float(m)  # correctly rounded
    assert np.isfinite(std[0])
    assert math.isclose(std[0], math.sqrt(var), rel_tol=4e-16, abs_tol=1e-300)
    assert BandMoments.from_json(merged.to_json()) == merged


def test_extreme_values_at_full_scale():
    """Half the pixels at +32767 and half at -32767, 4.1e11 pixels: std is exactly 32767."""
    half = FULL_SCALE_PX // 2
    big = moments_of_groups([(32767, half), (-32767, half)])
    assert big.total_sq[0] > 2**63  # would overflow int64
    mean, std = merge_moments([big] * 3, 1).mean_std()
    assert mean[0] == 0.0 and std[0] == 32767.0
    # a constant band of 4.1e11 pixels: std exactly 0, mean exact
    mean, std = moments_of_groups([(-32767, FULL_SCALE_PX)]).mean_std()
    assert mean[0] == -32767.0 and std[0] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_moments_of_block_matches_python_integers(n_bands, n_px, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(-32768, 32768, size=(n_bands, n_px), dtype=np.int64).astype(np.int16)
    data[:, rng.random(n_px) < 0.3] = NODATA
    m = moments_of(data, nodata=NODATA)
    for b in range(n_bands):
        vals = [int(v) for v in data[b] if v != NODATA]
        assert m.count[b] == len(vals)
        assert m.total[b] == sum(vals)
        assert m.total_sq[b] == sum(v * v for v in vals)
    mean, std = m.mean_std()
    for b in range(n_bands):
        vals = data[b][data[b] != NODATA].astype(np.float64)
        if len(vals):
            assert math.isclose(mean[b], vals.mean(), rel_tol=1e-12, abs_tol=1e-9)
            assert math.isclose(std[b], vals.std(), rel_tol=1e-9, abs_tol=1e-9)
        else:
            assert np.isnan(mean[b]) and np.isnan(std[b])


def test_block_larger_than_one_float64_piece_is_exact():
    """A block of more than 2**22 pixels per band is summed in exact pieces."""
    n = 2**22 + 1000
    data = np.full((1, n), 32767, dtype=np.int16)
    data[0, ::7] = -32767
    m = moments_of(data, nodata=NODATA)
    k = len(range(0, n, 7))
    assert m.count == (n,)
    assert m.total == (32767 * (n - k) - 32767 * k,)
    assert m.total_sq == (32767 * 32767 * n,)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="2 and 3 bands"):
        BandMoments.zeros(2) + BandMoments.zeros(3)
    with pytest.raises(ValueError, match="3 bands into 2"):
        merge_moments([BandMoments.zeros(3)], 2)
    with pytest.raises(TypeError, match="integer pixels"):
        moments_of(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="band 0: inconsistent"):
        BandMoments((2,), (10,), (1,)).mean_std()
    mean, std = merge_moments([], 3).mean_std()
    assert np.isnan(mean).all() and np.isnan(std).all()


def test_batched_merge_equals_pairwise_addition():
    """The batched merge of many task results equals pairwise addition."""
    rnd = random.Random(3)
    parts = [BandMoments(*(tuple(rnd.randrange(0, 2**40) for _ in range(202)) for _ in range(3))) for _ in range(300)]
    pair = parts[0]
    for p in parts[1:]:
        pair = pair + p
    assert merge_moments(parts, 202) == pair
