#!/usr/bin/env python3
"""A Hyena-style language model trained a few steps on CPU twice from the same initialization: once
with tensorzip.torch.FlashFFTConv for the long convolutions, once with the torch.fft convolution.
The two loss curves must agree (the script exits non-zero if they differ by more than --tol).

Each block: input projection to (v, x1, x2), a short depthwise causal convolution, the gated long
convolution  y = x2 * conv(x1 * v, k)  with an implicit filter k (a small MLP over positions times
an exponential decay, as in Hyena), an output projection and a residual. Data: the bytes of a text
file (default: ../shared/models/eval-text/tinystories_valid_head.txt when present, else random bytes).

    /usr/bin/python3 examples/python/hyena_block.py [--steps 20] [--seqlen 1024] [--text FILE]
"""
import argparse
import copy
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import tensorzip.torch as tzt


class ImplicitFilter(nn.Module):
    """k[h, t] = MLP(positional features of t)[h] * exp(-decay_h * t)."""

    def __init__(self, d_model, seqlen, emb=16, hidden=32):
        super().__init__()
        t = torch.linspace(0, 1, seqlen)[:, None]
        freqs = torch.arange(1, emb // 2 + 1)[None, :] * math.pi
        self.register_buffer("pos", torch.cat([torch.sin(freqs * t), torch.cos(freqs * t)], dim=1))  # (L, emb)
        self.mlp = nn.Sequential(nn.Linear(emb, hidden), nn.SiLU(), nn.Linear(hidden, d_model))
        self.register_buffer("decay", torch.exp(-torch.linspace(0.5, 4, d_model)[:, None] * t.T * 10))  # (H, L)

    def forward(self):
        return self.mlp(self.pos).T * self.decay  # (H, L)


class HyenaBlock(nn.Module):
    def __init__(self, d_model, seqlen, long_conv):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.short = nn.Conv1d(3 * d_model, 3 * d_model, kernel_size=3, padding=2, groups=3 * d_model)
        self.filter = ImplicitFilter(d_model, seqlen)
        self.out_proj = nn.Linear(d_model, d_model)
        self.long_conv = long_conv  # (u, k, pregate, postgate) -> postgate * conv(pregate * u, k)

    def forward(self, x):  # x (B, L, D)
        length = x.shape[1]
        z = self.in_proj(self.norm(x)).transpose(1, 2)  # (B, 3D, L)
        z = self.short(z)[..., :length]  # causal: drop the right padding
        v, x1, x2 = z.chunk(3, dim=1)
        y = self.long_conv(v.contiguous(), self.filter(), x1.contiguous(), x2.contiguous())
        return x + self.out_proj(y.transpose(1, 2))


class HyenaLM(nn.Module):
    def __init__(self, long_conv, d_model=64, seqlen=1024, layers=2, vocab=256):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList([HyenaBlock(d_model, seqlen, long_conv) for _ in range(layers)])
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seqlen", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--tol", type=float, default=1e-3, help="largest relative difference of the two loss curves")
    default_text = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "models", "eval-text", "tinystories_valid_head.txt")
    ap.add_argument("--text", default=default_text)
    a = ap.parse_args()

    torch.manual_seed(0)
    if os.path.exists(a.text):
        data = torch.frombuffer(bytearray(open(a.text, "rb").read()), dtype=torch.uint8).long()
        source = a.text
    else:
        data = torch.randint(0, 256, (200000,))
        source = "random bytes"
    batches = []
    for s in range(a.steps):
        starts = torch.randint(0, len(data) - a.seqlen - 1, (a.batch,))
        batches.append(torch.stack([data[i : i + a.seqlen + 1] for i in starts.tolist()]))

    flash = tzt.FlashFFTConv(2 * a.seqlen)
    fft_size = 2 * a.seqlen
    convs = {
        "tensorzip FlashFFTConv": lambda u, k, pre, post: flash(u, k, pre, post),
        "torch.fft": lambda u, k, pre, post: tzt.fftconv_reference(u, k, fft_size, pre, post),
    }
    base = HyenaLM(None, a.d_model, a.seqlen)
    curves, times = {}, {}
    for name, conv in convs.items():
        model = copy.deepcopy(base)
        for b in model.blocks:
            b.long_conv = conv
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
        losses = []
        t0 = time.perf_counter()
        for ids in batches:
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        times[name] = time.perf_counter() - t0
        curves[name] = losses

    names = list(convs)
    print(f"Hyena LM, {len(base.blocks)} blocks, d_model {a.d_model}, seqlen {a.seqlen}, batch {a.batch}, data: {source}")
    print(f"{'step':>4}  {names[0]:>24}  {names[1]:>12}  rel diff")
    worst = 0.0
    for i, (x, y) in enumerate(zip(curves[names[0]], curves[names[1]])):
        d = abs(x - y) / abs(y)
        worst = max(worst, d)
        print(f"{i:4d}  {x:24.6f}  {y:12.6f}  {d:.2e}")
    for n in names:
        print(f"{n}: {times[n]:.2f} s for {a.steps} steps (whole model, forward + backward + AdamW)")
    print(f"largest relative difference of the loss curves: {worst:.2e} (tolerance {a.tol:g})")
    dropped = curves[names[0]][0] - min(curves[names[0]][-3:])
    if worst > a.tol or not dropped > 0:
        print("FAILED: the curves differ or the loss did not drop", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
