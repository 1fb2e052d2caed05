"""CVAT XML 1.1, as CVAT's "CVAT for images 1.1" and "CVAT for video 1.1" imports read it.

DEST/annotations.xml: one `<image>` per processed frame (pictures by their path below the
sources' common folder, untracked video frames as `<video>/<frame>.png`), each instance a
`<polygon>` per part (parts of one instance share a `group_id`), or with `--shapes mask` a
`<mask>` (CVAT's RLE: run lengths over the instance's box, row by row, from a run of zeros);
a model without masks gives `<box>`es. Labels are the model's categories; the score rides
along as the attribute `score`, and every shape says `source="auto"`.

A tracked video (`--track`) gets DEST/<video>/annotations.xml for its own CVAT task: one
`<track>` per track id, a keyframe shape at each processed frame it was seen (the largest
part of its mask, or its box) and `outside="1"` at the next processed frame it was not.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import numpy as np

from maskray.pipeline import storage
from maskray.pipeline.export.exporter import Exporter, Option
from maskray.pipeline.export.files import StreamedFile
from maskray.pipeline.export.shapes import mask_of, polygons


class CvatExporter(Exporter):
    name = "cvat"
    options = (Option("shapes", "masks as <polygon> (default) or <mask>", ("polygon", "mask")),)

    def open(self, dest: str) -> None:
        self.dest, self.images, self.shapes, self.videos = storage.canonical(dest), 0, 0, 0
        tracked = "track" in self.context.output.instances().schema.names
        frames = sum(len(f) for s, f in self.context.frames.items() if not (tracked and _is_video(f)))
        self.file = StreamedFile(storage.join(self.dest, "annotations.xml"))
        self.file.write(_header("annotation", frames, self.context.categories))

    def write_source(self, source, frames, instances) -> None:
        rows = instances.to_pylist()
        if _is_video(frames) and any(r["track_id"] is not None for r in rows):
            return self._write_tracks(source, frames, rows)
        by_frame: dict[int, list[dict]] = {}
        for row in rows:
            by_frame.setdefault(row["frame"], []).append(row)
        for frame in frames:
            name = quoteattr(self.context.file_name(source, frame))
            self.file.write(f'  <image id="{self.images}" name={name} width="{frame.width}" height="{frame.height}">\n')
            for group, row in enumerate(by_frame.get(frame.frame, []), start=1):
                self.file.write(self._shapes(row, group))
                self.shapes += 1
            self.file.write("  </image>\n")
            self.images += 1

    def _shapes(self, row: dict, group: int) -> str:
        return _shape(row, f'label={quoteattr(row["category"])} source="auto" occluded="0" z_order="0"',
                      self.settings.get("shapes"), group)

    def _write_tracks(self, source, frames, rows) -> None:
        processed = [f.frame for f in frames]
        tracks: dict[int, list[dict]] = {}
        for row in rows:
            if row["track_id"] is not None:  # an instance of a track never confirmed is in no track
                tracks.setdefault(row["track_id"], []).append(row)
        name = self.context.file_name(source, frames[0]).rsplit("/", 1)[0]
        file = StreamedFile(storage.join(self.dest, name, "annotations.xml"))
        file.write(_header("interpolation", processed[-1] + 1, self.context.categories,
                           (frames[0].width, frames[0].height)))
        for number, (track_id, seen) in enumerate(sorted(tracks.items())):
            file.write(f'  <track id="{number}" label={quoteattr(seen[0]["category"])} source="auto">\n')
            present = {r["frame"]: r for r in seen}
            was_seen = False
            for frame in processed:
                row = present.get(frame)
                if row is None and was_seen:
                    last = present[max(f for f in present if f < frame)]
                    file.write(self._track_shape(dict(last, frame=frame), outside=1))
                elif row is not None:
                    file.write(self._track_shape(row, outside=0))
                    self.shapes += 1
                was_seen = row is not None
            file.write("  </track>\n")
        file.write("</annotations>\n")
        file.commit()
        self.videos += 1

    def _track_shape(self, row: dict, outside: int) -> str:
        # Shapes of a track carry no label (the track does) and one shape a frame: a mask's largest part.
        common = f'frame="{row["frame"]}" keyframe="1" outside="{outside}" occluded="0" z_order="0"'
        return _shape(row, common, self.settings.get("shapes"), None)

    def close(self) -> list[str]:
        self.file.write("</annotations>\n")
        self.file.commit()
        lines = [f"wrote {self.shapes} instances on {self.images} images to {storage.join(self.dest, 'annotations.xml')}"]
        if self.videos:
            lines.append(f"wrote the tracks of {self.videos} tracked videos to {self.dest}/<video>/annotations.xml")
        return lines


def _shape(row: dict, common: str, shapes, group) -> str:
    """One instance's element(s): `<box>` without a mask, `<mask>`, or `<polygon>`s (group
    None: the largest part only)."""
    score = f'    <attribute name="score">{row["score"]:.5f}</attribute>\n'
    if row["mask_rle"] is None:
        box = f'xtl="{row["x1"]:.2f}" ytl="{row["y1"]:.2f}" xbr="{row["x2"]:.2f}" ybr="{row["y2"]:.2f}"'
        return f"   <box {common} {box}>\n{score}   </box>\n"
    mask = mask_of(row)
    if shapes == "mask":
        return f"   <mask {common} {_cvat_rle(mask)}>\n{score}   </mask>\n"
    parts = polygons(mask)
    if group is None:
        parts = parts[:1]
    grouped = f' group_id="{group}"' if group and len(parts) > 1 else ""
    return "".join(f'   <polygon {common}{grouped} points="{_points(p)}">\n{score}   </polygon>\n' for p in parts)


def _is_video(frames) -> bool:
    return bool(frames) and frames[0].time is not None


def _header(mode: str, size: int, categories: dict[int, str], frame_size=None) -> str:
    score = ("<attributes><attribute><name>score</name><mutable>False</mutable><input_type>text</input_type>"
             "<default_value></default_value><values></values></attribute></attributes>")
    labels = "".join(f"        <label><name>{escape(name)}</name>{score}</label>\n" for name in categories.values())
    return ('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n'
            f"    <task>\n      <name>maskray</name>\n      <size>{size}</size>\n      <mode>{mode}</mode>\n"
            f"      <start_frame>0</start_frame>\n      <stop_frame>{max(size - 1, 0)}</stop_frame>\n"
            f"      <labels>\n{labels}      </labels>\n{_original_size(frame_size)}    </task>\n  </meta>\n")


def _original_size(frame_size) -> str:
    """A video task's frame size (CVAT for video names it once, not per image)."""
    if frame_size is None:
        return ""
    width, height = frame_size
    return f"      <original_size>\n        <width>{width}</width>\n        <height>{height}</height>\n      </original_size>\n"


def _points(polygon: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in polygon)


def _cvat_rle(mask: np.ndarray) -> str:
    """CVAT's mask attributes: the box (left, top, width, height) and run lengths inside it."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 'rle="0" left="0" top="0" width="1" height="1"'
    left, top, right, bottom = xs.min(), ys.min(), xs.max(), ys.max()
    flat = mask[top:bottom + 1, left:right + 1].reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return (f'rle="{", ".join(str(int(r)) for r in runs)}" left="{left}" top="{top}" '
            f'width="{right - left + 1}" height="{bottom - top + 1}"')
