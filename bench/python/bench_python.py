#!/usr/bin/env python3
"""tensorzip from Python against the baselines its users have, in one process, per thread count:

  fftconv     tensorzip.torch.FlashFFTConv forward / forward+backward vs the torch.fft convolution
              (tensorzip.torch.fftconv_reference, FlashFFTConv's PyTorch baseline), B=8, H=768
  lutlinear   LutLinear 4-bit (group 128) vs nn.Linear f32; batch 1 cycles through enough layers to
              stream weights from DRAM (cold), batch 256 is compute-bound
  svd         tensorzip.svd_randomized vs numpy.linalg.svd (and torch.svd_lowrank, same oversampling)
  overhead    the cost of one small call through the binding

Usage: bench_python.py --threads N [--quick] [--json FILE] [--only fftconv,lutlinear,...]
Reports min and median over repeats and the ratio baseline / tensorzip (>1: tensorzip is faster).
"""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, required=True)
ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
ap.add_argument("--json", help="write the rows here as well")
ap.add_argument("--only", default="fftconv,lutlinear,svd,overhead")
ap.add_argument("--max-n", type=int, default=65536, help="longest fftconv sequence")
args = ap.parse_args()
# BLAS / OpenMP thread counts are read when the libraries load: set them first.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tensorzip as tz  # noqa: E402
import tensorzip.torch as tzt  # noqa: E402

tz.set_num_threads(args.threads)
torch.set_num_threads(args.threads)
rows = []


def timeit(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), float(np.median(ts))


def report(bench, case, ours, base, base_name, extra=""):
    row = dict(bench=bench, case=case, threads=args.threads, tz_min_ms=ours[0] * 1e3, tz_med_ms=ours[1] * 1e3,
               base=base_name, base_min_ms=base[0] * 1e3, base_med_ms=base[1] * 1e3, ratio=base[0] / ours[0], note=extra)
    rows.append(row)
    print(f"| {bench} | {case} | {args.threads} | {row['tz_min_ms']:.3f} / {row['tz_med_ms']:.3f} | {base_name} "
          f"{row['base_min_ms']:.3f} / {row['base_med_ms']:.3f} | {row['ratio']:.2f}x | {extra} |", flush=True)


def bench_fftconv():
    b, h = (2, 64) if args.quick else (8, 768)
    sizes = [1024, 4096] if args.quick else [n for n in (1024, 4096, 16384, 65536) if n <= args.max_n]
    for n in sizes:
        torch.manual_seed(0)
        u = torch.randn(b, h, n)
        k = torch.randn(h, n) / n**0.5
        conv = tzt.FlashFFTConv(2 * n)
        reps = 5 if n <= 16384 else 3
        with torch.no_grad():
            ours = timeit(lambda: conv(u, k), reps)
            base = timeit(lambda: tzt.fftconv_reference(u, k, 2 * n), reps)
        gb = 2 * u.numel() * 4 / 1e9
        report("fftconv fwd", f"B={b} H={h} N={n}", ours, base, "torch.fft", f"{gb / ours[0]:.1f} GB/s u+y")
        if n > (4096 if args.quick else 16384):
            continue  # torch's autograd keeps complex spectra: the 64K backward does not fit beside ours
        uq, kq = u.clone().requires_grad_(), k.clone().requires_grad_()
        dy = torch.randn_like(u)

        def fb(f):
            uq.grad = kq.grad = None
            f(uq, kq).backward(dy)

        ours = timeit(lambda: fb(conv), 3)
        base = timeit(lambda: fb(lambda a, c: tzt.fftconv_reference(a, c, 2 * n)), 3)
        report("fftconv fwd+bwd", f"B={b} H={h} N={n}", ours, base, "torch.fft autograd")
    # gated (Hyena): y = post * conv(pre * u, k)
    n = 4096
    u, pre, post = (torch.randn(b, h, n) for _ in range(3))
    k = torch.randn(h, n) / 64
    conv = tzt.FlashFFTConv(2 * n)
    with torch.no_grad():
        ours = timeit(lambda: conv(u, k, pre, post), 5)
        base = timeit(lambda: tzt.fftconv_reference(u, k, 2 * n, pre, post), 5)
    report("fftconv gated fwd", f"B={b} H={h} N={n}", ours, base, "torch.fft")


def bench_lutlinear():
    d_in, d_out = (1024, 1024) if args.quick else (4096, 4096)
    # Batch 1 streams weights from DRAM: cycle through layers whose f32 weights total far more than
    # the last-level cache (the 4-bit copies: an eighth of that).
    layers = 2 if args.quick else 8
    torch.manual_seed(0)
    lins = [torch.nn.Linear(d_in, d_out, bias=False) for _ in range(layers)]
    luts = [tzt.LutLinear.from_linear(lin, bits=4, group=128) for lin in lins]
    for batch in (1, 256):
        x = torch.randn(batch, d_in)

        def run(mods):
            for m in mods:
                m(x)

        with torch.no_grad():
            reps = 20 if batch == 1 else 5
            ours = timeit(lambda: run(luts), reps, warmup=2)
            base = timeit(lambda: run(lins), reps, warmup=2)
        per = lambda t: t / layers  # noqa: E731
        gflop = 2 * batch * d_in * d_out / 1e9
        report("LutLinear q4g128", f"{d_out}x{d_in} batch {batch}" + (" cold" if batch == 1 else ""), (per(ours[0]), per(ours[1])),
               (per(base[0]), per(base[1])), "nn.Linear f32", f"{gflop / per(ours[0]):.0f} vs {gflop / per(base[0]):.0f} GFLOP/s")


def bench_svd():
    m, n, r = (512, 512, 32) if args.quick else (2048, 2048, 64)
    rng = np.random.default_rng(0)
    # A spectrum that decays like a trained weight's: singular values 1/sqrt(i).
    u0 = np.linalg.qr(rng.standard_normal((m, n)))[0]
    v0 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    a = ((u0 / np.sqrt(np.arange(1, n + 1))) @ v0.T).astype(np.float32)
    ours = timeit(lambda: tz.svd_randomized(a, r), 3)
    base = timeit(lambda: np.linalg.svd(a, full_matrices=False), 1 if not args.quick else 2, warmup=0)
    uu, s, vt = tz.svd_randomized(a, r)
    s_np = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    err = np.linalg.norm(a - (uu * s) @ vt) / np.sqrt(np.sum(s_np[r:] ** 2))
    report("svd", f"{m}x{n} f32 rank {r}", ours, base, "numpy.linalg.svd (full)", f"error {err:.4f}x optimal")
    at = torch.from_numpy(a)
    base = timeit(lambda: torch.svd_lowrank(at, q=r + 10, niter=4), 3)
    report("svd", f"{m}x{n} f32 rank {r}", ours, base, "torch.svd_lowrank (q=r+10, niter=4)")


def bench_overhead():
    x = np.ones((1, 32), np.float32)
    lw = tz.LutWeights(tz.quantize(np.ones((16, 32), np.float32), bits=4, group=32))
    n = 20000

    def loop(fn):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    for name, fn, base_fn, base_name in [
        ("num_threads()", tz.num_threads, os.getpid, "os.getpid()"),
        ("mpgemm 1x32 @ 16x32", lambda: tz.mpgemm(x, lw), lambda: np.dot(x, x.T), "np.dot 1x32 @ 32x1"),
    ]:
        ours = min(loop(fn) for _ in range(3))
        base = min(loop(base_fn) for _ in range(3))
        report("overhead", name, (ours, ours), (base, base), base_name, f"{ours * 1e6:.2f} us per call")


print(f"tensorzip {tz.__version__}, torch {torch.__version__}, numpy {np.__version__}; CPU {tz.cpu_info()['brand']} "
      f"({tz.cpu_info()['active_isa']}), {args.threads} thread(s)")
print("| bench | case | threads | tensorzip ms min / med | baseline ms min / med | baseline / tensorzip | note |")
print("|---|---|---|---|---|---|---|")
for name in args.only.split(","):
    globals()["bench_" + name]()
if args.json:
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
sys.exit(0)
