"""Label Studio tasks with pre-annotations, as its JSON import reads them.

DEST is one JSON list, one task per processed frame: `data.image` is the picture (an
`s3://`/`gs://` URI as it is, for a cloud storage connected to the project; a local path as
`/data/local-files/?d=<path>`, for local storage with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
set to `/`); a video frame's task has `data.video` and `data.frame` instead. Its
`predictions` hold one prediction of the model (`model_version`) with the mean score, and
per instance a `polygonlabels` result per part of its mask (or `rectanglelabels` for a model
without masks), points in percent of the frame, each with its `score`. The labeling config
these results expect: `<Image name="image" value="$image"/>` with
`<PolygonLabels name="label" toName="image">` (and RectangleLabels of the same name).
"""

from __future__ import annotations

import json

from maskray.pipeline import storage
from maskray.pipeline.export.exporter import Exporter
from maskray.pipeline.export.files import StreamedFile
from maskray.pipeline.export.shapes import mask_of, polygons


class LabelStudioExporter(Exporter):
    name = "label-studio"

    def open(self, dest: str) -> None:
        self.dest = dest
        self.file = StreamedFile(dest)
        self.file.write("[")
        self.tasks = self.results = 0
        self.model = str(self.context.output.job.get("model", "maskray"))

    def write_source(self, source, frames, instances) -> None:
        by_frame: dict[int, list[dict]] = {}
        for row in instances.to_pylist():
            by_frame.setdefault(row["frame"], []).append(row)
        for frame in frames:
            rows = by_frame.get(frame.frame, [])
            if frame.time is None:
                data = {"image": _url(source)}
            else:
                data = {"video": _url(source), "frame": frame.frame, "time": frame.time}
            results = [r for row in rows for r in _results(row)]
            score = sum(r["score"] for r in rows) / len(rows) if rows else 0.0
            task = {"data": dict(data, source=source),
                    "predictions": [{"model_version": self.model, "score": round(score, 5), "result": results}]}
            self.file.write(("," if self.tasks else "") + "\n" + json.dumps(task))
            self.tasks += 1
            self.results += len(rows)

    def close(self) -> list[str]:
        self.file.write("\n]\n")
        self.file.commit()
        return [f"wrote {self.tasks} tasks with {self.results} predicted instances to {self.dest}"]


def _url(source: str) -> str:
    return f"/data/local-files/?d={source.lstrip('/')}" if storage.is_local(source) else source


def _results(row: dict) -> list[dict]:
    width, height = row["width"], row["height"]
    common = {"from_name": "label", "to_name": "image", "original_width": width, "original_height": height,
              "image_rotation": 0, "score": round(row["score"], 5)}
    ident = f"{row['frame']}-{row['instance']}"
    if row["mask_rle"] is None:
        value = {"x": 100 * row["x1"] / width, "y": 100 * row["y1"] / height,
                 "width": 100 * (row["x2"] - row["x1"]) / width, "height": 100 * (row["y2"] - row["y1"]) / height,
                 "rotation": 0, "rectanglelabels": [row["category"]]}
        return [dict(common, id=ident, type="rectanglelabels", value=value)]
    return [dict(common, id=f"{ident}-{n}", type="polygonlabels",
                 value={"points": [[100 * x / width, 100 * y / height] for x, y in part.tolist()],
                        "closed": True, "polygonlabels": [row["category"]]})
            for n, part in enumerate(polygons(mask_of(row)))]
