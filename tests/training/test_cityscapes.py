"""Cityscapes: the synthetic look-alike against the official scripts' loaders, training targets,
export read back by the official evaluation, AP 1.0 for perfect and less for shifted masks,
and a short training run whose checkpoint a real `submit` job loads and `eval` scores."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from results_helpers import prediction, run_maskray, write_output
from submit_helpers import local_ray
from maskray.jobs.training.cityscapes_dataset import CityscapesDataset
from maskray.jobs.training.cityscapes_synthetic import generate_cityscapes
from maskray.pipeline.evaluation.cityscapes import official_evaluation
from maskray.pipeline.cityscapes.files import ground_truth_index
from maskray.pipeline.cityscapes.ground_truth import instance_image
from maskray.pipeline.cityscapes.labels import INSTANCE_LABELS, is_instance, label_of
from maskray.pipeline.output.schema import FrameRef

WIDTH, HEIGHT = 512, 256


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    generate_cityscapes(root, train=3, val=3, width=WIDTH, height=HEIGHT, seed=0)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_generator_writes_what_the_official_loaders_read(city, tmp_path):
    from cityscapesscripts.evaluation.instances2dict import instances2dict
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.helpers.csHelpers import getCsFileInfo
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    index = ground_truth_index(city)
    assert sorted({f.split for f in index.values()}) == ["train", "val"] and len(index) == 6
    groups = 0
    for core, files in index.items():
        assert files.polygons and files.instance_ids and files.image
        assert files.image.parts[-4:-1] == ("leftImg8bit", files.split, core.split("_")[0])
        info = getCsFileInfo(str(files.polygons))
        assert (info.type, info.type2, info.ext) == ("gtFine", "polygons", "json")
        annotation = Annotation()
        annotation.fromJsonFile(str(files.polygons))
        assert (annotation.imgWidth, annotation.imgHeight) == (WIDTH, HEIGHT)
        ours = np.asarray(Image.open(files.instance_ids))
        assert ours.shape == (HEIGHT, WIDTH) and Image.open(files.image).size == (WIDTH, HEIGHT)
        assert np.array_equal(ours, np.asarray(createInstanceImage(annotation, "ids")))
        label_png = files.polygons.with_name(core + "_gtFine_labelIds.png")
        assert np.array_equal(np.asarray(Image.open(label_png)), np.asarray(createLabelImage(annotation, "ids")))
        found = instances2dict([str(files.instance_ids)])[str(files.instance_ids.resolve())]
        singles = [i for name in INSTANCE_LABELS.values() for i in found[name] if i["instID"] >= 1000]
        assert singles and all(i["pixelCount"] > 0 for i in singles)
        groups += sum(1 for name in ("car", "person") for i in found[name] if i["instID"] < 1000)
        assert found["ego vehicle"], "the bonnet is void, as in Cityscapes"
    assert groups >= 1, "some picture has a group region"

    generate_cityscapes(tmp_path / "again", train=3, val=3, width=WIDTH, height=HEIGHT, seed=0)
    assert _files(tmp_path / "again") == _files(city)
    generate_cityscapes(tmp_path / "other", train=3, val=0, width=WIDTH, height=HEIGHT, seed=1)
    assert _files(tmp_path / "other") != {k: v for k, v in _files(city).items() if "/val/" not in k}


def test_training_targets_are_the_visible_instances_and_polygons_give_the_same(city, tmp_path):
    dataset = CityscapesDataset(city, "train")
    assert len(dataset) == 3 and dataset.categories == INSTANCE_LABELS
    assert set(INSTANCE_LABELS) == set(range(24, 34)) - {29, 30}  # caravan and trailer are not scored
    only_polygons = tmp_path / "polygons"
    shutil.copytree(city, only_polygons)
    for png in only_polygons.rglob("*_instanceIds.png"):
        png.unlink()
    from_polygons = CityscapesDataset(only_polygons, "train")
    for index in range(len(dataset)):
        image, target = dataset[index]
        ids = instance_image(dataset.pictures[index])
        assert image.shape == (3, HEIGHT, WIDTH) and 0 <= float(image.min()) and float(image.max()) <= 1
        masks = target["masks"].numpy().astype(bool)
        assert masks.sum(0).max() == 1  # visible parts: no pixel in two instances
        singles = np.isin(ids, [v for v in np.unique(ids) if is_instance(int(v))])
        assert np.array_equal(masks.any(0), singles)  # groups, stuff and void give no target
        for mask, label, box in zip(masks, target["labels"].tolist(), target["boxes"].tolist()):
            value = np.unique(ids[mask])
            assert len(value) == 1 and label_of(int(value[0])) == label
            ys, xs = np.nonzero(mask)
            assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        _, again = from_polygons[index]
        assert torch.equal(again["masks"], target["masks"]) and torch.equal(again["labels"], target["labels"])


def test_a_few_steps_on_cityscapes_lower_the_loss_of_the_compact_model(city):
    from maskray.jobs.training.coco_dataset import collate
    from maskray.jobs.training.train_loop import build_training_model

    torch.manual_seed(0)
    dataset = CityscapesDataset(city, "train")
    config = dict(model="demo", seed=0, min_size=128, max_size=256, backbone=None,
                  roi_op="align", mask_loss="sigmoid", mask_head="fcn")
    model = build_training_model(config, dataset)
    assert not hasattr(model.roi_heads, "keypoint_head") or model.roi_heads.keypoint_head is None
    images, targets = collate([dataset[0], dataset[1]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        losses = model(list(images), list(targets))
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(float(total.detach()))
    assert sum(history[-2:]) < 0.8 * sum(history[:2])


def _ground_truth_output(root: Path, output: Path, *, split="val", shift=0, names=None, extra=()):
    """An output whose instances are the split's ground-truth instances (moved `shift` px right)."""
    frames = []
    for files in ground_truth_index(root, [split]).values():
        ids = instance_image(files)
        values = [int(v) for v in np.unique(ids) if is_instance(int(v))]
        masks = [np.roll(ids == v, shift, axis=1) for v in values]
        scores = [0.9 - 0.01 * i for i in range(len(values))]
        frames.append((FrameRef(str(files.image), 0, None, WIDTH, HEIGHT),
                       prediction(masks, [label_of(v) for v in values], scores, names=names or INSTANCE_LABELS)))
    write_output(str(output), frames + list(extra))
    return frames


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def test_eval_gives_ap_one_for_perfect_masks_and_less_for_shifted_ones(city, tmp_path, capsys):
    _ground_truth_output(city, tmp_path / "perfect")
    code, out, err = run_maskray(["eval", tmp_path / "perfect", "--cityscapes", city,
                                  "--out", tmp_path / "perfect.json"], capsys)
    assert code == 0, err
    perfect = _metrics(tmp_path / "perfect.json")
    assert perfect["AP"] == 1.0 and perfect["AP50"] == 1.0 and perfect["images"] == 3
    scored = {name: v for name, v in perfect["classes"].items() if v["AP"] is not None}
    assert len(scored) >= 4 and all(v == {"AP": 1.0, "AP50": 1.0} for v in scored.values())
    assert "average" in out and "evaluated" in out  # the official table is printed

    only_polygons = tmp_path / "polygons"  # no instanceIds PNGs: drawn from the polygons
    shutil.copytree(city, only_polygons, ignore=shutil.ignore_patterns("*_instanceIds.png"))
    code, _, err = run_maskray(["eval", tmp_path / "perfect", "--cityscapes", only_polygons,
                                "--out", tmp_path / "polygons.json"], capsys)
    assert code == 0, err
    assert _metrics(tmp_path / "polygons.json") == perfect

    _ground_truth_output(city, tmp_path / "shifted", shift=6)
    code, _, err = run_maskray(["eval", tmp_path / "shifted", "--cityscapes", city,
                                "--out", tmp_path / "shifted.json"], capsys)
    assert code == 0, err
    shifted = _metrics(tmp_path / "shifted.json")
    assert 0 < shifted["AP"] < shifted["AP50"] <= 1.0 and shifted["AP"] < 0.9


def test_export_is_what_the_official_evaluation_reads(city, tmp_path, capsys):
    extra_picture = np.zeros((HEIGHT, WIDTH), bool)
    extra_picture[10:40, 10:40] = True
    dog = (FrameRef(str(tmp_path / "holiday.png"), 0, None, WIDTH, HEIGHT),
           prediction([extra_picture], [18], [0.99], names={18: "dog"}))
    frames = _ground_truth_output(city, tmp_path / "out", extra=[dog])
    results = tmp_path / "results"
    code, out, err = run_maskray(["export", tmp_path / "out", "--cityscapes", results], capsys)
    assert code == 0, err
    written = sum(len(p) for _, p in frames)
    assert f"wrote {written} instances on 3 pictures" in out and "1 processed frames left out" in out

    texts = sorted(results.glob("*_pred.txt"))
    assert [t.name for t in texts] == sorted(f"{Path(ref.source).name[:-len('_leftImg8bit.png')]}_pred.txt"
                                             for ref, _ in frames)
    for text in texts:
        core = text.name[: -len("_pred.txt")]
        ids = instance_image(ground_truth_index(city)[core])
        for line in text.read_text().splitlines():
            path, label, score = line.split(" ")
            mask = np.asarray(Image.open(text.parent / path)) > 0
            value = np.unique(ids[mask])
            assert len(value) == 1 and np.array_equal(ids == value[0], mask)  # the instance, exactly
            assert label_of(int(value[0])) == int(label) and 0 < float(score) <= 1

    work = tmp_path / "work"
    work.mkdir()
    truth = [str(ground_truth_index(city)[t.name[: -len("_pred.txt")]].instance_ids) for t in texts]
    scores, table = official_evaluation(truth, str(results), str(work))
    assert scores["AP"] == 1.0 and "bicycle" in table


def test_predictions_that_are_all_ignored_score_zero_instead_of_failing(city, tmp_path, capsys):
    """Cars predicted only on the ego vehicle (void): every prediction is ignored, no match."""
    frames = []
    for files in ground_truth_index(city, ["val"]).values():
        ids = instance_image(files)
        bonnet = ids == 1
        frames.append((FrameRef(str(files.image), 0, None, WIDTH, HEIGHT),
                       prediction([bonnet], [26], [0.8], names=INSTANCE_LABELS)))
    write_output(str(tmp_path / "void"), frames)
    code, _, err = run_maskray(["eval", tmp_path / "void", "--cityscapes", city, "--out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    metrics = _metrics(tmp_path / "m.json")
    assert metrics["AP"] == 0.0 and metrics["classes"]["car"]["AP"] == 0.0


def test_the_official_evaluation_writes_nothing_outside_its_temporary_folder(city, tmp_path, capsys, monkeypatch):
    import cityscapesscripts

    _ground_truth_output(city, tmp_path / "out")
    package = Path(cityscapesscripts.__file__).parent
    before = {"root": _files(city), "package": sorted(package.rglob("*.json"))}
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    code, _, err = run_maskray(["eval", tmp_path / "out", "--cityscapes", city, "--out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    assert list(here.iterdir()) == []  # no matches.json in the current directory
    assert _files(city) == before["root"] and sorted(package.rglob("*.json")) == before["package"]


def test_usage_mistakes_are_one_line_with_exit_2(city, tmp_path, capsys):
    _ground_truth_output(city, tmp_path / "out", split="train")
    cases = [
        (["eval", tmp_path / "out", "--cityscapes", tmp_path], "is not a Cityscapes root"),
        (["eval", tmp_path / "out"], "give one of --gt FILE or --cityscapes ROOT"),
        (["export", tmp_path / "out", "--coco", tmp_path / "r.json", "--cityscapes", tmp_path / "r"],
         "give one of --coco FILE, --cityscapes DIR or --mots DIR"),
        (["train", "--cityscapes", tmp_path / "nothing", "--output", tmp_path / "t"], "is not a Cityscapes root"),
        (["train", "--cityscapes", city, "--synthetic", "4", "--output", tmp_path / "t"], "brings its own data"),
    ]
    for argv, message in cases:
        code, _, err = run_maskray(argv, capsys)
        assert code == 2 and err.startswith("maskray: error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # The train split's pictures have ground truth, so they are scored; a root of other
    # pictures matches none of them.
    other = tmp_path / "other"
    generate_cityscapes(other, train=0, val=1, width=WIDTH, height=HEIGHT, seed=5)
    for files in ground_truth_index(other).values():
        os.rename(files.instance_ids, files.instance_ids.with_name("munich_000000_000019_gtFine_instanceIds.png"))
        files.polygons.unlink()
    code, _, err = run_maskray(["eval", tmp_path / "out", "--cityscapes", other], capsys)
    assert code == 2 and "has the name of an annotated picture" in err


@pytest.fixture(scope="module")
def ray_local():
    with local_ray():
        yield


@pytest.mark.ray
def test_train_on_cityscapes_then_submit_and_eval_with_the_checkpoint(tmp_path, capsys, ray_local):
    root = tmp_path / "city"
    generate_cityscapes(root, train=4, val=2, width=256, height=128, seed=3, max_objects=3)
    out = tmp_path / "run"
    code, printed, err = run_maskray(["train", "--cityscapes", root, "--output", out, "--steps", 4,
                                      "--batch-size", 2, "--min-size", 128, "--max-size", 256,
                                      "--log-every", 1, "--warmup-steps", 1, "--checkpoint-every", 4], capsys)
    assert code == 0, err
    assert "validation (official Cityscapes metric, val, 2 pictures)" in printed
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4] and all(row["loss_mask"] > 0 for row in log)
    scores = _metrics(out / "eval.json")
    assert set(scores["classes"]) == set(INSTANCE_LABELS.values()) and 0 <= scores["AP"] <= 1
    recipe = torch.load(out / "model.pt", weights_only=True)["recipe"]
    assert recipe["categories"] == {str(k): v for k, v in INSTANCE_LABELS.items()} and recipe["keypoint_names"] == []

    result = tmp_path / "result"
    code, _, err = run_maskray(["submit", root / "leftImg8bit" / "val", "--output", result, "--model", "demo",
                                "--weights", out / "model.pt", "--min-size", 128, "--max-size", 256,
                                "--score-threshold", 0.0, "--max-instances", 10], capsys)
    assert code == 0, err
    code, printed, err = run_maskray(["eval", result, "--cityscapes", root, "--out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    metrics = _metrics(tmp_path / "m.json")
    assert metrics["images"] == 2 and 0 <= metrics["AP"] <= 1
    # A 4-step model still gives some score to the label ids Cityscapes does not score (1..23):
    # those are counted and left out, the 8 classes' are scored under their names.
    from maskray.pipeline.output.reader import open_output

    rows = open_output(str(result)).sql("SELECT category_id, category FROM instances").to_pylist()
    assert 0 < metrics["instances"] + metrics["other_instances"] <= len(rows)  # (empty masks are not written)
    assert all(r["category"] == INSTANCE_LABELS[r["category_id"]] for r in rows if r["category_id"] in INSTANCE_LABELS)
