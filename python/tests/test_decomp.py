"""Decompositions against numpy.linalg and exact low-rank constructions."""
import numpy as np
import pytest

import tensorzip as tz


def low_rank(rng, m, n, r, noise=0.0, dtype=np.float64):
    a = rng.standard_normal((m, r)) @ rng.standard_normal((r, n)) + noise * rng.standard_normal((m, n))
    return a.astype(dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_svd_truncated_matches_numpy(rng, dtype, tol):
    a = rng.standard_normal((70, 45)).astype(dtype)
    u, s, vt = tz.svd_truncated(a, rank=10)
    assert u.dtype == dtype and u.shape == (70, 10) and s.shape == (10,) and vt.shape == (10, 45)
    s_np = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, s_np[:10], rtol=tol)
    best = np.sqrt(np.sum(s_np[10:] ** 2))
    assert np.linalg.norm(a - (u * s) @ vt) <= best * (1 + 10 * tol)
    u_e, s_e, _ = tz.svd_truncated(a, energy=1.0)
    assert len(s_e) == 45


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_svd_randomized_is_near_optimal(rng, dtype):
    a = low_rank(rng, 300, 200, 20, noise=1e-3, dtype=dtype)
    u, s, vt = tz.svd_randomized(a, rank=20)
    s_np = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, s_np[:20], rtol=1e-4)
    best = np.sqrt(np.sum(s_np[20:] ** 2))
    assert np.linalg.norm(a - (u * s) @ vt) <= best * 1.01
    if dtype == np.float32:
        # bf16 range finder: the subspace is found to bf16 precision, which is within 1% of optimal
        # when the tail is more than bf16 rounding of the matrix (as in trained weights).
        a = low_rank(rng, 300, 200, 20, noise=0.5, dtype=dtype)
        best = np.sqrt(np.sum(np.linalg.svd(a.astype(np.float64), compute_uv=False)[20:] ** 2))
        u2, s2, vt2 = tz.svd_randomized(a, rank=20, bf16_range=True)
        assert np.linalg.norm(a - (u2 * s2) @ vt2) <= best * 1.01


def test_svd_weighted_with_unit_weights_is_the_svd(rng):
    a = rng.standard_normal((30, 20))
    u, s, vt = tz.svd_weighted(a, 5, row_w=np.ones(30), col_w=np.ones(20))
    np.testing.assert_allclose(s, np.linalg.svd(a, compute_uv=False)[:5], rtol=1e-10)
    cw = np.linspace(0.1, 5, 20)
    u, s, vt = tz.svd_weighted(a, 5, col_w=cw)
    u2, s2, vt2 = tz.svd_truncated(a * cw, rank=5)
    np.testing.assert_allclose(((u * s) @ vt) * cw, (u2 * s2) @ vt2, atol=1e-10)


def test_tucker_recovers_a_low_multilinear_rank_tensor(rng):
    core = rng.standard_normal((3, 4, 2))
    us = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in [(10, 3), (12, 4), (9, 2)]]
    t = np.einsum("abc,ia,jb,kc->ijk", core, *us)
    g, fs = tz.tucker(t, [3, 4, 2])
    assert g.shape == (3, 4, 2) and [f.shape for f in fs] == [(10, 3), (12, 4), (9, 2)]
    rec = np.einsum("abc,ia,jb,kc->ijk", g, *fs)
    assert np.linalg.norm(rec - t) / np.linalg.norm(t) < 1e-10


def test_cp_recovers_a_rank_3_tensor(rng):
    fs = [rng.standard_normal((n, 3)) for n in (8, 9, 10)]
    t = np.einsum("ir,jr,kr->ijk", *fs)
    w, got = tz.cp(t, 3)
    rec = np.einsum("r,ir,jr,kr->ijk", w, *got)
    assert np.linalg.norm(rec - t) / np.linalg.norm(t) < 1e-6


def test_tensor_train_reconstructs_and_bounds_ranks(rng):
    t = rng.standard_normal((4, 5, 6, 3))
    cores = tz.tensor_train(t, max_rank=100)
    rec = cores[0]
    for c in cores[1:]:
        rec = np.tensordot(rec, c, axes=1)
    assert np.allclose(rec.reshape(t.shape), t, atol=1e-10)
    small = tz.tensor_train(t.astype(np.float32), max_rank=2)
    assert all(c.shape[0] <= 2 and c.shape[2] <= 2 for c in small) and small[0].dtype == np.float32


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="exactly one"):
        tz.svd_truncated(np.ones((4, 4)))
    with pytest.raises(ValueError, match="rank"):
        tz.svd_randomized(np.ones((4, 4)), rank=0)
    with pytest.raises(tz.Error):
        tz.svd_truncated(np.ones((4, 4)), rank=5)
    with pytest.raises(ValueError, match="order 3 to 6"):
        tz.tucker(np.ones((4, 4)), [2, 2])
    with pytest.raises(ValueError, match="one per mode"):
        tz.tucker(np.ones((4, 4, 4)), [2, 2])
    with pytest.raises(TypeError, match="float32 or float64"):
        tz.svd_truncated(np.ones((4, 4), np.int32), rank=2)
    with pytest.raises(tz.Error):
        tz.svd_truncated(np.full((4, 4), np.nan), rank=2)
