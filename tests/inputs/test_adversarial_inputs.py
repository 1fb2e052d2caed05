"""Inputs that cannot hurt a job (issue 12, items 3, 5, 6, 7) and one frame numbering (issue 9).

Real files made here (PIL, PyAV) or taken from tests/data; the worker is the real
`ShardWorker` (as a plain object, the class Ray wraps) with a real model on the CPU; S3 is
moto's server behind a real TCP proxy that drops connections, a genuinely flaky network.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import threading

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from maskray.pipeline import storage
from maskray.pipeline.execution.worker import ShardWorker
from maskray.pipeline.inputs import images
from maskray.pipeline.inputs.geometry import fit, restore
from maskray.pipeline.inputs.images import decode_frames, decode_image
from maskray.pipeline.inputs.listing import MediaFile, list_media
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.inputs.shard_frames import iter_shard_frames
from maskray.pipeline.inputs.plan_stream import plan_shards
from maskray.pipeline.inputs.video import build_index, decode_segment
from maskray.pipeline.output import sink
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.schema import FrameError
from results_helpers import ellipse, prediction, run_maskray, write_output


def _png(path, array) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def _run_worker(output, shards, **config) -> list[dict]:
    """Process `shards` with a real ShardWorker on the CPU; the committed `frames` rows."""
    sink.write_job(str(output), {"job_id": "test-job", "model": config.get("model", "x"), "weights_id": "x"})
    predictor = dict({"model": "maskrcnn_resnet50_fpn", "weights": "none", "min_size": 128, "max_size": 213},
                     **config)
    worker = ShardWorker(predictor, sink.OutputSink(str(output), "test-job"), batch_size=4, force_cpu=True)
    for shard in shards:
        worker.process(shard)
    return sorted(open_output(str(output)).frames().to_table().to_pylist(), key=lambda r: (r["source"], r["frame"]))


# Item 3: sizes guarded before inference ------------------------------------------------------

def test_thin_images_do_not_fail_their_shard_and_keep_their_size(tmp_path, data_dir):
    folder = tmp_path / "scraped"
    folder.mkdir()
    _png(folder / "divider-h.png", np.full((1, 400, 3), 200, np.uint8))
    _png(folder / "divider-v.png", np.full((400, 1, 3), 90, np.uint8))
    good = str(folder / "rocket.jpg")
    Image.open(data_dir / "images" / "rocket.jpg").save(good)
    shards = plan_shards(list_media([str(folder)]), Sampling(), None, workers=1)
    # At max_size 213 torchvision scales a 400x1 frame to 0 pixels: before the guard, the shard raised.
    rows = _run_worker(tmp_path / "out", shards, model="demo", weights="demo")
    sizes = {os.path.basename(r["source"]): (r["status"], r["width"], r["height"]) for r in rows}
    assert sizes == {"divider-h.png": ("ok", 400, 1), "divider-v.png": ("ok", 1, 400), "rocket.jpg": ("ok", 640, 427)}


def test_restore_maps_boxes_keypoints_and_masks_back_to_the_frame():
    # The frame is 90x60; the model saw it reduced to 30x20 and padded to 34x23.
    content = ellipse(20, 30, 12, 9, 7, 5)
    array_mask = np.zeros((23, 34), bool)
    array_mask[:20, :30] = content
    padding_only = np.zeros((23, 34), bool)
    padding_only[21:, 31:] = True  # a detection in the black padding: dropped
    found = prediction([array_mask, padding_only], [1, 2], [0.9, 0.8])
    found.keypoints = np.array([[[3.0, 4.0, 1.0]], [[32.0, 22.0, 1.0]]], np.float32)
    _, geometry = fit(np.zeros((20, 30, 3), np.uint8), 90, 60)
    geometry = type(geometry)(90, 60, 30, 20, 34, 23)
    back = restore(found, geometry)
    assert (back.width, back.height, len(back)) == (90, 60, 1)
    ys = np.minimum(((np.arange(60) + 0.5) * 20 / 60).astype(int), 19)
    xs = np.minimum(((np.arange(90) + 0.5) * 30 / 90).astype(int), 29)
    expected = content[ys][:, xs]
    mask = coco_mask.decode({"size": [60, 90], "counts": back.masks_rle[0].encode()})
    assert np.array_equal(mask.astype(bool), expected) and back.mask_areas[0] == expected.sum()
    assert np.allclose(back.boxes[0], np.array(found.boxes[0]) * 3)
    assert np.allclose(back.keypoints[0, 0, :2], [9.0, 12.0])


def test_an_image_over_the_pixel_limit_is_decoded_reduced_and_results_come_back_in_its_pixels(
        tmp_path, monkeypatch):
    from maskray.jobs.training.shapes import render_image

    small = np.asarray(render_image(np.random.default_rng(3), 256, 256)[0], np.uint8)
    big = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)  # the same picture at 768x768
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small_uri, big_uri = _png(tmp_path / "a" / "small.png", small), _png(tmp_path / "b" / "big.png", big)
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 256 * 256)  # so 768x768 is "huge" here
    demo = {"model": "demo", "weights": "demo", "min_size": None, "max_size": None}
    reference = _instances(tmp_path / "out-small", small_uri, demo)
    reduced = _instances(tmp_path / "out-big", big_uri, demo)
    assert len(reference) > 0 and len(reduced) == len(reference)
    for seen, known in zip(reduced, reference):
        assert (seen["width"], seen["height"]) == (768, 768)
        assert np.allclose([seen[k] for k in "x1 y1 x2 y2".split()], [known[k] * 3 for k in "x1 y1 x2 y2".split()],
                           atol=1e-3)
        mask = coco_mask.decode({"size": [768, 768], "counts": seen["mask_rle"].encode()})
        known_mask = coco_mask.decode({"size": [256, 256], "counts": known["mask_rle"].encode()})
        assert np.array_equal(mask, np.repeat(np.repeat(known_mask, 3, axis=0), 3, axis=1))
        assert seen["mask_area"] == 9 * known["mask_area"]


def _instances(output, uri, config) -> list[dict]:
    shards = plan_shards(list_media([uri]), Sampling(), None, workers=1)
    _run_worker(output, shards, **config)
    return open_output(str(output)).sql("SELECT * FROM instances ORDER BY instance").to_pylist()


# Peak memory from VmHWM (this process's own high-water mark; ru_maxrss would carry the
# parent's across exec).
_DECODE_HUGE = """
import sys
from maskray.pipeline.inputs.images import MAX_DECODE_PIXELS, decode_frames
(frame,) = decode_frames(open(sys.argv[1], "rb").read())
assert frame.rgb.shape[0] * frame.rgb.shape[1] <= MAX_DECODE_PIXELS, frame.rgb.shape
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(frame.width, frame.height, peak_kb // 1024)
"""


def test_a_100_megapixel_photo_decodes_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.jpg"
    gradient = Image.linear_gradient("L").resize((12000, 8400)).convert("RGB")
    gradient.save(path, quality=60)
    del gradient
    done = subprocess.run([sys.executable, "-c", _DECODE_HUGE, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    width, height, peak_mb = (int(v) for v in done.stdout.split())
    assert (width, height) == (12000, 8400)
    assert peak_mb < 300  # the full picture alone is 302 MB as RGB bytes (1.2 GB as floats)


# Item 5: listing ---------------------------------------------------------------------------

def test_symlink_loops_are_followed_once(tmp_path, data_dir):
    source = tmp_path / "photos"
    (source / "day").mkdir(parents=True)
    shutil_copy(data_dir / "images" / "coins.png", source / "a.png")
    shutil_copy(data_dir / "images" / "camera.png", source / "day" / "b.png")
    os.symlink("..", source / "up")            # a loop to the folder above the source
    os.symlink(".", source / "day" / "again")  # a loop to itself
    os.symlink(str(source / "day"), source / "day-link")  # a second name for one folder
    media = list_media([str(source)])
    assert sorted(os.path.relpath(m.uri, source) for m in media) == ["a.png", os.path.join("day", "b.png")]


def shutil_copy(src, dst):
    dst.write_bytes(src.read_bytes())


def test_a_name_that_is_not_utf8_becomes_an_error_row(tmp_path, data_dir):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil_copy(data_dir / "images" / "coins.png", folder / "good.png")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as handle:  # Latin-1 name
        handle.write((data_dir / "images" / "camera.png").read_bytes())
    media = list_media([str(folder)])
    shards = plan_shards(media, Sampling(), None, workers=1)
    rows = _run_worker(tmp_path / "out", shards, model="null")
    by_name = {os.path.basename(r["source"]): r for r in rows}
    assert set(by_name) == {"caf\\xe9.png", "good.png"}
    assert by_name["good.png"]["status"] == "ok"
    assert by_name["caf\\xe9.png"]["status"] == "error" and "not valid UTF-8" in by_name["caf\\xe9.png"]["error"]


def test_a_job_file_inside_a_source_hides_nothing_but_the_jobs_own_output_is_skipped(tmp_path, data_dir):
    source = tmp_path / "project"
    (source / "old-run").mkdir(parents=True)
    (source / "old-run" / "_job.json").write_text("{}")  # a stray marker (copied folder, old run)
    shutil_copy(data_dir / "images" / "coins.png", source / "old-run" / "kept.png")
    (source / "out" / "frames").mkdir(parents=True)
    (source / "out" / "_job.json").write_text("{}")
    shutil_copy(data_dir / "images" / "coins.png", source / "out" / "frames" / "mine.png")
    media = list_media([str(source)], output=str(source / "out"))
    assert [os.path.relpath(m.uri, source) for m in media] == [os.path.join("old-run", "kept.png")]


def test_a_source_inside_the_output_is_listed_whole(tmp_path, data_dir):
    """`submit proj/frames --output proj` (issue 12 item 1's first run): the user's images in
    `proj/frames` are inputs, even though maskray's `frames` table folder has the same name."""
    project = tmp_path / "proj"
    (project / "frames").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        shutil_copy(data_dir / "images" / "coins.png", project / "frames" / name)
    (project / "frames" / "img-0.a1-00.parquet").write_bytes(b"PAR1")  # a part maskray wrote there
    media = list_media([str(project / "frames")], output=str(project))
    assert [os.path.basename(m.uri) for m in media] == ["a.png", "b.png"]


# Item 6: transient storage errors -----------------------------------------------------------

class FlakyProxy:
    """A TCP proxy on 127.0.0.1 that resets its first `failures` connections (all, if None),
    then forwards to `port`: the network dropping, for real, under pyarrow's S3 client."""

    def __init__(self, port: int, failures):
        self.port, self.failures, self.connections = port, failures, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.failures is None or self.connections <= self.failures:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # RST: "Connection reset by peer"
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.listener.close()


@pytest.fixture
def flaky(s3_server, monkeypatch):
    """`flaky(failures)`: S3 through a FlakyProxy; retries made quick for the test."""
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.05)
    proxies = []

    def start(failures):
        proxy = FlakyProxy(int(s3_server.rsplit(":", 1)[1]), failures)
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # a new endpoint: a new client
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def test_reads_and_writes_survive_a_store_that_drops_connections(flaky, s3_client, s3_bucket, data_dir):
    data = (data_dir / "images" / "coins.png").read_bytes()
    s3_client.put_object(Bucket=s3_bucket, Key="cams/coins.png", Body=data)
    proxy = flaky(failures=6)  # more than pyarrow's own client retries (3 tries) can ride out
    assert storage.read_bytes(f"s3://{s3_bucket}/cams/coins.png") == data
    assert proxy.connections > 6
    proxy = flaky(failures=6)
    storage.write_bytes_atomic(f"s3://{s3_bucket}/out/part.bin", b"written")
    assert s3_client.get_object(Bucket=s3_bucket, Key="out/part.bin")["Body"].read() == b"written"


def test_a_store_that_stays_down_gives_transient_error_rows_not_a_traceback(flaky, s3_client, s3_bucket, data_dir,
                                                                           monkeypatch):
    for name, folder in (("bikes.mp4", "videos"), ("coins.png", "images")):
        s3_client.put_object(Bucket=s3_bucket, Key=name, Body=(data_dir / folder / name).read_bytes())
    flaky(failures=None)
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 3)
    media = [MediaFile(f"s3://{s3_bucket}/bikes.mp4", "video", 1000),
             MediaFile(f"s3://{s3_bucket}/coins.png", "image", 1000)]
    shards = plan_shards(media, Sampling(), None, workers=1)  # indexing the video: an OSError, before
    rows = [item for shard in shards for item in iter_shard_frames(shard)]
    assert len(rows) == 2 and all(isinstance(row, FrameError) and row.transient for row in rows)
    assert all(row.message.startswith("transient: ") for row in rows)


# Item 7: depth, rotation, pages --------------------------------------------------------------

def test_two_frames_of_one_16_bit_sequence_decode_alike():
    dark = np.full((4, 4), 200, np.uint16)  # a night frame of a 12-bit camera
    bright = dark.copy()
    bright[0, 0] = 4000  # the same scene with one lamp on
    decoded = [decode_image(_encoded(Image.fromarray(frame), "PNG")) for frame in (dark, bright)]
    assert decoded[0][1, 1, 0] == decoded[1][1, 1, 0] == round(200 * 255 / 65535)
    assert decoded[1][0, 0, 0] == round(4000 * 255 / 65535)


def _encoded(image, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rotated_video(path, degrees: int) -> np.ndarray:
    """A 64x32 clip whose display matrix says: turn by `degrees`; returns its first picture."""
    picture = np.zeros((32, 64, 3), np.uint8)
    picture[:, :16] = 255  # a white band on the left
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(degrees)
        for number in range(3):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return picture


def test_video_rotation_is_applied_and_recorded(tmp_path):
    path = tmp_path / "portrait.mp4"
    picture = _rotated_video(path, 90)
    shards = plan_shards(list_media([str(path)]), Sampling(), None, workers=1)
    (shard,) = shards
    (ref, rgb, _), *_ = list(iter_shard_frames(shard))
    assert (ref.width, ref.height) == (32, 64) and rgb.shape == (64, 32, 3)
    upright = np.rot90(picture)  # the white band is now at the bottom
    assert np.abs(rgb.astype(int) - upright.astype(int)).mean() < 10


def test_every_frame_of_an_animated_gif_and_a_multipage_tiff_is_processed(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    pictures = [Image.new("RGB", (24, 16), colour) for colour in colours]
    pictures[0].save(tmp_path / "anim.gif", save_all=True, append_images=pictures[1:], duration=[100, 200, 300])
    pictures[0].save(tmp_path / "scan.tiff", save_all=True, append_images=pictures[1:2])
    shards = plan_shards(list_media([str(tmp_path)]), Sampling(), None, workers=1)
    assert sorted(shard.expected_frames for shard in shards) == [2, 3]
    decoded = {}
    for shard in shards:
        for ref, rgb, _ in iter_shard_frames(shard):
            decoded[(os.path.basename(ref.source), ref.frame)] = (ref.time, tuple(int(v) for v in rgb[8, 12]))
    assert decoded == {
        ("anim.gif", 0): (0.0, colours[0]), ("anim.gif", 1): (0.1, colours[1]), ("anim.gif", 2): (0.3, colours[2]),
        ("scan.tiff", 0): (None, colours[0]), ("scan.tiff", 1): (None, colours[1]),
    }


def test_the_frame_decoder_frames_are_reduced_over_the_limit_with_their_own_size():
    frame = next(decode_frames(_encoded(Image.new("RGB", (300, 200), (9, 9, 9)), "PNG"), max_pixels=100 * 100))
    assert (frame.width, frame.height) == (300, 200) and frame.rgb.shape[0] * frame.rgb.shape[1] <= 100 * 100


# Issue 9: one frame number -------------------------------------------------------------------

@pytest.fixture(scope="module")
def cut_video(tmp_path_factory, data_dir):
    """bikes.mp4 cut mid-GOP: its first 27 frames (before the first keyframe) cannot be decoded,
    so counting decoded frames and counting presented frames disagree by 27."""
    path = tmp_path_factory.mktemp("cut") / "cut.mp4"
    with av.open(str(data_dir / "videos" / "bikes.mp4")) as source, av.open(str(path), "w") as target:
        stream = source.streams.video[0]
        copy = target.add_stream_from_template(stream)
        for number, packet in enumerate(p for p in source.demux(stream) if p.dts is not None):
            if number >= 3:
                packet.stream = copy
                target.mux(packet)
            if number > 60:
                break
    return str(path)


def _job_frame(uri: str, frame: int) -> np.ndarray:
    index = build_index(uri)
    (decoded,) = decode_segment(uri, index, 0, index.end_frame, [frame], max_pixels=None)
    return decoded.rgb


def test_render_numbers_video_frames_as_the_job_does(cut_video, tmp_path, capsys):
    frame = 40
    expected = _job_frame(cut_video, frame)
    height, width = expected.shape[:2]
    spot = ellipse(height, width, 20, 20, 8, 8)
    out = str(tmp_path / "out")
    write_output(out, [(_ref(cut_video, frame, width, height), prediction([spot], [1], [0.9], {1: "x"}))])
    picture = tmp_path / "frame.png"
    code, _, error = run_maskray(["render", out, "--source", cut_video, "--frame", frame, "--out", picture], capsys)
    assert code == 0, error
    rendered = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    far = ~ellipse(height, width, 20, 20, 60, 60)
    assert np.abs(rendered - expected.astype(int))[far].mean() < 1


def _ref(source, frame, width, height):
    from maskray.pipeline.output.schema import FrameRef

    return FrameRef(source, frame, build_index(source).time(frame), width, height)


def test_the_coco_dataset_numbers_video_frames_as_the_job_does(cut_video, tmp_path):
    import json

    from maskray.jobs.training.coco_dataset import CocoDataset

    frame = 40
    expected = _job_frame(cut_video, frame)
    height, width = expected.shape[:2]
    folder = tmp_path / "set"
    folder.mkdir()
    os.symlink(cut_video, folder / "cut.mp4")
    annotations = {"images": [{"id": 1, "file_name": "cut-40.png", "source": "cut.mp4", "frame": frame,
                               "width": width, "height": height}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                    "bbox": [10, 10, 20, 20], "area": 400,
                                    "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]}],
                   "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    image, _ = CocoDataset(folder, tmp_path / "ann.json")[0]
    got = (image.permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert np.abs(got - expected.astype(int)).max() <= 1
