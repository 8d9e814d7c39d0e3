"""torch modules on tensorzip's kernels (CPU).

    FlashFFTConv(seqlen, dtype)       FlashFFTConv's module: conv(u, k[, pregate, postgate]), with autograd
    LutLinear.from_linear(linear, bits=4, group=128)   an nn.Linear on low-bit LUT weights (inference)
    fftconv_reference(u, k, fft_size) the torch.fft convolution FlashFFTConv is measured against
"""
from typing import Optional

import torch
import torch.nn.functional as F

from . import _tensorzip as _tz

__all__ = ["FlashFFTConv", "LutLinear", "fftconv_reference"]


class _FftConvFn(torch.autograd.Function):
    """y = postgate * conv(pregate * u, k) over length n = u.shape[-1]; the plan (the filters'
    spectra) built in forward is reused by backward."""

    @staticmethod
    def forward(ctx, u, k, pregate, postgate, causal):
        plan = _tz.FftConvPlan(u.shape[-1], k.detach().contiguous(), causal=causal, bf16=u.dtype == torch.bfloat16)
        ud = u.detach().contiguous()
        if pregate is not None:
            y = plan.conv(ud, pregate.detach().contiguous(), postgate.detach().contiguous())
        else:
            y = plan.conv(ud)
        ctx.plan = plan
        ctx.k_dtype = k.dtype
        ctx.save_for_backward(u, pregate, postgate)
        return y if u.dtype == torch.float32 else y.to(u.dtype)

    @staticmethod
    def backward(ctx, dy):
        u, pregate, postgate = ctx.saved_tensors
        ud, dy = u.detach().contiguous(), dy.contiguous()
        dpre = dpost = None
        if pregate is not None:
            du, dk, dpre, dpost = ctx.plan.backward(ud, dy, pregate.detach().contiguous(), postgate.detach().contiguous())
            dpre, dpost = dpre.to(pregate.dtype), dpost.to(postgate.dtype)
        else:
            du, dk = ctx.plan.backward(ud, dy, need_du=ctx.needs_input_grad[0])
        if du is not None:
            du = du.to(u.dtype)
        return du, dk.to(ctx.k_dtype), dpre, dpost, None


class FlashFFTConv(torch.nn.Module):
    """FlashFFTConv's interface on tensorzip's CPU kernels.

    FlashFFTConv(seqlen, dtype): seqlen is the FFT size, a power of two >= 16. forward(u, k,
    pregate=None, postgate=None) with u (B, H, L) and k (H, Lk) returns
    postgate * irfft(rfft(pregate * u, seqlen) * rfft(k, seqlen))[..., :L]:
      L <= seqlen / 2   causal (linear) convolution, u implicitly zero-padded (the usual case: seqlen = 2 L)
      L == seqlen       circular convolution of period L
    Lk <= seqlen / 2 (causal) or <= L (circular). Gradients flow to u, k and the gates through
    tensorzip's backward. The output has u's dtype; float32, bfloat16 and float16 inputs are
    taken (bfloat16 without gates runs the bf16 kernels: AMX where present, else f32 on load).
    """

    def __init__(self, seqlen: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        if seqlen < 16 or seqlen & (seqlen - 1):
            raise ValueError(f"FlashFFTConv: seqlen (the FFT size) must be a power of two >= 16, got {seqlen}")
        self.seqlen = seqlen
        self.dtype = dtype

    def extra_repr(self):
        return f"seqlen={self.seqlen}, dtype={self.dtype}"

    def forward(self, u, k, pregate=None, postgate=None):
        if u.dim() != 3:
            raise ValueError(f"FlashFFTConv: u must be (B, H, L), got shape {tuple(u.shape)}")
        if k.dim() != 2 or k.shape[0] != u.shape[1]:
            raise ValueError(f"FlashFFTConv: k must be (H, Lk) with H = {u.shape[1]}, got shape {tuple(k.shape)}")
        if (pregate is None) != (postgate is None):
            # one gate alone: the other is 1
            ones = torch.ones_like(u)
            pregate = ones if pregate is None else pregate
            postgate = ones if postgate is None else postgate
        for name, g in (("pregate", pregate), ("postgate", postgate)):
            if g is not None and g.shape != u.shape:
                raise ValueError(f"FlashFFTConv: {name} must have u's shape {tuple(u.shape)}, got {tuple(g.shape)}")
        length = u.shape[-1]
        if length == self.seqlen:
            causal, n = False, length
        elif length <= self.seqlen // 2:
            causal, n = True, self.seqlen // 2
        else:
            raise ValueError(
                f"FlashFFTConv: u's length {length} is neither <= seqlen/2 = {self.seqlen // 2} (causal) nor seqlen (circular)"
            )
        if k.shape[-1] > n:
            raise ValueError(f"FlashFFTConv: k has {k.shape[-1]} taps; this FFT size takes at most {n}")
        if length < n:
            pad = n - length
            u = F.pad(u, (0, pad))
            if pregate is not None:
                pregate, postgate = F.pad(pregate, (0, pad)), F.pad(postgate, (0, pad))
        y = _FftConvFn.apply(u, k, pregate, postgate, causal)
        return y[..., :length] if length < n else y


def fftconv_reference(u, k, fft_size, pregate=None, postgate=None):
    """The torch.fft convolution (Hyena / FlashFFTConv's PyTorch baseline):
    postgate * irfft(rfft(pregate * u, n=fft_size) * rfft(k, n=fft_size), n=fft_size)[..., :L]."""
    length = u.shape[-1]
    if pregate is not None:
        u = u * pregate
    y = torch.fft.irfft(torch.fft.rfft(u, n=fft_size) * torch.fft.rfft(k, n=fft_size), n=fft_size)[..., :length]
    return y * postgate if postgate is not None else y


class LutLinear(torch.nn.Module):
    """An nn.Linear whose weight is kept as low-bit codes and multiplied by the LUT / int8 kernels
    (tensorzip.mpgemm), never dequantized. Inference only: the output carries no gradient.

    LutLinear.from_linear(linear, bits=4, group=128, method='rtn', symmetric=True, x=None, **quantize_args)
    (x: calibration inputs (n, in) for method 'awq' / 'gptq'). Inputs of any leading shape, float32
    or bfloat16 (others are converted); the output has the input's dtype.
    """

    def __init__(self, weights: "_tz.LutWeights", bias: Optional[torch.Tensor] = None, quantized: Optional["_tz.Quantized"] = None):
        super().__init__()
        self.weights = weights
        self.quantized = quantized
        self.in_features = weights.cols
        self.out_features = weights.rows
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, bits: int = 4, group: int = 128, method: str = "rtn", symmetric: bool = True,
                    x=None, **quantize_args):
        w = linear.weight.detach().float().contiguous().numpy()
        if x is not None and isinstance(x, torch.Tensor):
            x = x.detach().float().reshape(-1, w.shape[1]).contiguous().numpy()
        q = _tz.quantize(w, bits=bits, group=group, method=method, symmetric=symmetric, x=x, **quantize_args)
        return cls(_tz.LutWeights(q), linear.bias, q)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.weights.format}, bias={self.bias is not None}"

    def forward(self, x):
        lead = x.shape[:-1]
        x2 = x.detach().reshape(-1, self.in_features)
        if x2.dtype not in (torch.float32, torch.bfloat16):
            x2 = x2.float()
        y = _tz.mpgemm(x2.contiguous(), self.weights)
        if self.bias is not None:
            y += self.bias
        y = y.reshape(*lead, self.out_features)
        return y if x.dtype == torch.float32 else y.to(x.dtype)
