import numpy as np
import pytest
from PIL import Image

from alface.faces.duplicates import (
    DuplicateConfig,
    DuplicateError,
    check_duplicate_config,
    duplicate_groups,
    embedding_pairs,
    hamming,
    hash_pairs,
    perceptual_hash,
    perceptual_hashes,
)
from alface.faces.variants import VariantStrength, near_copies

PHOTOMETRIC = VariantStrength(shift=0.0, scale=0.0)  # brightness, blur, JPEG 50-95
GEOMETRIC = VariantStrength(brightness=0.0, blur=0.0, jpeg=(95, 95))  # 5 % shift, 8 % scale


def crop(image, top, left, side, size=160):
    return np.asarray(
        Image.fromarray(image[top : top + side, left : left + side]).resize(
            (size, size), Image.Resampling.LANCZOS
        )
    )


@pytest.fixture(scope="module")
def face(astronaut):
    return crop(astronaut, 20, 150, 220)


@pytest.fixture(scope="module")
def others(astronaut):
    """Crops that are not the astronaut's face: her suit, the flag, other skimage photos."""
    from skimage import data

    camera = np.repeat(data.camera()[:, :, None], 3, axis=2)
    return [
        crop(astronaut, 280, 100, 220),
        crop(astronaut, 0, 0, 160),
        crop(astronaut, 20, 190, 220),  # the face again, shifted by 18 % of the side
        crop(data.coffee(), 50, 150, 300),
        crop(data.chelsea(), 20, 100, 250),
        crop(camera, 40, 180, 160),
    ]


def test_photometric_copies_keep_the_hash_and_other_crops_do_not(face, others):
    copies = near_copies(face, 10, np.random.default_rng(0), PHOTOMETRIC)
    h = perceptual_hashes([face, *copies, *others])
    assert h.dtype == np.uint64 and len(h) == 17
    assert (hamming(h[1:11], h[0]) <= 4).all()
    assert (hamming(h[11:], h[0]) > 4).all()
    groups = duplicate_groups(len(h), hashes=h)
    assert groups.tolist() == [0] * 11 + [1, 2, 3, 4, 5, 6]


def test_dhash_and_phash_differ_and_unknown_kinds_are_refused(face):
    assert perceptual_hash(face, "dhash") != perceptual_hash(face, "phash")
    assert perceptual_hash(face[:, :, 0]) == perceptual_hash(
        np.asarray(Image.fromarray(face[:, :, 0]))
    )
    with pytest.raises(
        DuplicateError, match="unknown hash kind 'ahash'; choose one of phash, dhash"
    ):
        perceptual_hash(face, "ahash")
    with pytest.raises(DuplicateError, match="uint8"):
        perceptual_hash(face.astype(np.float32))


def test_hash_pairs_by_hand_and_signed_storage_groups_the_same():
    h = np.array([0b000, 0b001, 0b011, 2**64 - 1, 2**63 + 0b111000], dtype=np.uint64)
    # 0-1: 1 bit, 1-2: 1 bit, 0-2: 2 bits, 3 is all ones, 4 is 4 bits from 0 (the top one).
    assert hash_pairs(h, 1).tolist() == [[0, 1], [1, 2]]
    assert sorted(hash_pairs(h, 2).tolist()) == [[0, 1], [0, 2], [1, 2]]
    assert hash_pairs(h, 0).tolist() == []
    assert hash_pairs(h, 4).tolist() == [[0, 1], [0, 2], [0, 4], [1, 2]]  # 1-4: 5 bits
    cfg1 = DuplicateConfig(max_distance=1)
    assert duplicate_groups(5, hashes=h, cfg=cfg1).tolist() == [0, 0, 0, 1, 2]
    assert duplicate_groups(5, hashes=h.view(np.int64), cfg=cfg1).tolist() == [0, 0, 0, 1, 2]
    assert hash_pairs(np.array([1, 0], dtype=np.uint64), 1).tolist() == [[0, 1]]
    with pytest.raises(DuplicateError, match="64-bit integers"):
        hash_pairs(np.array([1, 2], dtype=np.int32), 1)


@pytest.mark.parametrize("distance", range(8))
def test_hash_pairs_equal_comparing_every_pair(distance):
    # Up to 5 bits multi-index hashing, above every pair in FAISS: both against numpy.
    rng = np.random.default_rng(distance)
    base = rng.integers(0, 2**63, 100, dtype=np.int64).view(np.uint64)
    flips = np.packbits(rng.random((500, 64)) < 0.04, axis=1).view(">u8")[:, 0]
    h = np.repeat(base, 5) ^ flips.astype(np.uint64)
    d = hamming(h[:, None], h[None, :])
    expected = np.argwhere(np.triu(d <= distance, 1))
    assert len(expected) > 0
    assert np.array_equal(hash_pairs(h, distance), expected)


def test_embedding_pairs_by_hand():
    a = np.array([[1, 0, 0], [0.99, 0.141, 0], [0, 1, 0], [0, 0, 5], [0, 0.1, 4]], np.float32)
    # cos(0, 1) = 0.99, cos(3, 4) = 0.9997, cos(1, 2) = 0.14
    assert embedding_pairs(a, 0.98).tolist() == [[0, 1], [3, 4]]
    assert embedding_pairs(a, 0.995).tolist() == [[3, 4]]
    assert duplicate_groups(5, embeddings=a, cfg=DuplicateConfig(min_cosine=0.98)).tolist() == [
        0, 0, 1, 2, 2,
    ]  # fmt: skip
    with pytest.raises(DuplicateError, match="NaN/inf or all zero in 1 row"):
        embedding_pairs(np.array([[1.0, 0], [0, 0]]), 0.9)


def test_the_inverted_file_finds_the_same_groups_as_the_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((400, 32)).astype(np.float32)
    x = np.repeat(centres, 5, axis=0) + 0.02 * rng.standard_normal((2000, 32)).astype(np.float32)
    exact = embedding_pairs(x, 0.99)
    approx = embedding_pairs(x, 0.99, exact_max=100)  # forces IndexIVFFlat
    assert len(exact) == 400 * 10  # every pair inside each group of 5, none across
    assert np.array_equal(exact, approx)
    # 128-d rows searched in 16 principal components, candidates checked on all 128.
    wide = np.repeat(rng.standard_normal((400, 128)), 5, axis=0)
    wide += 0.02 * rng.standard_normal(wide.shape)
    exact = embedding_pairs(wide, 0.99)
    assert len(exact) == 400 * 10
    assert np.array_equal(embedding_pairs(wide, 0.99, exact_max=100, dims=16), exact)


def test_onet_embeddings_group_shifted_copies_that_the_hash_misses(face, utk_dir):
    """Real features: O-Net trunk (weights inside facenet-pytorch) of the astronaut's face,
    10 copies shifted up to 5 % and scaled up to 8 %, and 20 UTKFace faces."""
    import timm
    import torch

    import alface.backbones  # noqa: F401  (registers mtcnn_onet)

    copies = near_copies(face, 10, np.random.default_rng(1), GEOMETRIC)
    files = sorted(utk_dir.glob("*.jpg"))[:40:2]
    people = [np.asarray(Image.open(f).convert("RGB").resize((160, 160))) for f in files]
    images = [face, *copies, *people]
    model = timm.create_model("mtcnn_onet", pretrained=True, num_classes=0).eval()
    cfg = model.pretrained_cfg
    x = torch.from_numpy(
        np.stack([np.asarray(Image.fromarray(i).resize((96, 96))) for i in images])
    )
    x = (
        x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    ) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        emb = model(x).numpy()
    h = perceptual_hashes(images)
    by_hash = duplicate_groups(len(images), hashes=h)
    assert len(set(by_hash[:11].tolist())) > 1  # some copies moved past 4 bits
    by_emb = duplicate_groups(len(images), embeddings=emb, cfg=DuplicateConfig(min_cosine=0.95))
    assert set(np.flatnonzero(by_emb == by_emb[0]).tolist()) == set(range(11))


def test_config_check_names_key_value_and_allowed():
    check_duplicate_config(DuplicateConfig())
    with pytest.raises(
        DuplicateError, match=r"duplicates.min_cosine = 1.5 is not allowed; allowed: \[-1, 1\]"
    ):
        check_duplicate_config(DuplicateConfig(min_cosine=1.5))
    with pytest.raises(DuplicateError, match="duplicates.hash = 'md5'"):
        duplicate_groups(2, cfg=DuplicateConfig(hash="md5"))
    with pytest.raises(DuplicateError, match="hashes have 3 rows for 2 faces"):
        duplicate_groups(2, hashes=np.zeros(3, np.uint64))
