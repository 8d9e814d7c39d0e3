"""tensorzip.torch: FlashFFTConv against the torch.fft convolution (values, autograd, gradcheck), LutLinear."""
import pytest

torch = pytest.importorskip("torch")

import tensorzip as tz  # noqa: E402
import tensorzip.torch as tzt  # noqa: E402


def close(a, b, tol):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max()) < tol


@pytest.mark.parametrize("length,fft_size", [(512, 1024), (300, 1024), (256, 256)])
def test_flashfftconv_matches_torch_fft(length, fft_size):
    torch.manual_seed(0)
    conv = tzt.FlashFFTConv(fft_size)
    u = torch.randn(2, 8, length)
    k = torch.randn(8, length) / length**0.5
    assert close(conv(u, k), tzt.fftconv_reference(u.double(), k.double(), fft_size), 1e-5)


def test_flashfftconv_gradients_match_torch_autograd():
    torch.manual_seed(1)
    length = 256
    conv = tzt.FlashFFTConv(2 * length)
    u = torch.randn(3, 4, length, requires_grad=True)
    k = (torch.randn(4, length) / 16).requires_grad_()
    pre = torch.randn(3, 4, length, requires_grad=True)
    post = torch.randn(3, 4, length, requires_grad=True)
    dy = torch.randn(3, 4, length)
    for gates in [(), (pre, post)]:
        ours = torch.autograd.grad((conv(u, k, *gates) * dy).sum(), [u, k, *gates])
        ref_in = [t.detach().double().requires_grad_() for t in (u, k, *gates)]
        y_ref = tzt.fftconv_reference(ref_in[0], ref_in[1], 2 * length, *ref_in[2:])
        theirs = torch.autograd.grad((y_ref * dy.double()).sum(), ref_in)
        for a, b in zip(ours, theirs):
            assert close(a, b, 1e-5)


@pytest.mark.parametrize("gated", [False, True])
def test_flashfftconv_gradcheck(gated):
    # float64 leaves through tensorzip's float32 kernels: finite differences with eps 1e-3 agree
    # with the analytic backward to about 1e-4 of the gradient's size.
    torch.manual_seed(2)
    conv = tzt.FlashFFTConv(32)
    args = [torch.randn(1, 2, 16, dtype=torch.float64, requires_grad=True), torch.randn(2, 16, dtype=torch.float64, requires_grad=True)]
    if gated:
        args += [torch.randn(1, 2, 16, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(conv, args, eps=1e-3, atol=2e-3, rtol=2e-3)


def test_flashfftconv_bf16_keeps_dtype():
    conv = tzt.FlashFFTConv(2048, dtype=torch.bfloat16)
    u = torch.randn(2, 16, 1024).bfloat16()
    k = torch.randn(16, 1024) / 32
    y = conv(u, k)
    assert y.dtype == torch.bfloat16
    assert close(y.float(), tzt.fftconv_reference(u.double(), k.double(), 2048), 2e-2)


def test_flashfftconv_rejects_bad_shapes():
    conv = tzt.FlashFFTConv(64)
    with pytest.raises(ValueError, match="neither"):
        conv(torch.randn(1, 2, 48), torch.randn(2, 48))
    with pytest.raises(ValueError, match=r"\(H, Lk\)"):
        conv(torch.randn(1, 2, 32), torch.randn(3, 32))
    with pytest.raises(ValueError, match="power of two"):
        tzt.FlashFFTConv(100)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_lutlinear_matches_linear_on_dequantized_weights(batch):
    torch.manual_seed(3)
    lin = torch.nn.Linear(256, 96)
    q = tzt.LutLinear.from_linear(lin, bits=4, group=64)
    deq = torch.from_numpy(q.quantized.dequantize())
    x = torch.randn(batch, 256)
    want = x @ deq.T + lin.bias.detach()
    got = q(x)
    assert got.shape == (batch, 96) and not got.requires_grad
    assert close(got, want, 2e-2)  # int8 tables (fast mode)
    assert close(got, lin(x).detach(), 0.15)  # 4-bit weights
    x3 = torch.randn(2, 3, 256)
    assert q(x3).shape == (2, 3, 96)
    assert q(x3.bfloat16()).dtype == torch.bfloat16


def test_lutlinear_gptq_from_calibration():
    torch.manual_seed(4)
    lin = torch.nn.Linear(128, 64, bias=False)
    x = torch.randn(512, 128) * torch.linspace(0.1, 3, 128)
    rtn = tzt.LutLinear.from_linear(lin, bits=3, group=32)
    gptq = tzt.LutLinear.from_linear(lin, bits=3, group=32, method="gptq", x=x)
    ref = lin(x).detach()
    err = lambda m: float((m(x) - ref).norm() / ref.norm())  # noqa: E731
    assert err(gptq) < err(rtn)
