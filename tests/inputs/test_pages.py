"""Every page of a multi-page image is planned and decoded (issue 23, "Pages"); no Ray.

Multi-page TIFFs are counted at planning (`shards.count_pages`); a count that cannot be
told is an error row, never a silent 1. Animated WebP and PNG are not counted at planning:
their worker decodes every frame of them. Files are made here with Pillow (a planar TIFF,
which Pillow cannot write, by hand: one strip per colour plane).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maskray.pipeline.inputs import shards
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.images import decode_frames
from maskray.pipeline.inputs.listing import list_media
from maskray.pipeline.inputs.plan_stream import plan_shards
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.inputs.shard_frames import iter_shard_frames
from maskray.pipeline.output.schema import FrameError


def _random_pages(count: int, sizes=None) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    sizes = sizes or [(64, 96)] * count
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _save_pages(path, pages, **options) -> str:
    pages[0].save(path, save_all=True, append_images=pages[1:], **options)
    return str(path)


def _planar_tiff(path, rgb: np.ndarray, bits: int = 8) -> str:
    """An uncompressed RGB TIFF with separate colour planes (PlanarConfiguration 2)."""
    height, width, _ = rgb.shape
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    planes = [np.ascontiguousarray(rgb[:, :, c]).astype(dtype).tobytes() for c in range(3)]
    tags = 11
    bits_at = 8 + 2 + tags * 12 + 4
    offsets_at, counts_at = bits_at + 6, bits_at + 18
    first_strip = counts_at + 12
    offsets = [first_strip + n * len(planes[0]) for n in range(3)]
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 3, offsets_at), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 3, counts_at),
               (284, 3, 1, 2), (339, 3, 1, 1)]
    data = b"II*\x00" + struct.pack("<IH", 8, tags) + b"".join(struct.pack("<HHII", *e) for e in entries)
    data += struct.pack("<I", 0) + struct.pack("<3H", bits, bits, bits)
    data += struct.pack("<3I", *offsets) + struct.pack("<3I", *(len(p) for p in planes)) + b"".join(planes)
    with open(path, "wb") as stream:
        stream.write(data)
    return str(path)


def _frames_of(folder) -> dict:
    """{(file name, frame): 'ok' or the error message} over the planned shards of `folder`."""
    found = {}
    for shard in plan_shards(list_media([str(folder)]), Sampling(), None, workers=1):
        for item in iter_shard_frames(shard):
            if isinstance(item, FrameError):
                found[(os.path.basename(item.source), item.frame)] = item.message
            else:
                found[(os.path.basename(item[0].source), item[0].frame)] = "ok"
    return found


def test_an_uncompressed_tiff_whose_header_holds_a_newline_keeps_all_four_pages(tmp_path):
    path = _save_pages(tmp_path / "scan.tif", _random_pages(4))
    with open(path, "rb") as stream:
        assert b"\n" in stream.read(100)  # what made Pillow's IM plugin call readline()
    # A fresh interpreter: Pillow's plugin order there is what a planning task meets.
    script = ("import sys; from maskray.pipeline.inputs import shards;"
              "print(shards.count_pages([sys.argv[1]])[0]);"
              "shards.PAGE_COUNT_BUFFER_BYTES = 0;"  # the large-file path: ranged reads
              "print(shards.count_pages([sys.argv[1]])[0])")
    out = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["4", "4"]
    assert _frames_of(tmp_path) == {("scan.tif", n): "ok" for n in range(4)}


@pytest.mark.parametrize("options", [{"compression": "tiff_lzw"}, {"compression": "tiff_adobe_deflate"}, {}])
def test_tiff_pages_of_any_compression_and_mixed_sizes_are_all_decoded(tmp_path, options):
    sizes = [(64, 96), (40, 30), (96, 64), (17, 23)]
    pages = _random_pages(4, sizes)
    path = _save_pages(tmp_path / "mixed.tiff", pages, **options)
    assert shards.count_pages([path]) == [4]
    decoded = {}
    for shard in plan_shards(list_media([str(tmp_path)]), Sampling(), None, workers=1):
        for ref, rgb, _ in iter_shard_frames(shard):
            decoded[ref.frame] = ((ref.width, ref.height), rgb)
    assert sorted(decoded) == [0, 1, 2, 3]
    for number, page in enumerate(pages):
        size, rgb = decoded[number]
        assert size == sizes[number] and np.array_equal(rgb, np.asarray(page))


@pytest.mark.parametrize("bits", [8, 16])
def test_a_planar_tiff_decodes_to_its_own_pixels(tmp_path, bits):
    rgb = np.random.default_rng(3).integers(0, 256, (96, 64, 3), dtype=np.uint8)
    values = rgb if bits == 8 else rgb.astype(np.uint16) * 257  # 16-bit: the same colours at full depth
    path = _planar_tiff(tmp_path / "planar.tif", values, bits)
    (frame,) = decode_frames(open(path, "rb").read())
    assert np.array_equal(frame.rgb, rgb)  # before: "unrecognised format", or garbage at 16 bits


def test_a_tiff_layout_without_an_rgb_reading_says_so(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = _planar_tiff(tmp_path / "odd.tif", rgb)
    data = bytearray(open(path, "rb").read())
    data[data.index(struct.pack("<HHII", 339, 3, 1, 1)) + 8] = 3  # SampleFormat: IEEE float, at 8 bits
    with pytest.raises(DecodeError, match="unsupported TIFF layout"):
        list(decode_frames(bytes(data)))


def test_a_tiff_whose_pages_cannot_be_counted_is_an_error_row_not_one_page(tmp_path):
    _save_pages(tmp_path / "good.tif", _random_pages(3))
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 60)  # a TIFF's magic, then nonsense
    good, junk = shards.count_pages([str(tmp_path / "good.tif"), str(tmp_path / "junk.tif")])
    assert good == 3 and isinstance(junk, str) and not junk.startswith("transient")
    frames = _frames_of(tmp_path)
    assert {k: v for k, v in frames.items() if k[0] == "good.tif"} == {("good.tif", n): "ok" for n in range(3)}
    assert [k for k in frames if k[0] == "junk.tif"] == [("junk.tif", 0)]
    assert frames[("junk.tif", 0)] == junk and "Error" not in junk  # user words, not an exception's name


def test_a_listed_tiff_deleted_before_counting_is_a_transient_row(tmp_path):
    path = _save_pages(tmp_path / "gone.tif", _random_pages(2))
    os.remove(path)
    (count,) = shards.count_pages([path])
    assert count.startswith("transient: ") and "not found" in count and "Errno" not in count


@pytest.mark.parametrize("name, options", [("anim.webp", {"lossless": True}), ("anim.png", {})])
def test_every_frame_of_an_animated_webp_and_png_is_processed(tmp_path, name, options):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    pictures = [Image.new("RGB", (24, 16), colour) for colour in colours]
    _save_pages(tmp_path / name, pictures, duration=[100, 200, 300], **options)
    Image.new("RGB", (24, 16), (9, 9, 9)).save(tmp_path / "still.png")
    decoded = {}
    for shard in plan_shards(list_media([str(tmp_path)]), Sampling(), None, workers=1):
        for ref, rgb, _ in iter_shard_frames(shard):
            decoded[(os.path.basename(ref.source), ref.frame)] = (ref.time, tuple(int(v) for v in rgb[8, 12]))
    assert decoded == {(name, 0): (0.0, colours[0]), (name, 1): (0.1, colours[1]), (name, 2): (0.3, colours[2]),
                       ("still.png", 0): (None, (9, 9, 9))}
