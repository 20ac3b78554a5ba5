"""alface.faces: image loading, crops, MTCNN detection, video frames."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from alface.faces import crops, images, video
from alface.faces.detect import DetectError, Face, FaceDetector, keep_faces

ORIENTATION = 0x0112


def gray(a: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(a).convert("L"), dtype=np.float64)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector("cpu")


def write_video(path, frames: list[np.ndarray], fmt_options=None) -> None:
    """A video of ``frames`` (MPEG-4 codec, container from the suffix), every frame a keyframe;
    an .mp4 has its index first (faststart) unless ``fmt_options`` says otherwise."""
    if fmt_options is None:
        fmt_options = {"movflags": "faststart"} if str(path).endswith(".mp4") else {}
    with av.open(str(path), "w", options=fmt_options) as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 1
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def moving_frames(astronaut, n=8, side=256) -> list[np.ndarray]:
    small = np.asarray(Image.fromarray(astronaut).resize((side, side)))
    return [np.roll(small, 4 * i, axis=1) for i in range(n)]


# -- images --------------------------------------------------------------------------------------
def test_load_image_converts_every_mode_to_upright_rgb(tmp_path, astronaut):
    g = np.asarray(Image.fromarray(astronaut).convert("L"))
    cases = {
        "gray.png": Image.fromarray(g),
        "cmyk.jpg": Image.fromarray(astronaut).convert("CMYK"),
        "palette.png": Image.fromarray(astronaut).convert("P"),
        "alpha.png": Image.fromarray(astronaut).convert("RGBA"),
        "sixteen.png": Image.fromarray(g.astype(np.uint16) * 257),
        "bw.png": Image.fromarray(g).convert("1"),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        out = images.load_image(tmp_path / name, max_megapixels=50)
        assert out.mode == "RGB" and out.size == (512, 512), name
        if name != "bw.png":  # 1-bit dithering changes pixels
            assert np.abs(gray(np.asarray(out)) - g).mean() < 12, name
    sixteen = np.asarray(images.load_image(tmp_path / "sixteen.png", 50))[..., 0]
    assert np.abs(sixteen.astype(int) - g).max() <= 1  # scaled to 8 bits, not clipped to white


def test_load_image_applies_exif_orientation(tmp_path, astronaut):
    stored = Image.fromarray(astronaut).rotate(90, expand=True)  # turned left: EXIF 6 turns it back
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = np.asarray(images.load_image(tmp_path / "rotated.jpg", 50))
    assert np.abs(gray(out) - gray(astronaut)).mean() < 5
    assert np.abs(gray(out) - gray(np.asarray(stored))).mean() > 30


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", images.EMPTY), (b"hello, not a picture\n", images.NOT_IMAGE)],
)
def test_load_image_refuses_non_images(tmp_path, content, reason):
    (tmp_path / "f.jpg").write_bytes(content)
    with pytest.raises(images.ImageError) as e:
        images.load_image(tmp_path / "f.jpg", 50)
    assert e.value.reason == reason


def test_load_image_refuses_truncated_and_huge(tmp_path, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(images.ImageError) as e:
        images.load_image(tmp_path / "cut.jpg", 50)
    assert e.value.reason == images.CORRUPT
    Image.new("L", (3000, 2000)).save(tmp_path / "big.png")  # 6 MP
    for limit in (5.0, 2.0):  # ours, then above Pillow's decompression-bomb error (2x)
        with pytest.raises(images.ImageError) as e:
            images.load_image(tmp_path / "big.png", limit)
        assert e.value.reason == images.TOO_LARGE and "MP" in str(e.value)
    assert images.load_image(tmp_path / "big.png", 7.0).size == (3000, 2000)
    assert Image.MAX_IMAGE_PIXELS == 89478485  # Pillow's global is restored


def test_detection_copy_shrinks_and_pads(astronaut):
    img = Image.fromarray(astronaut).resize((1000, 700))
    det, scale = images.detection_copy(img, max_side=500)
    assert scale == pytest.approx(0.5)
    assert det.shape == (352, 512, 3)  # 350 x 500 padded to multiples of 32
    assert det[350:].max() == 0 and det[:, 500:].max() == 0
    same, one = images.detection_copy(Image.fromarray(astronaut), max_side=1024)
    assert one == 1.0 and np.array_equal(same, astronaut)


def test_decode_reports_instead_of_raising(tmp_path):
    (tmp_path / "x.png").write_text("text")
    d = images.decode(str(tmp_path / "x.png"), 50, 1024)
    assert d.image is None and d.reason == images.NOT_IMAGE and d.error


def test_decoding_falls_back_to_this_process_when_workers_die(tmp_path, astronaut):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    dead: Future = Future()
    dead.set_exception(BrokenProcessPool("worker killed"))
    d = images._Fallback(dead, str(tmp_path / "a.png"), 50, 256).result()
    assert d.error is None and d.image.shape == (512, 512, 3) and d.det.shape == (256, 256, 3)
    with images.decoding(0, 50, 256) as submit:
        assert submit(str(tmp_path / "a.png")).result().scale == 0.5


# -- crops ---------------------------------------------------------------------------------------
def test_square_box_adds_margin_around_center():
    left, top, right, bottom = crops.square_box((100, 50, 200, 250), margin=0.2)
    assert right - left == bottom - top == 240
    assert (left + right) / 2 == 150 and (top + bottom) / 2 == 150


def test_cut_crop_pads_outside_black(astronaut):
    c = crops.cut_crop(astronaut, (-50, -50, 50, 50), size=64, margin=0.0)
    assert c.shape == (64, 64, 3) and c.dtype == np.uint8
    assert c[:28, :28].max() == 0 and c[40:, 40:].mean() > 20
    inside = crops.cut_crop(astronaut, (100, 100, 300, 300), size=200, margin=0.0)
    assert np.abs(inside.astype(int) - astronaut[100:300, 100:300]).max() <= 1


def test_pixel_hash_and_atomic_jpeg(tmp_path, astronaut):
    a = astronaut[:64, :64].copy()
    h = crops.pixel_hash(a)
    assert h == crops.pixel_hash(a.copy()) and len(h) == 40
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert crops.pixel_hash(b) != h
    assert crops.pixel_hash(a.reshape(32, 128, 3)) != h
    path = tmp_path / crops.crop_relpath(h)
    assert crops.crop_relpath(h) == f"crops/{h[:2]}/{h}.jpg"
    crops.write_jpeg(a, path, quality=90)
    assert Image.open(path).size == (64, 64)
    crops.write_jpeg(b, path, quality=90)  # an existing crop is kept
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


# -- detection -----------------------------------------------------------------------------------
def test_detector_finds_the_astronaut(detector, astronaut):
    (faces,) = detector.detect(astronaut[None], min_face_size=40)
    assert len(faces) == 1
    f = faces[0]
    assert f.prob > 0.95 and isinstance(f.prob, float)
    x1, y1, x2, y2 = f.box
    assert 150 < (x1 + x2) / 2 < 300 and 40 < (y1 + y2) / 2 < 200
    eyes, mouth = np.array(f.landmarks[:2]), np.array(f.landmarks[3:])
    assert eyes[:, 1].max() < mouth[:, 1].min()  # upright face: eyes above the mouth


def test_detector_batch_equals_single_and_handles_no_face(detector, astronaut):
    blank = np.full_like(astronaut, 128)
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    batch = detector.detect(np.stack([astronaut, blank, flipped]), min_face_size=40)
    assert [len(f) for f in batch] == [1, 0, 1]
    (single,) = detector.detect(astronaut[None], min_face_size=40)
    assert np.allclose(batch[0][0].box, single[0].box, atol=1e-3)
    assert detector.detect(astronaut[None, :30, :30], min_face_size=40) == [[]]
    with pytest.raises(DetectError):
        detector.detect(astronaut, min_face_size=40)


def test_decode_and_detect_runs_mtcnn_in_the_worker(tmp_path, astronaut, detector):
    from alface.faces.detect import decode_and_detect

    Image.fromarray(astronaut).resize((1024, 1024)).save(tmp_path / "a.png")
    d = decode_and_detect(str(tmp_path / "a.png"), 50, 512, min_face_size=40)
    assert d.det is None and d.scale == 0.5 and d.image.shape == (1024, 1024, 3)
    (face,) = d.faces  # in detection-copy pixels, as the main process's detector gives them
    (same,) = detector.detect(images.detection_copy(Image.fromarray(d.image), 512)[0][None], 20)[0]
    assert face == same and face.prob > 0.95
    (tmp_path / "x.png").write_text("text")
    bad = decode_and_detect(str(tmp_path / "x.png"), 50, 512, min_face_size=40)
    assert bad.faces is None and bad.reason == images.NOT_IMAGE


@pytest.mark.gpu
def test_detector_on_cuda_matches_cpu(detector, astronaut):
    from alface.device import cuda_count, torch_device

    if not cuda_count():
        pytest.skip("no CUDA device")
    batch = np.stack([astronaut, np.ascontiguousarray(astronaut[:, ::-1])])
    on_gpu = FaceDetector(torch_device("cuda")).detect(batch, min_face_size=40)
    on_cpu = detector.detect(batch, min_face_size=40)
    assert [len(f) for f in on_gpu] == [len(f) for f in on_cpu] == [1, 1]
    for g, c in zip(on_gpu, on_cpu, strict=True):
        assert np.allclose(g[0].box, c[0].box, atol=1.0) and abs(g[0].prob - c[0].prob) < 1e-3


def test_keep_faces_counts_what_it_drops():
    faces = [
        Face((0, 0, 50, 50), 0.99, ((0, 0),) * 5),
        Face((0, 0, 10, 10), 0.99, ((0, 0),) * 5),
        Face((0, 0, 50, 50), 0.50, ((0, 0),) * 5),
    ]
    kept, small, improbable = keep_faces(faces, min_size=20, min_prob=0.9)
    assert kept == faces[:1] and (small, improbable) == (1, 1)
    assert faces[0].scaled(0.5).box == (0, 0, 100, 100)


# -- video ---------------------------------------------------------------------------------------
def test_frame_sampler_every_n_and_truncated_tail(tmp_path, astronaut):
    frames = moving_frames(astronaut)
    write_video(tmp_path / "v.mp4", frames)
    full = list(video.FrameSampler(tmp_path / "v.mp4", every_n=2))
    assert [i for i, _ in full] == [0, 2, 4, 6]
    assert all(f.shape == (256, 256, 3) for _, f in full)
    assert np.abs(full[1][1].astype(int) - frames[2]).mean() < 8
    data = (tmp_path / "v.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    sampler = video.FrameSampler(tmp_path / "cut.mp4", every_n=1)
    cut = list(sampler)
    assert 0 < len(cut) < len(frames) and sampler.broken
    whole = list(video.FrameSampler(tmp_path / "v.mp4", every_n=1))[: len(cut)]
    for (i, f), (j, g) in zip(cut, whole, strict=True):
        assert i == j and np.array_equal(f, g)  # the frames before the break, intact


def test_frame_sampler_truncated_matroska_and_indexless_mp4(tmp_path, astronaut):
    frames = moving_frames(astronaut)
    write_video(tmp_path / "v.mkv", frames)  # no frame count in the header, only a duration
    whole = video.FrameSampler(tmp_path / "v.mkv", every_n=1)
    assert len(list(whole)) == len(frames) and whole.broken is None
    data = (tmp_path / "v.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    cut = video.FrameSampler(tmp_path / "cut.mkv", every_n=1)
    assert 0 < len(list(cut)) < len(frames) and "header gives" in cut.broken
    write_video(tmp_path / "late.mp4", frames, fmt_options={})  # index at the end
    data = (tmp_path / "late.mp4").read_bytes()
    (tmp_path / "late_cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # index lost
    with pytest.raises(video.VideoError, match="not a readable video"):
        list(video.FrameSampler(tmp_path / "late_cut.mp4", every_n=1))


def test_read_frame_is_the_samplers_frame_with_sparse_keyframes(tmp_path, astronaut):
    """The labeling page shows the frame a face came from: the same pixels the sampler gave,
    found by seeking (keyframes every 12 frames here), in MPEG-4 and Matroska."""
    frames = moving_frames(astronaut, n=30, side=64)
    for name in ("v.mp4", "v.mkv"):
        with av.open(str(tmp_path / name), "w") as out:
            stream = out.add_stream("mpeg4", rate=25)
            stream.height, stream.width, stream.pix_fmt = 64, 64, "yuv420p"
            stream.codec_context.gop_size = 12
            for f in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(stream.encode())
        sampled = dict(video.FrameSampler(tmp_path / name, every_n=1))
        for k in (0, 1, 11, 12, 13, 29):
            assert np.array_equal(video.read_frame(tmp_path / name, k), sampled[k]), (name, k)
        with pytest.raises(video.VideoError, match="no frame 30"):
            video.read_frame(tmp_path / name, 30)
        assert video.frame_rate(tmp_path / name) == 25.0
    (tmp_path / "x.mp4").write_text("not a video")
    with pytest.raises(video.VideoError):
        video.read_frame(tmp_path / "x.mp4", 0)
    assert video.frame_rate(tmp_path / "x.mp4") is None


def test_frame_sampler_refuses_non_videos(tmp_path):
    (tmp_path / "x.mp4").write_text("not a video")
    with pytest.raises(video.VideoError):
        list(video.FrameSampler(tmp_path / "x.mp4", every_n=1))
    with pytest.raises(video.VideoError):
        video.FrameSampler(tmp_path / "x.mp4", every_n=0)
    assert video.is_video("a/B.MKV") and not video.is_video("a/b.jpg")


def test_upright_frame_follows_display_rotation():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, axis=2)
    assert np.array_equal(video.upright_frame(a, 0), a)
    assert np.array_equal(video.upright_frame(a, 90), np.rot90(a))  # counterclockwise
    assert np.array_equal(video.upright_frame(a, -90), np.rot90(a, -1))
    assert np.array_equal(video.upright_frame(a, 180), a[::-1, ::-1])
