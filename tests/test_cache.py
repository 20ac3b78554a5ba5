import hashlib
import pickle

import numpy as np
import pytest
from labelstore import make_workdir
from PIL import Image

from alface.cache import CACHE_DIR, KEEP, CacheError, CropCache, load_crop
from alface.store import NewItem


@pytest.fixture
def wd(tmp_path):
    with make_workdir(tmp_path / "wd", n=40) as w:
        yield w


def _add_faces(wd, faces, name):
    """Save ``faces`` (uint8 HxWx3) as JPEG crops and add them to the pool; returns ids."""
    records = []
    for i, face in enumerate(faces):
        path = wd.root / "crops" / f"{name}_{i}.jpg"
        Image.fromarray(face).save(path, quality=90)
        records.append(
            NewItem(f"crops/{name}_{i}.jpg", hashlib.sha1(path.read_bytes()).hexdigest())
        )
    with wd.store.transaction("test"):
        return wd.store.items.add(records, pool=2)


def _files(wd):
    return sorted(p.name for p in (wd.root / CACHE_DIR).iterdir())


def test_build_decodes_every_crop_once_and_reopens(wd):
    ids = wd.store.items.ids()
    calls = []
    cache = CropCache.build(wd.store, ids[::-1], 32, progress=calls.append)
    assert sum(calls) == len(ids) and len(cache) == len(ids)
    assert cache.array.shape == (len(ids), 32, 32, 3) and cache.array.dtype == np.uint8
    np.testing.assert_array_equal(cache.ids, ids)  # kept ascending whatever the order given
    rows = cache.index_of([ids[5], ids[0]])
    want = [load_crop(r.crop_file(wd.store.root), 32) for r in wd.store.items.get([ids[5], ids[0]])]
    np.testing.assert_array_equal(cache.images(rows), np.stack(want))
    assert not any(".tmp" in f for f in _files(wd))
    again = CropCache.build(wd.store, ids, 32, progress=calls.append)
    assert sum(calls) == len(ids) and again.path == cache.path  # opened, not decoded again
    with pytest.raises(CacheError, match="not in the crop cache"):
        cache.index_of([ids[-1] + 1000])


def test_new_items_give_a_new_cache_that_reuses_the_old_rows(wd, astronaut):
    ids = wd.store.items.ids()
    old = CropCache.build(wd.store, ids, 24)
    faces = [astronaut[y : y + 200, x : x + 200] for y, x in [(0, 150), (30, 180), (60, 200)]]
    new_ids = _add_faces(wd, faces, "astro")
    decoded = []
    cache = CropCache.build(wd.store, wd.store.items.ids(), 24, progress=decoded.append)
    assert cache.path != old.path and sum(decoded) == len(new_ids) == 3
    np.testing.assert_array_equal(cache.images(cache.index_of(ids)), old.array)
    big = load_crop(wd.root / "crops" / "astro_1.jpg", 24)
    np.testing.assert_array_equal(cache.images(cache.index_of([new_ids[1]]))[0], big)
    for k in range(KEEP + 1):  # older caches are pruned down to KEEP per size
        CropCache.build(wd.store, wd.store.items.ids()[k + 1 :], 24)
    assert len([f for f in _files(wd) if f.endswith(".npy")]) == KEEP
    assert len(_files(wd)) == 2 * KEEP


def test_parallel_workers_build_the_same_cache(wd, tmp_path):
    serial = CropCache.build(wd.store, wd.store.items.ids(), 16).array.copy()
    for f in (wd.root / CACHE_DIR).iterdir():
        f.unlink()
    import alface.cache

    alface.cache._CHUNK, chunk = 8, alface.cache._CHUNK
    try:
        parallel = CropCache.build(wd.store, wd.store.items.ids(), 16, workers=2)
    finally:
        alface.cache._CHUNK = chunk
    np.testing.assert_array_equal(parallel.array, serial)


def test_a_bad_crop_is_named_and_leaves_no_cache(wd):
    row = wd.store.items.get()[3]
    row.crop_file(wd.store.root).write_bytes(b"not a jpeg")
    with pytest.raises(CacheError, match=row.crop_path.split("/")[-1]):
        CropCache.build(wd.store, wd.store.items.ids(), 16)
    assert _files(wd) == []


def test_cache_pickles_as_a_path_and_empty_caches_work(wd):
    cache = CropCache.build(wd.store, wd.store.items.ids(), 16)
    cache.images([0])  # the memmap is open now
    blob = pickle.dumps(cache)
    assert len(blob) < 20_000
    np.testing.assert_array_equal(pickle.loads(blob).images([1, 2]), cache.images([1, 2]))
    empty = CropCache.build(wd.store, [], 16)
    assert len(empty) == 0 and empty.images([]).shape == (0, 16, 16, 3)


def test_load_crop_makes_rgb_from_any_mode(tmp_path, astronaut):
    for mode, ext in (("L", "jpg"), ("CMYK", "jpg"), ("RGBA", "png"), ("I;16", "png")):
        path = tmp_path / f"x_{mode.replace(';', '')}.{ext}"
        Image.fromarray(astronaut[:60, :40]).convert(mode).save(path)
        out = load_crop(path, 20)
        assert out.shape == (20, 20, 3) and out.dtype == np.uint8


def test_load_crop_turns_the_crop_upright(tmp_path, astronaut):
    """A crop with an EXIF rotation (a phone picture registered with --cropped) comes out as
    the detector and the pixel hash see it: turned."""
    from alface.faces.images import load_image

    face = Image.fromarray(astronaut[:80, :40])  # portrait: the turn shows in the shape
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    path = tmp_path / "turned.jpg"
    face.save(path, exif=exif, quality=95)
    out = load_crop(path, 40)
    want = np.asarray(load_image(path, 1.0).resize((40, 40), Image.Resampling.BILINEAR))
    with Image.open(path) as im:
        unturned = np.asarray(im.convert("RGB").resize((40, 40)))
    assert np.abs(out.astype(int) - want).mean() < 1.0
    assert np.abs(out.astype(int) - unturned).mean() > 20
