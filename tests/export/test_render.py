"""`maskray render`: instances drawn over the real sample image and video, local and on S3."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from maskray.pipeline.render.drawing import PALETTE
from maskray.pipeline.output.schema import FrameRef
from results_helpers import ellipse, prediction, run_maskray, write_output

ASTRONAUT_NAMES = {1: "person", 5: "airplane", 37: "sports ball", 13: "stop sign"}


def polygon(points, height, width) -> np.ndarray:
    flat = [float(v) for point in points for v in point]
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([flat], height, width))).astype(bool)


def astronaut_instances():
    """What a person would outline on astronaut.png: her, the shuttle model, the helmet, plus a
    low-scored false positive at (490, 310) on the plain background."""
    size = 512
    person = polygon([(230, 14), (275, 25), (300, 70), (298, 120), (290, 150), (305, 200), (345, 260),
                      (360, 330), (362, 420), (300, 420), (280, 512), (20, 512), (22, 400), (40, 280),
                      (70, 230), (115, 200), (125, 160), (165, 140), (155, 80), (180, 30)], size, size)
    shuttle = polygon([(395, 0), (435, 0), (440, 60), (445, 200), (460, 245), (455, 280), (370, 280),
                       (355, 225), (380, 180), (385, 60)], size, size)
    helmet = ellipse(size, size, 395, 440, 118, 95)
    stray = ellipse(size, size, 490, 310, 12, 12)
    keypoints = np.full((4, 17, 3), -1.0, np.float32)  # -1: not found (not drawn)
    face_and_body = [(222, 130), (245, 112), (200, 112), (270, 120), (176, 118), (320, 270), (95, 250),
                     (345, 400), (45, 390), (300, 470), (140, 500), (260, 505), (150, 505)]
    keypoints[0, :len(face_and_body)] = [(x, y, 3.0) for x, y in face_and_body]
    masks = [person, shuttle, helmet, stray]
    return masks, prediction(masks, [1, 5, 37, 13], [0.98, 0.87, 0.61, 0.3], ASTRONAUT_NAMES, keypoints)


@pytest.fixture
def astronaut_output(tmp_path, data_dir):
    masks, pred = astronaut_instances()
    source = str(data_dir / "images" / "astronaut.png")
    write_output(str(tmp_path / "out"), [(FrameRef(source, 0, None, 512, 512), pred)])
    return str(tmp_path / "out"), source, masks


def test_an_image_gets_tinted_masks_and_leaves_the_rest_alone(astronaut_output, tmp_path, capsys):
    out, source, (person, shuttle, helmet, stray) = astronaut_output
    picture = tmp_path / "astronaut-masks.png"
    code, text, _ = run_maskray(["render", out, "--source", source, "--out", picture, "--min-score", "0.5"], capsys)
    assert code == 0 and "3 instances drawn" in text
    original = np.asarray(Image.open(source).convert("RGB")).astype(np.float32)
    drawn = np.asarray(Image.open(picture)).astype(np.float32)
    assert drawn.shape == original.shape

    # Inside the best instance's mask: the source blended with the first palette colour.
    # (The median ignores the few pixels under the skeleton, box and label.)
    inside = person & ~helmet
    expected = original[inside] * 0.55 + np.array(PALETTE[0], np.float32) * 0.45
    assert np.median(np.abs(drawn[inside] - expected)) <= 1.0
    assert np.abs(drawn[shuttle] - original[shuttle]).mean() > 20
    # Away from every box and label (left of the person's box): untouched, pixel for pixel.
    np.testing.assert_array_equal(drawn[60:, :16], original[60:, :16])
    # The 0.3-scored stray instance is below --min-score: its pixels are untouched.
    np.testing.assert_array_equal(drawn[stray], original[stray])

    code, _, _ = run_maskray(["render", out, "--source", source, "--out", picture, "--min-score", "0.2"], capsys)
    assert code == 0 and np.abs(np.asarray(Image.open(picture)).astype(np.float32)[stray] - original[stray]).mean() > 20


def _frames(path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream.average_rate


def test_a_video_renders_to_mp4_at_the_source_rate(tmp_path, data_dir, capsys):
    video = str(data_dir / "videos" / "carphone_pristine.mp4")  # 176x144, 120 frames, 29.97 fps
    height, width = 144, 176
    circle = ellipse(height, width, 60, 70, 30, 30)
    frames = [(FrameRef(video, f, f * 1001 / 30000, width, height),
               prediction([circle], [1], [0.9], {1: "person"})) for f in (0, 50, 100)]
    out = str(tmp_path / "out")
    write_output(out, frames)

    clip = tmp_path / "carphone-masks.mp4"
    code, text, _ = run_maskray(["render", out, "--source", video, "--out", clip], capsys)
    assert code == 0 and "120 frames, 3 instances drawn on 3" in text
    rendered, rate = _frames(clip)
    original, source_rate = _frames(video)
    assert len(rendered) == 120 and rate == source_rate and rendered[0].shape == (height, width, 3)

    def difference(a, b, where):
        return np.abs(a.astype(np.float32)[where] - b.astype(np.float32)[where]).mean()

    far = ~ellipse(height, width, 60, 70, 60, 60)  # well away from the circle, its box and label
    assert difference(rendered[50], original[50], circle) > 25
    assert difference(rendered[50], original[50], far) < 4  # only re-encoding noise
    assert difference(rendered[30], original[30], np.ones_like(circle)) < 4  # not processed: as it was

    flipbook = tmp_path / "processed.mp4"
    code, text, _ = run_maskray(["render", out, "--source", video, "--out", flipbook, "--frames", "processed"], capsys)
    rendered, _ = _frames(flipbook)
    assert code == 0 and len(rendered) == 3 and difference(rendered[1], original[50], circle) > 25


def test_render_reads_source_and_output_from_s3(astronaut_output, s3_bucket, s3_client, tmp_path, capsys):
    out, source, _ = astronaut_output
    _, pred = astronaut_instances()
    key = "photos/astronaut.png"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=open(source, "rb").read())
    remote_source, remote_out = f"s3://{s3_bucket}/{key}", f"s3://{s3_bucket}/masks"
    write_output(remote_out, [(FrameRef(remote_source, 0, None, 512, 512), pred)])

    local, remote = tmp_path / "local.png", tmp_path / "remote.png"
    assert run_maskray(["render", out, "--source", source, "--out", local], capsys)[0] == 0
    assert run_maskray(["render", remote_out, "--source", remote_source, "--out", remote], capsys)[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(local)), np.asarray(Image.open(remote)))


def test_render_mistakes_are_one_line_exit_2(astronaut_output, tmp_path, data_dir, capsys):
    out, source, _ = astronaut_output
    code, _, err = run_maskray(["render", out, "--source", data_dir / "images" / "chelsea.png",
                                "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and err.count("\n") == 1 and "is not a source of" in err and "astronaut.png" in err
    code, _, err = run_maskray(["render", out, "--source", source, "--out", tmp_path / "x.gif"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--out must end with" in err
