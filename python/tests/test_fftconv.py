"""fftconv / FftConvPlan against numpy's FFT in float64, gradients against torch autograd and gradcheck."""
import numpy as np
import pytest

import tensorzip as tz


def conv_ref(u, k, causal=True, mask=None):
    """float64 reference: irfft(rfft(u) * rfft(k)) over 2N (causal, cut to N) or N (circular)."""
    n = u.shape[-1]
    size = 2 * n if causal else n
    kf = np.fft.rfft(k.astype(np.float64), n=size)
    if mask is not None:
        keep = np.repeat(np.asarray(mask, dtype=bool), 64)[: kf.shape[-1]]
        kf = kf * keep
    return np.fft.irfft(np.fft.rfft(u.astype(np.float64), n=size) * kf, n=size)[..., :n]


def rel_err(got, want):
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("b,h,n,nk", [(2, 3, 8, 8), (1, 7, 1024, 1024), (3, 16, 4096, 100), (2, 5, 256, 1)])
@pytest.mark.parametrize("causal", [True, False])
def test_fftconv_matches_float64_fft(rng, b, h, n, nk, causal):
    u = rng.standard_normal((b, h, n), dtype=np.float32)
    k = rng.standard_normal((h, nk), dtype=np.float32) / np.sqrt(nk)
    y = tz.fftconv(u, k, causal=causal)
    assert y.dtype == np.float32 and y.shape == u.shape
    assert rel_err(y, conv_ref(u, k, causal)) < 1e-5


def test_two_dimensional_input_is_one_batch_row(rng):
    u = rng.standard_normal((4, 64), dtype=np.float32)
    k = rng.standard_normal((4, 64), dtype=np.float32)
    np.testing.assert_array_equal(tz.fftconv(u, k), tz.fftconv(u[None], k)[0])


def test_gated_conv(rng):
    b, h, n = 2, 6, 512
    u, pre, post = (rng.standard_normal((b, h, n), dtype=np.float32) for _ in range(3))
    k = rng.standard_normal((h, n), dtype=np.float32) / np.sqrt(n)
    y = tz.fftconv(u, k, gate=(pre, post))
    assert rel_err(y, post * conv_ref(u * pre, k)) < 1e-5


def test_frequency_mask(rng):
    b, h, n = 1, 4, 1024
    u = rng.standard_normal((b, h, n), dtype=np.float32)
    k = rng.standard_normal((h, n), dtype=np.float32) / np.sqrt(n)
    blocks = (n + 1 + 63) // 64  # causal: bins 0..N of the 2N-point transform
    mask = (np.arange(blocks) % 3 != 1).astype(np.uint8)
    y = tz.fftconv(u, k, freq_mask=mask)
    assert rel_err(y, conv_ref(u, k, True, mask)) < 1e-5
    with pytest.raises(tz.Error, match="freq_mask needs"):
        tz.fftconv(u, k, freq_mask=mask[:-1])


def test_plan_is_reusable_and_describes_itself(rng):
    k = rng.standard_normal((8, 2048), dtype=np.float32)
    p = tz.FftConvPlan(2048, k)
    assert (p.n, p.h, p.filter_length, p.causal) == (2048, 8, 2048, True)
    assert isinstance(p.kernel, str) and p.kernel
    for _ in range(2):
        u = rng.standard_normal((3, 8, 2048), dtype=np.float32)
        assert rel_err(p.conv(u), conv_ref(u, k)) < 1e-5


def test_backward_matches_float64_gradients(rng):
    b, h, n, nk = 3, 5, 256, 200
    u = rng.standard_normal((b, h, n), dtype=np.float32)
    k = rng.standard_normal((h, nk), dtype=np.float32) / np.sqrt(nk)
    dy = rng.standard_normal((b, h, n), dtype=np.float32)
    du, dk = tz.fftconv_backward(u, k, dy)
    # y[t] = sum_s u[t-s] k[s]: du[j] = sum_t dy[t] k[t-j], dk[s] = sum_{b,t} dy[t] u[t-s]
    du_ref = np.zeros((b, h, n))
    dk_ref = np.zeros((h, nk))
    for s in range(nk):
        du_ref[..., : n - s] += dy[..., s:].astype(np.float64) * k[None, :, s : s + 1]
        dk_ref[:, s] = np.sum(dy[..., s:].astype(np.float64) * u[..., : n - s], axis=(0, 2))
    assert rel_err(du, du_ref) < 1e-5
    assert rel_err(dk, dk_ref) < 1e-5


def test_bf16_and_f16_inputs(rng):
    torch = pytest.importorskip("torch")
    u = torch.randn(2, 4, 1024)
    k = torch.randn(4, 1024) / 32
    want = conv_ref(u.bfloat16().float().numpy(), k.numpy())
    y = tz.fftconv(u.bfloat16(), k)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert rel_err(y.numpy(), want) < 1e-2  # the filter may be rounded to bf16 on AMX
    y16 = tz.fftconv(u.half().numpy(), k.numpy())
    assert rel_err(y16, conv_ref(u.half().float().numpy(), k.numpy())) < 1e-5


def test_bad_arguments_are_clear_errors(rng):
    u = rng.standard_normal((2, 4, 64), dtype=np.float32)
    k = rng.standard_normal((4, 64), dtype=np.float32)
    with pytest.raises(TypeError, match="u: expected a numpy array or a torch tensor, got list"):
        tz.fftconv(u.tolist(), k)
    with pytest.raises(ValueError, match="not C-contiguous"):
        tz.fftconv(np.swapaxes(u, 0, 1), k)
    with pytest.raises(ValueError, match="H, the filters' rows"):
        tz.fftconv(u, k[:3])
    with pytest.raises(tz.Error):
        tz.fftconv(u[..., :48].copy(), k[:, :48].copy())  # not a power of two
    with pytest.raises(TypeError, match="float"):
        tz.fftconv(u.astype(np.int32), k)
    with pytest.raises(tz.Error):
        tz.fftconv(u, np.full((4, 64), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="pregate, postgate"):
        tz.fftconv(u, k, gate=(u,))
