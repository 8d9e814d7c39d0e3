"""quantize / LutWeights / mpgemm against numpy: codes and scales give back the dequantized matrix,
the exact-table product equals x @ dequantize().T, the fast paths stay within their stated error."""
import numpy as np
import pytest

import tensorzip as tz


def max_rel(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("bits,group,symmetric", [(4, 128, True), (2, 64, False), (3, 32, True), (8, 0, False)])
def test_codes_and_scales_reconstruct_the_dequantized_matrix(rng, bits, group, symmetric):
    w = rng.standard_normal((40, 256), dtype=np.float32)
    q = tz.quantize(w, bits=bits, group=group, symmetric=symmetric, scale_dtype="float32")
    assert (q.rows, q.cols, q.bits, q.symmetric) == (40, 256, bits, symmetric)
    g = q.group
    assert q.codes.shape == (40, 256) and q.codes.max() < 2**bits
    levels = q.codes.astype(np.float64).reshape(40, 256 // g, g)
    zero = q.zeros[..., None] if not symmetric else (2**bits - 1) / 2
    deq = (q.scales[..., None] * (levels - zero)).reshape(40, 256)
    np.testing.assert_allclose(q.dequantize(), deq, rtol=1e-6, atol=1e-6)
    step = np.max(np.abs(q.scales))
    assert np.max(np.abs(q.dequantize() - w)) <= step * (0.5 if bits < 8 else 1) + 1e-6


@pytest.mark.parametrize("m,k,n,group", [(7, 4095, 1, 0), (33, 512, 5, 128), (16, 256, 64, 64)])
def test_mpgemm_exact_equals_dequantized_product(rng, m, k, n, group):
    w = rng.standard_normal((m, k), dtype=np.float32)
    x = rng.standard_normal((n, k), dtype=np.float32)
    q = tz.quantize(w, bits=4, group=group)
    lw = tz.LutWeights(q)
    want = x.astype(np.float64) @ q.dequantize().T.astype(np.float64)
    assert max_rel(tz.mpgemm(x, lw, mode="exact"), want) < 1e-5
    assert max_rel(tz.mpgemm(x, lw), want) < 2e-2  # int8 tables / int8 activations
    if group != 0:
        assert max_rel(tz.mpgemm(x, lw, path="int8"), want) < 2e-2
    assert tz.mpgemm(x[0], lw, mode="exact").shape == (m,)


def test_ternary_and_calibrated_methods(rng):
    w = rng.standard_normal((64, 256), dtype=np.float32)
    x = rng.standard_normal((256, 256), dtype=np.float32) * np.linspace(0.05, 4, 256, dtype=np.float32)
    t = tz.quantize(w, method="ternary", group=0)
    assert t.ternary and set(np.unique(t.codes)) <= {0, 1, 2}
    ref = x @ w.T

    def out_err(q):
        lw = tz.LutWeights(q)  # with extras (AWQ scales, low-rank branch) only the fast tables run
        return np.linalg.norm(tz.mpgemm(x, lw, mode="fast" if lw.has_extras else "exact") - ref) / np.linalg.norm(ref)

    rtn = tz.quantize(w, bits=3, group=64)
    gptq = tz.quantize(w, bits=3, group=64, method="gptq", x=x)
    awq = tz.quantize(w, bits=3, group=64, method="awq", x=x)
    assert gptq.method.startswith("gptq") and awq.input_scale is not None
    assert out_err(gptq) < out_err(rtn)
    assert out_err(awq) < out_err(rtn)
    lr = tz.quantize(w, bits=3, group=64, method="gptq", x=x, lowrank=8)
    assert lr.rank == 8 and tz.LutWeights(lr).has_extras
    assert out_err(lr) < out_err(gptq)
    with pytest.raises(ValueError, match="mode='fast'"):
        tz.mpgemm(x, tz.LutWeights(lr), mode="exact")


def test_bf16_activations(rng):
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((32, 512), dtype=np.float32)
    lw = tz.LutWeights(tz.quantize(w, bits=4, group=128))
    x = torch.randn(3, 512)
    y = tz.mpgemm(x.bfloat16(), lw)
    assert isinstance(y, torch.Tensor) and y.shape == (3, 32)
    want = tz.mpgemm(x.bfloat16().float(), lw, mode="exact")
    assert float((y - want).abs().max() / want.abs().max()) < 2e-2


def test_bad_arguments(rng):
    w = rng.standard_normal((8, 64), dtype=np.float32)
    with pytest.raises(tz.Error):
        tz.quantize(w, bits=9)
    with pytest.raises(tz.Error):
        tz.quantize(w, method="gptq")  # needs calibration inputs
    with pytest.raises(ValueError, match="input width"):
        tz.quantize(w, method="gptq", x=np.ones((4, 32), np.float32))
    with pytest.raises(tz.Error):
        tz.quantize(np.full((8, 64), np.nan, np.float32))
    lw = tz.LutWeights(tz.quantize(w, bits=4, group=0))
    with pytest.raises(ValueError, match="input width"):
        tz.mpgemm(np.ones((2, 63), np.float32), lw)
    with pytest.raises(ValueError, match="mode"):
        tz.mpgemm(np.ones((2, 64), np.float32), lw, mode="fastest")
    with pytest.raises(TypeError, match="float32"):
        tz.mpgemm(np.ones((2, 64), np.int64), lw)
