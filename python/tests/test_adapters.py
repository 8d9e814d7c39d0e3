"""AdapterBank against per-row numpy LoRA, fused and looped, f32 and bf16 storage."""
import numpy as np
import pytest

import tensorzip as tz


def make(rng, out, inp, ranks):
    return [(rng.standard_normal((r, inp), dtype=np.float32) / 8, rng.standard_normal((out, r), dtype=np.float32) / 8, 2.0 * r)
            for r in ranks]


def reference(x, ids, adapters):
    y = np.zeros((x.shape[0], adapters[0][1].shape[0]))
    for t, i in enumerate(ids):
        if i >= 0:
            a, b, alpha = adapters[i]
            y[t] = (alpha / a.shape[0]) * (b.astype(np.float64) @ (a.astype(np.float64) @ x[t]))
    return y


@pytest.mark.parametrize("storage,tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_fused_and_loop_match_per_row_lora(rng, storage, tol):
    out, inp = 96, 130
    adapters = make(rng, out, inp, [4, 8, 16])
    bank = tz.AdapterBank(out, inp, storage=storage)
    assert [bank.add(a, b, alpha) for a, b, alpha in adapters] == [0, 1, 2]
    x = rng.standard_normal((11, inp), dtype=np.float32)
    ids = np.array([0, 2, -1, 1, 1, 0, 2, 2, -1, 0, 1], dtype=np.int32)
    want = reference(x, ids, adapters)
    for got in (bank.apply(x, ids), bank.apply_loop(x, ids)):
        assert np.max(np.abs(got - want)) <= tol * np.max(np.abs(want))
    y = np.ones((11, out), np.float32)
    bank.apply(x, list(ids), y=y)  # added in place
    assert np.max(np.abs(y - 1 - want)) <= tol * np.max(np.abs(want)) + 1e-6


def test_apply_with_base_and_remove(rng):
    out, inp = 64, 256
    w = rng.standard_normal((out, inp), dtype=np.float32)
    lw = tz.LutWeights(tz.quantize(w, bits=4, group=128))
    adapters = make(rng, out, inp, [8, 8])
    bank = tz.AdapterBank(out, inp)
    for a, b, alpha in adapters:
        bank.add(a, b, alpha)
    x = rng.standard_normal((5, inp), dtype=np.float32)
    ids = np.array([1, 0, -1, 1, 0], np.int32)
    want = tz.mpgemm(x, lw) + bank.apply(x, ids)
    got = bank.apply_with_base(lw, x, ids)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    bank.remove(0)
    assert len(bank) == 2
    np.testing.assert_allclose(bank.apply(x, [1, -1, -1, 1, -1]), reference(x, [1, -1, -1, 1, -1], adapters), atol=1e-5)
    with pytest.raises(tz.Error):
        bank.apply(x, ids)  # names the removed adapter


def test_bad_arguments(rng):
    bank = tz.AdapterBank(8, 16)
    with pytest.raises(ValueError, match="lora_A"):
        bank.add(np.ones((2, 15), np.float32), np.ones((8, 2), np.float32), 1.0)
    with pytest.raises(ValueError, match="the rank"):
        bank.add(np.ones((2, 16), np.float32), np.ones((8, 3), np.float32), 1.0)
    bank.add(np.ones((2, 16), np.float32), np.ones((8, 2), np.float32), 1.0)
    with pytest.raises(ValueError, match="one id per row"):
        bank.apply(np.ones((3, 16), np.float32), [0, 0])
    with pytest.raises(ValueError, match="read-only"):
        y = np.zeros((1, 8), np.float32)
        y.setflags(write=False)
        bank.apply(np.ones((1, 16), np.float32), [0], y=y)
    with pytest.raises(tz.Error):
        bank.apply(np.ones((1, 16), np.float32), [5])
