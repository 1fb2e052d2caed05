"""Peak memory of decoding one very large PNG as a worker does, before and after band decoding.

    python -m benchmarks.large_png                 # 13000x13000 RGB, 3 repeats of each
    python -m benchmarks.large_png --side 8000 --repeat 5

Each decode runs in a fresh process (its peak RSS, `ru_maxrss`, is its own): "before" is the
path maskray took for a PNG over the pixel limit until band decoding (Pillow loads the whole
image, converts it to RGB, then `Image.reduce`); "after" is `images.decode_frames` now. Both
give the same pixels (checked here). The figure is the median of the repeats, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import hashlib, io, json, resource, sys, time, warnings
import numpy as np
from PIL import Image
from maskray.pipeline.inputs import images
path, how = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
began = time.perf_counter()
if how == "before":
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    page = Image.open(io.BytesIO(data))
    page.load()
    rgb = images._to_rgb(page)
    rgb = np.asarray(rgb.reduce(images._reduction(rgb.size, images.MAX_DECODE_PIXELS)))
else:
    rgb = next(images.decode_frames(data)).rgb
seconds = time.perf_counter() - began
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
                  "shape": list(rgb.shape), "digest": hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()}))
"""


def make_png(path: str, side: int) -> None:
    """A smooth RGB picture with some texture (compresses as a photo-like PNG does), made in
    bands so the generator itself stays small."""
    import numpy as np
    from PIL import Image

    image = Image.new("RGB", (side, side))
    rng = np.random.default_rng(0)
    x = np.arange(side, dtype=np.float32)
    for top in range(0, side, 1000):
        rows = min(1000, side - top)
        y = np.arange(top, top + rows, dtype=np.float32)[:, None]
        band = np.stack([(x[None, :] + y) % 256, (x[None, :] * 0.5) % 256 + 0 * y, (y * 0.7) % 256 + 0 * x[None, :]], -1)
        band += rng.integers(0, 8, band.shape)
        image.paste(Image.fromarray(np.clip(band, 0, 255).astype(np.uint8)), (0, top))
    image.save(path, compress_level=1)


def measure(path: str, how: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, path, how], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=13000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"large-{args.side}.png")
        # In a process of its own: a child's peak RSS starts at its parent's size at fork
        # time, so the parent must never have held the full-size picture.
        subprocess.run([sys.executable, "-c", "import sys; from benchmarks.large_png import make_png;"
                        " make_png(sys.argv[1], int(sys.argv[2]))", path, str(args.side)], check=True)
        runs = {"before": [], "after": []}
        for _ in range(args.repeat):  # interleaved, so background load hits both alike
            for how in runs:
                runs[how].append(measure(path, how))
        size_mb = os.path.getsize(path) / 2**20
    digests = {run["digest"] for how in runs for run in runs[how]}
    print(f"{args.side}x{args.side} RGB PNG ({size_mb:.0f} MB file), decoded to "
          f"{runs['after'][0]['shape'][1]}x{runs['after'][0]['shape'][0]}; medians of {args.repeat}:")
    print(f"{'':8}{'peak RSS MB':>12}{'seconds':>10}")
    for how, found in runs.items():
        print(f"{how:8}{statistics.median(r['peak_mb'] for r in found):12.0f}"
              f"{statistics.median(r['seconds'] for r in found):10.1f}")
    print("same pixels: " + ("yes" if len(digests) == 1 else "NO"))


if __name__ == "__main__":
    main()
