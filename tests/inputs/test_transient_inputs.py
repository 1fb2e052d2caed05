"""A listed input that is not found when read is transient, not a verdict on the file
(issue 23): its row says so in a user's words and a resume redoes it. No Ray."""

from __future__ import annotations

import os
import shutil

from maskray.pipeline.inputs.errors import TRANSIENT_PREFIX
from maskray.pipeline.inputs.listing import list_media
from maskray.pipeline.inputs.plan_stream import plan_settings, plan_shards
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.inputs.shard_frames import iter_shard_frames
from maskray.pipeline.inputs.shards import plan_video
from maskray.pipeline.output.schema import FrameError


def test_an_image_deleted_after_planning_is_a_transient_row_in_user_words(tmp_path, data_dir):
    for name in ("camera.png", "coins.png"):
        shutil.copy(data_dir / "images" / name, tmp_path / name)
    (shard,) = plan_shards(list_media([str(tmp_path)]), Sampling(), None, workers=1)
    os.remove(tmp_path / "coins.png")  # a lifecycle rule, a cleanup, or a store outage hiding it
    items = list(iter_shard_frames(shard))
    errors = [item for item in items if isinstance(item, FrameError)]
    assert len(items) == 2 and len(errors) == 1 and errors[0].source == str(tmp_path / "coins.png")
    assert errors[0].transient and errors[0].message.startswith(TRANSIENT_PREFIX)
    assert "file not found" in errors[0].message
    assert "FileNotFoundError" not in errors[0].message and "Errno" not in errors[0].message


def test_a_video_deleted_before_its_index_is_built_is_a_transient_error_shard(tmp_path, data_dir):
    video = tmp_path / "bikes.mp4"
    shutil.copy(data_dir / "videos" / "bikes.mp4", video)
    (item,) = list_media([str(tmp_path)])
    os.remove(video)
    (shard,) = plan_video(item, plan_settings([item], Sampling(), None, workers=1))
    assert shard.planning_error == TRANSIENT_PREFIX + "cannot read video: file not found" \
        " (deleted or moved after the job listed it, or the store is out)"
    (row,) = iter_shard_frames(shard)
    assert isinstance(row, FrameError) and row.transient
