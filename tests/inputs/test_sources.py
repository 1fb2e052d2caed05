"""Listing media and reading it through `storage`: local folders (odd names) and S3 (moto)."""

from __future__ import annotations

import os
import shutil

import pytest

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.inputs.images import decode_image
from maskray.pipeline.inputs.listing import list_media

IMAGES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "logo.png", "rocket.jpg"]
VIDEOS = ["bikes.mp4", "carphone_pristine.mp4"]


def test_lists_the_sample_media_sorted_with_kinds_and_sizes(data_dir):
    media = list_media([str(data_dir)])
    expected = [str(data_dir / "images" / n) for n in IMAGES] + [str(data_dir / "videos" / n) for n in VIDEOS]
    assert [m.uri for m in media] == expected
    assert [m.kind for m in media] == ["image"] * 7 + ["video"] * 2
    assert all(m.size == os.path.getsize(m.uri) for m in media)


@pytest.fixture
def messy_folder(tmp_path, data_dir):
    """A folder as users have them: odd names, hidden files, a previous output, no extensions."""
    odd = tmp_path / "vidéos test"
    odd.mkdir()
    shutil.copy(data_dir / "images" / "chelsea.png", odd / "ünï code.png")
    shutil.copy(data_dir / "images" / "rocket.jpg", tmp_path / "rocket-no-extension")
    shutil.copy(data_dir / "videos" / "carphone_pristine.mp4", tmp_path / "clip.bin")
    shutil.copy(data_dir / "images" / "coins.png", tmp_path / ".hidden.png")
    (tmp_path / ".cache").mkdir()
    shutil.copy(data_dir / "images" / "coins.png", tmp_path / ".cache" / "thumb.png")
    (tmp_path / "notes.txt").write_text("not media")
    (tmp_path / "broken.jpg").write_bytes(b"")  # a media name with bad content: still listed
    output = tmp_path / "previous-run"
    (output / "frames").mkdir(parents=True)
    (output / "_job.json").write_text("{}")
    shutil.copy(data_dir / "images" / "coins.png", output / "frames" / "preview.png")
    return tmp_path


def test_lists_odd_names_sniffs_content_and_skips_hidden_and_outputs(messy_folder):
    # The job's own output is skipped; a `_job.json` elsewhere hides nothing (test_adversarial_inputs).
    media = list_media([str(messy_folder)], output=str(messy_folder / "previous-run"))
    found = {os.path.relpath(m.uri, messy_folder): m.kind for m in media}
    assert found == {
        "broken.jpg": "image",
        "clip.bin": "video",
        "rocket-no-extension": "image",
        os.path.join("vidéos test", "ünï code.png"): "image",
    }
    unicode_image = next(m.uri for m in media if m.uri.endswith("ünï code.png"))
    assert decode_image(storage.read_bytes(unicode_image)).shape == (300, 451, 3)


def test_sources_are_deduplicated_and_relative_paths_work(messy_folder, monkeypatch):
    monkeypatch.chdir(messy_folder)
    media = list_media(["vidéos test", f"file://{messy_folder}/vidéos test/ünï code.png", "."], output="previous-run")
    uris = [m.uri for m in media]
    assert len(uris) == len(set(uris)) == 4
    assert uris == sorted(uris) and all(os.path.isabs(u) for u in uris)


def test_a_named_non_media_file_is_listed_as_unknown(messy_folder):
    (media,) = list_media([str(messy_folder / "notes.txt")])
    assert media.kind == "unknown" and media.size == len("not media")


def test_missing_or_empty_sources_are_one_line_usage_errors(tmp_path):
    for sources in ([str(tmp_path / "nope")], [str(tmp_path)], []):
        with pytest.raises(UsageError) as caught:
            list_media(sources)
        assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="not found: .*nope"):
        list_media([str(tmp_path / "nope")])


def test_local_atomic_write_read_and_join(tmp_path):
    target = storage.join(str(tmp_path), "a b", "part.json")
    storage.write_bytes_atomic(target, b"one")
    storage.write_bytes_atomic(target, b"two")
    assert storage.read_bytes(target) == b"two" and storage.exists(target)
    assert os.listdir(tmp_path / "a b") == ["part.json"]  # no temp files left behind
    assert storage.join("s3://bucket/prefix/", "/x", "y.parquet") == "s3://bucket/prefix/x/y.parquet"
    assert storage.resolve(f"file://{tmp_path}/a%20b/part.json")[1] == target


def test_lists_and_reads_media_on_s3(s3_client, s3_bucket, data_dir):
    for name in ("camera.png", "logo.png"):
        s3_client.upload_file(str(data_dir / "images" / name), s3_bucket, f"cams/day 1/{name}")
    s3_client.upload_file(str(data_dir / "videos" / "bikes.mp4"), s3_bucket, "cams/bikes.mp4")
    s3_client.put_object(Bucket=s3_bucket, Key="cams/.hidden.png", Body=b"x")
    s3_client.upload_file(str(data_dir / "images" / "chelsea.png"), s3_bucket, "elsewhere/chelsea.png")

    media = list_media([f"s3://{s3_bucket}/cams/"])
    assert [(m.uri, m.kind) for m in media] == [
        (f"s3://{s3_bucket}/cams/bikes.mp4", "video"),
        (f"s3://{s3_bucket}/cams/day 1/camera.png", "image"),
        (f"s3://{s3_bucket}/cams/day 1/logo.png", "image"),
    ]
    assert media[1].size == os.path.getsize(data_dir / "images" / "camera.png")
    assert decode_image(storage.read_bytes(media[1].uri)).shape == (512, 512, 3)
    assert decode_image(storage.read_bytes(media[2].uri)).shape == (500, 500, 3)


def test_s3_atomic_write_exists_and_missing_prefix(s3_bucket):
    uri = f"s3://{s3_bucket}/out/_commits/shard.json"
    assert not storage.exists(uri)
    storage.write_bytes_atomic(uri, b'{"ok": true}')
    assert storage.exists(uri) and storage.read_bytes(uri) == b'{"ok": true}'
    assert storage.list_files(f"s3://{s3_bucket}/out/") == [(uri, 12)]
    with pytest.raises(UsageError, match="not found"):
        list_media([f"s3://{s3_bucket}/no-such-prefix/"])
