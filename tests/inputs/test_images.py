"""decode_image: every colour mode becomes HxWx3 uint8 RGB; bad bytes are a short DecodeError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.images import decode_image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("name, height, width", [
    ("astronaut.png", 512, 512),   # RGB
    ("rocket.jpg", 427, 640),      # JPEG RGB
    ("camera.png", 512, 512),      # greyscale
    ("coins.png", 303, 384),       # greyscale, not square
    ("logo.png", 500, 500),        # RGBA
])
def test_sample_images_decode_to_rgb_of_their_size(data_dir, name, height, width):
    data = (data_dir / "images" / name).read_bytes()
    rgb = decode_image(data)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    with Image.open(io.BytesIO(data)) as reference:
        assert np.array_equal(rgb, np.asarray(reference.convert("RGB")))


def test_greyscale_becomes_three_equal_channels(data_dir):
    rgb = decode_image((data_dir / "images" / "camera.png").read_bytes())
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    rgb = decode_image(_encode(Image.fromarray(values), "PNG"))
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_palette_and_animated_gif_become_rgb():
    red = Image.new("RGB", (8, 6), (255, 0, 0))
    cmyk = decode_image(_encode(red.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.shape == (6, 8, 3) and cmyk[..., 0].min() > 200 and cmyk[..., 1].max() < 60
    palette = decode_image(_encode(red.convert("P"), "PNG"))
    assert palette.shape == (6, 8, 3) and (palette == [255, 0, 0]).all()
    frames = [Image.new("RGB", (5, 4), colour) for colour in [(0, 0, 255), (0, 255, 0)]]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = decode_image(gif)
    assert first.shape == (4, 5, 3) and (first == [0, 0, 255]).all()


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rgb = decode_image(_encode(wide, "JPEG", exif=exif.tobytes()))
    assert rgb.shape == (40, 20, 3)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is text", "not a readable image"),
])
def test_bad_bytes_are_short_decode_errors(data, message):
    with pytest.raises(DecodeError, match=message) as caught:
        decode_image(data)
    assert "\n" not in str(caught.value)


def test_truncated_image_is_a_decode_error(data_dir):
    for name in ("rocket.jpg", "chelsea.png"):
        data = (data_dir / "images" / name).read_bytes()
        with pytest.raises(DecodeError):
            decode_image(data[: len(data) // 2])
