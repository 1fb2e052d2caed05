"""plan_shards: stable ids, every sampled frame in exactly one shard, bad inputs as error shards."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from maskray.pipeline.inputs.sampling import Sampling, sampled_frames
from maskray.pipeline.inputs.plan_stream import plan_shards
from maskray.pipeline.inputs.shard_frames import video_segment
from maskray.pipeline.inputs.shards import Shard
from maskray.pipeline.inputs.listing import MediaFile, list_media
from maskray.pipeline.inputs.video import build_index, decode_segment

SAFE_ID = re.compile(r"^[a-z]+-[0-9a-f]{10}-[A-Za-z0-9-]+$")


@pytest.fixture(scope="module")
def media(data_dir):
    return list_media([str(data_dir)])


def test_images_are_grouped_in_order_and_ids_are_stable(media):
    shards = plan_shards(media, Sampling(), None, workers=2, images_per_shard=3)
    image_shards = [s for s in shards if s.kind == "images"]
    assert [len(s.uris) for s in image_shards] == [3, 3, 1]
    assert [u for s in image_shards for u in s.uris] == [m.uri for m in media if m.kind == "image"]
    assert all(s.expected_frames == len(s.uris) and s.planning_error is None for s in image_shards)
    again = plan_shards(list(media), Sampling(), None, workers=2, images_per_shard=3)
    assert [s.id for s in again] == [s.id for s in shards]
    assert len({s.id for s in shards}) == len(shards)
    assert all(SAFE_ID.match(s.id) for s in shards)


@pytest.mark.parametrize("sampling", [Sampling(), Sampling(every=7), Sampling(fps=3.0), Sampling(keyframes=True)])
def test_every_sampled_frame_is_in_exactly_one_video_shard(media, sampling, tmp_path):
    shards = plan_shards(media, sampling, 1.0, workers=2, output=str(tmp_path))
    for video in (m for m in media if m.kind == "video"):
        parts = [s for s in shards if s.uris == (video.uri,)]
        # What each shard's worker finds from the cached index, and what the planner counted.
        frames_of = [video_segment(s, str(tmp_path))[1] for s in parts]
        frames = [f for part in frames_of for f in part]
        assert frames == sampled_frames(build_index(video.uri), sampling)
        assert all(s.start_frame <= f < s.end_frame for s, part in zip(parts, frames_of) for f in part)
        assert [s.expected_frames for s in parts] == [len(part) for part in frames_of]
        assert all(s.index_key and len(json.dumps(s.to_dict())) < 1000 for s in parts)  # no frame lists


def test_segment_size_follows_workers_and_override(data_dir):
    bikes = [m for m in list_media([str(data_dir / "videos" / "bikes.mp4")])]
    one_worker = plan_shards(bikes, Sampling(), None, workers=1)
    many_workers = plan_shards(bikes, Sampling(), None, workers=8)
    # 10 s video: 2.5 s segments for one worker (4 per worker), the 2 s minimum for eight.
    assert [(s.start_frame, s.end_frame) for s in one_worker] == [(0, 76), (76, 187), (187, 250)]
    assert [(s.start_frame, s.end_frame) for s in many_workers] == [(0, 76), (76, 137), (137, 187), (187, 250)]
    assert len(plan_shards(bikes, Sampling(), 0.5, workers=1)) == 6  # one per keyframe interval
    assert len(plan_shards(bikes, Sampling(), 60.0, workers=8)) == 1


def test_shard_survives_json_and_decodes_on_its_own(data_dir, tmp_path):
    bikes = list_media([str(data_dir / "videos" / "bikes.mp4")])
    shard = plan_shards(bikes, Sampling(every=5), 2.0, workers=1, output=str(tmp_path))[1]
    copy = Shard.from_dict(json.loads(json.dumps(shard.to_dict())))
    assert copy == shard
    window, frames = video_segment(copy, str(tmp_path))
    decoded = list(decode_segment(copy.uris[0], window, copy.start_frame, copy.end_frame, set(frames)))
    assert [d.frame for d in decoded] == frames == [f for f in range(copy.start_frame, copy.end_frame) if f % 5 == 0]
    assert len(decoded) == copy.expected_frames


def test_bad_inputs_become_error_shards_not_crashes(tmp_path, data_dir):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("definitely not a video\n" * 10)
    (tmp_path / "notes.txt").write_text("named explicitly")
    data = (data_dir / "videos" / "bikes.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.4)])
    shutil.copy(data_dir / "images" / "coins.png", tmp_path / "coins.png")
    media = list_media([str(tmp_path), str(tmp_path / "notes.txt")])
    shards = plan_shards(media, Sampling(), None, workers=2)
    errors = {s.uris[0].rsplit("/", 1)[1]: s for s in shards if s.planning_error}
    assert sorted(errors) == ["cut.mp4", "empty.jpg", "notes.txt", "text.mp4"]
    assert errors["empty.jpg"].kind == "images" and "empty" in errors["empty.jpg"].planning_error
    assert errors["text.mp4"].kind == "video" and errors["cut.mp4"].kind == "video"
    assert errors["notes.txt"].kind == "images"
    for shard in errors.values():
        assert shard.expected_frames == 1 and len(shard.planning_error) < 200
        assert "\n" not in shard.planning_error and SAFE_ID.match(shard.id)
    good = [s for s in shards if not s.planning_error]
    assert [s.uris for s in good] == [(str(tmp_path / "coins.png"),)]


def test_unknown_kind_media_file_is_an_error_shard():
    shards = plan_shards([MediaFile("/nowhere/file.dat", "unknown", 10)], Sampling(), None, workers=1)
    assert len(shards) == 1 and shards[0].planning_error and shards[0].uris == ("/nowhere/file.dat",)
