"""tensorzip: tensor math computed directly on compressed and structured weights, on CPUs.

numpy arrays and CPU torch tensors go in without a copy (C-contiguous, of the dtype asked for);
results come back as numpy arrays, or as torch tensors when the first array argument was one.
Every kernel call releases the GIL. Errors in arguments or files raise tensorzip.Error (a
ValueError), TypeError or ValueError naming the argument.

    fftconv, fftconv_backward, FftConvPlan      long convolution through the FFT (FlashFFTConv)
    quantize, Quantized, LutWeights, mpgemm     low-bit weights and the LUT / int8 matmul
    svd_truncated, svd_randomized, svd_weighted, tucker, cp, tensor_train
    AdapterBank                                 many LoRA adapters in one batch (S-LoRA)
    Model, compress                             LLaMA-family models: run, score, compress
    set_num_threads, num_threads, cpu_info
    tensorzip.torch                             FlashFFTConv and LutLinear torch modules (import it)

See docs/python.md.
"""
from ._tensorzip import (  # noqa: F401
    AdapterBank,
    Error,
    FftConvPlan,
    LutWeights,
    Model,
    Quantized,
    __version__,
    compress,
    cp,
    cpu_info,
    fftconv,
    fftconv_backward,
    hardware_threads,
    mpgemm,
    num_threads,
    quantize,
    set_num_threads,
    svd_randomized,
    svd_truncated,
    svd_weighted,
    tensor_train,
    tucker,
)


def __getattr__(name):
    # `tensorzip.torch` is imported on first use: importing tensorzip does not import torch.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'tensorzip' has no attribute {name!r}")
