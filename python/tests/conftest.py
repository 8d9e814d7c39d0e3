import os

import numpy as np
import pytest


def shared_dir():
    return os.environ.get("TENSORZIP_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))


@pytest.fixture
def models():
    d = os.path.join(shared_dir(), "models")
    if not os.path.exists(os.path.join(d, "stories260K", "stories260K.bin")):
        pytest.skip(f"{d} not found (the real small models)")
    return d


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
