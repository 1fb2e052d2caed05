"""The shapes generator: deterministic by seed, COCO-loadable, keypoints at extreme points."""

import json

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from maskray.jobs.training.coco_dataset import CocoDataset
from maskray.jobs.training.shapes import extreme_points, generate_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("a"), images=4, videos=1, frames=6, seed=7)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_the_same_files_and_another_seed_does_not(shapes, tmp_path):
    again = generate_shapes(tmp_path / "b", images=4, videos=1, frames=6, seed=7)
    assert _files(shapes.root) == _files(again.root)
    other = generate_shapes(tmp_path / "c", images=4, videos=0, seed=8)
    assert (shapes.images_dir / "shapes_00000.png").read_bytes() != (other.images_dir / "shapes_00000.png").read_bytes()


def test_coco_json_loads_in_pycocotools_with_masks_boxes_and_keypoints(shapes):
    coco = COCO(str(shapes.images_json))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["circle", "square", "triangle"]
    assert coco.loadCats(1)[0]["keypoints"] == ["top", "bottom", "left", "right"]
    assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds()) >= 4
    for annotation in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(annotation["image_id"])[0]
        mask = coco.annToMask(annotation)
        assert mask.shape == (image["height"], image["width"])
        assert mask.sum() == annotation["area"] > 0
        ys, xs = np.nonzero(mask)
        assert annotation["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        top, bottom, left, right = np.array(annotation["keypoints"]).reshape(4, 3)
        assert top[1] == ys.min() + 0.5 and bottom[1] == ys.max() + 0.5
        assert left[0] == xs.min() + 0.5 and right[0] == xs.max() + 0.5
        assert annotation["num_keypoints"] == 4 and (top[2], bottom[2], left[2], right[2]) == (2, 2, 2, 2)


def test_images_show_the_shapes_the_masks_say():
    rng = np.random.default_rng(0)
    from maskray.jobs.training.shapes import render_image

    rgb, instances = render_image(rng, 128, 128, max_shapes=3)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8 and instances
    for instance in instances:  # a shape's pixels stand out from the pixels around it
        inside = rgb[instance.mask].astype(float).mean(0)
        ring = np.zeros_like(instance.mask)
        ys, xs = np.nonzero(instance.mask)
        ring[max(ys.min() - 6, 0):ys.max() + 7, max(xs.min() - 6, 0):xs.max() + 7] = True
        ring &= ~np.any([i.mask for i in instances], axis=0)
        if ring.sum() > 20:
            assert np.abs(inside - rgb[ring].astype(float).mean(0)).sum() > 40


def test_extreme_points_of_a_square_are_its_edge_midpoints():
    mask = np.zeros((20, 30), bool)
    mask[4:10, 6:16] = True
    assert extreme_points(mask)[:, :2].tolist() == [[11.0, 4.5], [11.0, 9.5], [6.5, 7.0], [15.5, 7.0]]


def test_video_frames_have_ground_truth_with_source_and_frame(shapes):
    video = shapes.videos_dir / "shapes_video_000.mp4"
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (192, 256, 3)
    data = json.loads(shapes.videos_json.read_text())
    assert [(i["source"], i["frame"]) for i in data["images"]] == [("shapes_video_000.mp4", k) for k in range(6)]
    assert all(i["file_name"] == "shapes_video_000.mp4" for i in data["images"])
    boxes = {}
    for annotation in data["annotations"]:
        boxes.setdefault(annotation["image_id"], []).append(annotation["bbox"])
    assert boxes[1] != boxes[6]  # the shapes moved
    merged = COCO(str(shapes.ground_truth_json))
    assert len(merged.getImgIds()) == 4 + 6


def test_coco_dataset_reads_images_polygons_and_video_frames(shapes, tmp_path):
    dataset = CocoDataset(shapes.images_dir, shapes.images_json)
    image, target = dataset[0]
    n = len(target["labels"])
    assert image.shape == (3, 192, 192) and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].shape == (n, 4) and target["masks"].shape == (n, 192, 192)
    assert target["keypoints"].shape == (n, 4, 3)
    frames = CocoDataset(shapes.videos_dir, shapes.videos_json)
    frame, frame_target = frames[3]
    assert frame.shape == (3, 192, 256) and frame_target["masks"].shape[1:] == (192, 256)

    # A dataset of another origin: polygons, no keypoints, a crowd region that is skipped.
    Image.open("tests/data/images/coffee.png").convert("RGB").save(tmp_path / "coffee.png")
    polygon = [[10, 10, 100, 10, 100, 80, 10, 80]]
    coco = {"images": [{"id": 5, "file_name": "coffee.png", "width": 600, "height": 400}],
            "categories": [{"id": 47, "name": "cup"}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 47, "segmentation": polygon,
                             "bbox": [10, 10, 90, 70], "area": 6300, "iscrowd": 0},
                            {"id": 2, "image_id": 5, "category_id": 47, "iscrowd": 1, "bbox": [0, 0, 5, 5],
                             "segmentation": mask_utils.encode(np.asfortranarray(np.ones((400, 600), np.uint8)))
                             ["counts"].decode()}]}
    (tmp_path / "cups.json").write_text(json.dumps(coco))
    cups = CocoDataset(tmp_path, tmp_path / "cups.json")
    image, target = cups[0]
    assert image.shape[0] == 3 and target["labels"].tolist() == [47] and "keypoints" not in target
    assert 6000 < int(target["masks"][0].sum()) < 6700
