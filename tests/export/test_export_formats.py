"""`maskray export --format cvat|label-studio|yolo`, each read back as its tool reads it.

CVAT XML by Datumaro's CVAT importer (the images put beside it, as a CVAT task has them); Label
Studio tasks by label-studio-converter (predictions accepted as annotations, as a reviewer
accepts them, then converted to COCO); YOLO by a small parser here: Datumaro 1.13's YOLO
importers read boxes only (5 fields a line), not segmentation polygons. Masks come back
within IoU 0.9 after polygons, exactly as `<mask>`s; boxes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as coco_mask

from maskray.pipeline.output.schema import FrameRef
from results_helpers import ellipse, prediction, rectangle, run_maskray, write_output

H, W = 96, 128
NAMES = {1: "person", 3: "car", 18: "dog"}


def scene(root: str):
    """Two pictures (one with a two-part mask), an untracked video frame, a frame with nothing."""
    person = ellipse(H, W, 40, 50, 20, 12)
    car = rectangle(H, W, 70, 10, 110, 40) | rectangle(H, W, 70, 60, 100, 90)  # two parts
    dog = ellipse(H, W, 90, 30, 14, 18)
    return [
        (FrameRef(f"{root}/img1.png", 0, None, W, H), prediction([person, car], [1, 3], [0.9, 0.8], NAMES)),
        (FrameRef(f"{root}/sub/img2.png", 0, None, W, H), prediction([dog], [18], [0.7], NAMES)),
        (FrameRef(f"{root}/clip.mp4", 5, 0.2, W, H), prediction([car, dog], [3, 18], [0.6, 0.5], NAMES)),
        (FrameRef(f"{root}/empty.png", 0, None, W, H), prediction([], [], [], NAMES)),
    ]


def expected(frames, names) -> dict:
    """{file name: [(category, score, mask, box)]} in the exports' naming."""
    found = {}
    for ref, pred in frames:
        name = "clip.mp4/000005.png" if ref.time is not None else ref.source.split("/src/")[1]
        found[name] = [(pred.categories[i], round(float(pred.scores[i]), 5),
                        None if pred.masks_rle is None else coco_mask.decode(
                            {"size": [H, W], "counts": pred.masks_rle[i].encode()}),
                        [float(v) for v in pred.boxes[i]]) for i in range(len(pred))]
    return found


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.astype(bool) & b.astype(bool)).sum() / (a.astype(bool) | b.astype(bool)).sum())


def rasterize(polygons: list[list[float]]) -> np.ndarray:
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, H, W)))


@pytest.fixture
def out(tmp_path):
    frames = scene(str(tmp_path / "src"))
    write_output(str(tmp_path / "out"), frames)
    return tmp_path / "out", frames


@pytest.fixture
def boxes_out(tmp_path):
    frames = [(ref, dataclasses.replace(pred, masks_rle=None, mask_areas=None))
              for ref, pred in scene(str(tmp_path / "src"))]
    frames[0][1].boxes[0] = [10.25, 20.5, 60.75, 70.0]  # not on pixel edges: still exact
    write_output(str(tmp_path / "boxes"), frames)
    return tmp_path / "boxes", frames


def put_images(folder, names):
    """The pictures where the tool expects them (CVAT: images/, YOLO: images/ beside labels/)."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path)


def datumaro_cvat(folder):
    from datumaro.components.dataset import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dataset.import_from(str(folder), "cvat")


def test_cvat_polygons_masks_and_boxes_read_back_by_datumaro(out, boxes_out, tmp_path, capsys):
    output, frames = out
    want = expected(frames, NAMES)
    for shapes in ("polygon", "mask"):
        dest = tmp_path / f"cvat-{shapes}"
        code, text, err = run_maskray(["export", output, dest, "--format", "cvat", "--shapes", shapes], capsys)
        assert code == 0 and "wrote 5 instances on 4 images" in text, err
        put_images(dest / "images", want)
        dataset = datumaro_cvat(dest)
        labels = dataset.categories()[1]  # AnnotationType.label
        assert {item.name for item in labels.items} >= {"person", "car", "dog"}
        got = {f"{item.id}.png" if not item.id.endswith(".png") else item.id: item for item in dataset}
        assert {name.rsplit(".", 1)[0] for name in got} == {name.rsplit(".", 1)[0] for name in want}
        for name, instances in want.items():
            item = next(i for n, i in got.items() if n.rsplit(".", 1)[0] == name.rsplit(".", 1)[0])
            by_instance = {}
            for ann in item.annotations:
                key = (labels[ann.label].name, float(ann.attributes["score"]))
                by_instance.setdefault(key, []).append(ann)
            assert set(by_instance) == {(c, s) for c, s, _, _ in instances}
            for category, score, mask, _ in instances:
                anns = by_instance[(category, score)]
                if shapes == "mask":
                    (ann,) = anns
                    assert np.array_equal(ann.image, mask)
                else:
                    assert len({a.group for a in anns}) == 1
                    assert iou(rasterize([a.points for a in anns]), mask) >= 0.9

    dest = tmp_path / "cvat-boxes"
    assert run_maskray(["export", boxes_out[0], dest, "--format", "cvat"], capsys)[0] == 0
    put_images(dest / "images", want)
    for item in datumaro_cvat(dest):
        name = next(n for n in want if n.rsplit(".", 1)[0] == item.id)
        boxes = sorted(a.get_bbox() for a in item.annotations)
        assert boxes == sorted([b[0], b[1], b[2] - b[0], b[3] - b[1]]
                               for b in (box for *_, box in expected(boxes_out[1], NAMES)[name]))


def test_label_studio_tasks_read_back_by_the_converter(out, boxes_out, tmp_path, capsys):
    from label_studio_converter import Converter

    output, frames = out
    want = expected(frames, NAMES)
    tasks_file = tmp_path / "tasks.json"
    code, text, _ = run_maskray(["export", output, tasks_file, "--format", "label-studio"], capsys)
    assert code == 0 and "wrote 4 tasks with 5 predicted instances" in text
    tasks = json.loads(tasks_file.read_text())
    picture = next(t for t in tasks if t["data"]["source"].endswith("img1.png"))
    assert picture["data"]["image"] == "/data/local-files/?d=" + str(tmp_path / "src" / "img1.png").lstrip("/")
    video = next(t for t in tasks if "video" in t["data"])
    assert video["data"]["frame"] == 5 and video["data"]["source"].endswith("clip.mp4")
    scores = sorted(r["score"] for t in tasks for r in t["predictions"][0]["result"])
    assert set(scores) == {0.9, 0.8, 0.7, 0.6, 0.5}

    # A reviewer accepts the predictions; Label Studio's converter turns the tasks into COCO.
    for number, task in enumerate(tasks, start=1):
        task.update(id=number, annotations=[{"id": number, "result": task["predictions"][0]["result"]}])
        task["data"].setdefault("image", "frame.png")  # a video frame: the picture the user extracted
    accepted = tmp_path / "accepted.json"
    accepted.write_text(json.dumps(tasks))
    labels = "".join(f'<Label value="{n}"/>' for n in NAMES.values())
    config = (f'<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">{labels}'
              f'</PolygonLabels><RectangleLabels name="label" toName="image">{labels}</RectangleLabels></View>')
    converter = Converter(config, project_dir=None, download_resources=False)
    converter.convert_to_coco(str(accepted), str(tmp_path / "coco"), is_dir=False)
    coco = json.loads((tmp_path / "coco" / "result.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    parts = {}
    for ann in coco["annotations"]:
        parts.setdefault((ann["image_id"], names[ann["category_id"]]), []).extend(ann["segmentation"])
    for image_number, task in enumerate(tasks):
        name = task["data"]["source"].split("/src/")[1]
        name = "clip.mp4/000005.png" if "video" in task["data"] else name
        for category, _, mask, _ in want[name]:
            assert iou(rasterize(parts[(image_number, category)]), mask) >= 0.9

    boxes_file = tmp_path / "boxes.json"
    assert run_maskray(["export", boxes_out[0], boxes_file, "--format", "label-studio"], capsys)[0] == 0
    first = json.loads(boxes_file.read_text())[0]["predictions"][0]["result"][0]
    assert first["type"] == "rectanglelabels"
    value = first["value"]
    assert [value["x"] * W / 100, value["y"] * H / 100, (value["x"] + value["width"]) * W / 100,
            (value["y"] + value["height"]) * H / 100] == pytest.approx([10.25, 20.5, 60.75, 70.0], abs=1e-9)


def read_yolo(folder):
    """{label file: [(class name, polygon in pixels)]}: YOLO segmentation as Ultralytics reads it."""
    names = yaml.safe_load((folder / "data.yaml").read_text())["names"]
    found = {}
    for path in (folder / "labels").rglob("*.txt"):
        rows = []
        for line in path.read_text().splitlines():
            index, *coordinates = line.split()
            xy = np.array(coordinates, float).reshape(-1, 2)
            assert ((0 <= xy) & (xy <= 1)).all()
            rows.append((names[int(index)], (xy * [W, H]).reshape(-1).tolist()))
        found[str(path.relative_to(folder / "labels"))] = rows
    return found


def test_yolo_labels_and_data_yaml(out, boxes_out, tmp_path, capsys):
    output, frames = out
    want = expected(frames, NAMES)
    dest = tmp_path / "yolo"
    code, text, _ = run_maskray(["export", output, dest, "--format", "yolo"], capsys)
    assert code == 0 and "wrote 5 instances in 4 label files" in text
    names = yaml.safe_load((dest / "data.yaml").read_text())["names"]
    assert sorted(names.values()) == sorted(NAMES.values()) and list(names) == list(range(len(names)))
    got = read_yolo(dest)
    assert set(got) == {name.rsplit(".", 1)[0] + ".txt" for name in want}
    assert got["empty.txt"] == []
    for name, instances in want.items():
        rows = got[name.rsplit(".", 1)[0] + ".txt"]  # one line an instance, best score first
        assert [category for category, _ in rows] == [category for category, *_ in instances]
        for (_, polygon), (_, _, mask, _) in zip(rows, instances):
            assert iou(rasterize([polygon]), mask) >= 0.9

    boxes = tmp_path / "yolo-boxes"
    assert run_maskray(["export", boxes_out[0], boxes, "--format", "yolo"], capsys)[0] == 0
    category, corners = read_yolo(boxes)["img1.txt"][0]
    xy = np.array(corners).reshape(-1, 2)
    assert category == "person"
    assert [xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()] == pytest.approx(
        [10.25, 20.5, 60.75, 70.0], abs=1e-3)  # 6 decimals of a fraction of the width


def test_format_mistakes_are_one_line(out, tmp_path, capsys):
    output, _ = out
    for argv, message in [
        (["export", output, tmp_path / "x", "--format", "nope"], "unknown export format 'nope'"),
        (["export", output, tmp_path / "x", "--format", "yolo", "--shapes", "mask"], "--shapes does not apply"),
        (["export", output, "--format", "yolo"], "DEST with --format"),
        (["export", output, tmp_path / "x"], "DEST with --format"),
    ]:
        code, _, err = run_maskray(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
