"""Images over the pixel limit are decoded reduced whatever the format (issue 23, "Memory"):
an 8-bit PNG band by band, never whole, with exactly the pixels a whole decode and
`Image.reduce` give, and the frame keeping its own size. No Ray. The peak memory of a
13000x13000 PNG is measured by `python -m benchmarks.large_png`."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from maskray.pipeline.inputs import images, png_strips
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.images import decode_frames


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _whole_then_reduced(data: bytes, max_pixels: int) -> np.ndarray:
    rgb = images._to_rgb(Image.open(io.BytesIO(data)))
    return np.asarray(rgb.reduce(images._reduction(rgb.size, max_pixels)))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P"])
def test_a_png_over_the_limit_is_decoded_in_bands_with_the_pixels_of_a_whole_decode(data_dir, monkeypatch, mode):
    picture = Image.open(data_dir / "images" / "astronaut.png").convert("RGB").resize((509, 383))
    picture = picture.quantize(200) if mode == "P" else picture.convert(mode)
    data = _png(picture)
    monkeypatch.setattr(png_strips, "BAND_BYTES", 20_000)  # many bands, the last one short
    bands = []
    real_decode = png_strips._decode_band
    monkeypatch.setattr(png_strips, "_decode_band", lambda *a: bands.append(a[-1]) or real_decode(*a))
    (frame,) = decode_frames(data, max_pixels=100 * 100)
    assert (frame.width, frame.height) == (509, 383)  # outputs map back to the image's own pixels
    assert frame.rgb.shape[0] * frame.rgb.shape[1] <= 100 * 100
    assert np.array_equal(frame.rgb, _whole_then_reduced(data, 100 * 100))
    assert len(bands) > 5 and max(bands) < 383  # never the whole image at once


def test_a_truncated_large_png_is_a_short_decode_error(data_dir):
    data = _png(Image.open(data_dir / "images" / "astronaut.png").convert("RGB"))
    with pytest.raises(DecodeError, match="corrupt or truncated"):
        list(decode_frames(data[: len(data) * 2 // 3] + data[-12:], max_pixels=100 * 100))


def test_layouts_the_band_path_does_not_take_are_decoded_whole_and_reduced():
    values = (np.arange(300 * 200, dtype=np.uint32).reshape(200, 300) * 7 % 65536).astype(np.uint16)
    data = _png(Image.fromarray(values))  # 16-bit greyscale: decoded whole, then reduced
    assert png_strips.reduced_png(data, 2, images._to_rgb) is None
    (frame,) = decode_frames(data, max_pixels=100 * 100)
    assert (frame.width, frame.height) == (300, 200) and np.array_equal(frame.rgb, _whole_then_reduced(data, 100 * 100))


def test_a_large_png_keeps_its_exif_rotation_without_being_decoded_whole(monkeypatch):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.new("RGB", (400, 200), (200, 10, 10)).save(buffer, "PNG", exif=exif.tobytes())
    monkeypatch.setattr(png_strips, "BAND_BYTES", 400 * 3 * 10)  # bands of 9 rows
    loads = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size) or real_load(self))
    (frame,) = decode_frames(buffer.getvalue(), max_pixels=100 * 100)
    assert (frame.width, frame.height) == (200, 400) and frame.rgb.shape == (134, 67, 3)
    assert (400, 200) not in loads  # reading the orientation did not decode the full image
