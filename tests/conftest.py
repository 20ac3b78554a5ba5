"""Shared fixtures: small real images, the ../shared data (skipped without it, required in CI)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Nothing is downloaded in tests: without this a hub request spends ~47 s on retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing, and CI=true requires it")
        pytest.skip(f"{path} is absent (the shared data lives beside the repository)")
    return path


@pytest.fixture(scope="session")
def utk_dir() -> Path:
    """../shared/data/utkface-dev: 2,925 real face crops, labels in the file names."""
    return _shared("data/utkface-dev")


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    """../shared/fixtures/photos: 5 real photographs with one face each."""
    return _shared("fixtures/photos")


@pytest.fixture(scope="session")
def example_photos() -> Path:
    """examples/photos: the 5 CC BY 4.0 photographs bundled with alface (one face each)."""
    return Path(__file__).resolve().parent.parent / "examples" / "photos"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut: one real face, 512 x 512 RGB uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def dirichlet_probs(n: int, c: int, seed: int = 0, alpha: float = 1.0) -> np.ndarray:
    """``n`` x ``c`` float32 softmax-like rows drawn from a Dirichlet."""
    return np.random.default_rng(seed).dirichlet([alpha] * c, size=n).astype(np.float32)


def interrupt_after(calls: int) -> Callable[..., None]:
    """A progress callback that raises KeyboardInterrupt (a user's Ctrl-C) on call ``calls``."""
    seen = []

    def progress(n: int = 1, **fields: object) -> None:
        seen.append(n)
        if len(seen) == calls:
            raise KeyboardInterrupt

    return progress
