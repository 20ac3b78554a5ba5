import numpy as np
import pytest
from PIL import Image

from alface.faces.variants import (
    VariantError,
    VariantStrength,
    check_strength,
    near_copies,
    near_copy,
    redundant_pool,
)


def test_near_copies_are_close_different_and_reproducible(astronaut):
    face = np.ascontiguousarray(astronaut[20:240, 150:370])
    copies = near_copies(face, 3, np.random.default_rng(0))
    again = near_copies(face, 3, np.random.default_rng(0))
    assert all(c.shape == face.shape and c.dtype == np.uint8 for c in copies)
    assert all(np.array_equal(a, b) for a, b in zip(copies, again, strict=True))
    for c in copies:
        diff = np.abs(c.astype(int) - face.astype(int)).mean()
        assert 1 < diff < 40  # changed, yet the same picture (another crop differs by ~60)
    other = astronaut[280:500, 100:320].astype(int)
    assert np.abs(other - face.astype(int)).mean() > 40


def test_no_change_at_zero_strength_but_jpeg(astronaut):
    face = np.ascontiguousarray(astronaut[20:240, 150:370])
    still = VariantStrength(shift=0, scale=0, brightness=0, blur=0, jpeg=(100, 100))
    c = near_copy(face, np.random.default_rng(0), still)
    assert np.abs(c.astype(int) - face.astype(int)).mean() < 2


def test_redundant_pool_depends_on_the_file_not_the_order(tmp_path, astronaut):
    paths = []
    for name, (top, left) in {"a.jpg": (0, 0), "b.jpg": (200, 200)}.items():
        Image.fromarray(astronaut[top : top + 96, left : left + 96]).save(tmp_path / name)
        paths.append(tmp_path / name)
    both = list(redundant_pool(paths, 2, seed=3))
    assert [(p.name, j) for p, j, _ in both] == [
        ("a.jpg", 0),
        ("a.jpg", 1),
        ("b.jpg", 0),
        ("b.jpg", 1),
    ]
    first_only = list(redundant_pool(paths[:1], 2, seed=3))
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(first_only, both[:2], strict=True))


def test_bad_strengths_and_images_are_refused():
    with pytest.raises(
        VariantError, match=r"variant shift = 0.6 is not allowed; allowed: \[0, 0.5\)"
    ):
        check_strength(VariantStrength(shift=0.6))
    with pytest.raises(VariantError, match="uint8"):
        near_copy(np.zeros((8, 8, 3)), np.random.default_rng(0))
    with pytest.raises(VariantError, match=">= 0"):
        near_copies(np.zeros((8, 8, 3), np.uint8), -1, np.random.default_rng(0))
