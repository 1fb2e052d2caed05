"""A YOLO segmentation set, as Ultralytics (and Datumaro's `yolo_ultralytics_segmentation`) read it.

DEST/labels/<name>.txt per processed frame (pictures by their path below the sources' common
folder, with `.txt` for the extension; video frames `<video>/<frame:06d>.txt`), one line an
instance: the class index, then its polygon as x y pairs normalised to [0, 1] by the frame's
width and height. A mask of several parts is one ring joined along zero-width seams; a model
without masks gives the box's four corners. Frames without instances get an empty file (a
negative example). DEST/data.yaml names the classes in index order (the model's categories,
sorted by id); `train`/`val` point at DEST/images, where the pictures go (maskray does not
copy them).
"""

from __future__ import annotations

import json

import numpy as np

from maskray.pipeline import storage
from maskray.pipeline.export.exporter import Exporter
from maskray.pipeline.export.shapes import mask_of, one_polygon, polygons
from maskray.pipeline.output.reader import write_file


class YoloExporter(Exporter):
    name = "yolo"

    def open(self, dest: str) -> None:
        self.dest = storage.canonical(dest)
        self.index = {category: i for i, category in enumerate(self.context.categories)}
        self.files = self.lines = 0

    def write_source(self, source, frames, instances) -> None:
        by_frame: dict[int, list[str]] = {}
        for row in instances.to_pylist():
            by_frame.setdefault(row["frame"], []).append(self._line(row))
        for frame in frames:
            name = self.context.file_name(source, frame).rsplit(".", 1)[0] + ".txt"
            lines = by_frame.get(frame.frame, [])
            write_file(storage.join(self.dest, "labels", name), "".join(line + "\n" for line in lines).encode())
            self.files += 1
            self.lines += len(lines)

    def _line(self, row: dict) -> str:
        if row["mask_rle"] is None:
            x1, y1, x2, y2 = row["x1"], row["y1"], row["x2"], row["y2"]
            ring = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
        else:
            ring = one_polygon(polygons(mask_of(row)))
        normalised = np.clip(ring / [row["width"], row["height"]], 0.0, 1.0)
        return f"{self.index[row['category_id']]} " + " ".join(f"{v:.6f}" for v in normalised.reshape(-1))

    def close(self) -> list[str]:
        names = "".join(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(self.context.categories.values()))
        yaml = f"path: .\ntrain: images\nval: images\nnames:\n{names}"
        write_file(storage.join(self.dest, "data.yaml"), yaml.encode())
        return [f"wrote {self.lines} instances in {self.files} label files to {self.dest}/labels "
                f"and the class names to {self.dest}/data.yaml"]
