import threading

import numpy as np
import pytest

import tensorzip as tz


def test_threads_and_cpu_info():
    info = tz.cpu_info()
    assert info["active_isa"] in ("scalar", "avx2", "avx512", "amx") and isinstance(info["features"], list)
    n = tz.num_threads()
    try:
        tz.set_num_threads(1)
        assert tz.num_threads() == 1
    finally:
        tz.set_num_threads(n)
    with pytest.raises(ValueError):
        tz.set_num_threads(0)
    assert tz.__version__


def test_kernels_release_the_gil(rng):
    # Two Python threads calling a long kernel finish; with the GIL held they would still finish,
    # so also check that a pure-Python counter advanced while a kernel ran.
    a = rng.standard_normal((1500, 1500)).astype(np.float32)
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)

    t = threading.Thread(target=count)
    t.start()
    before = len(ticks)
    tz.svd_truncated(a, rank=10)
    during = len(ticks) - before
    stop.set()
    t.join()
    assert during > 100


def test_torch_is_not_imported_by_tensorzip():
    import subprocess
    import sys

    code = "import sys, tensorzip; assert 'torch' not in sys.modules; import tensorzip.torch; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
