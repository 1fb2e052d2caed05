"""An output among the sources is refused at every submit, before anything is written
(issue 23, "Overlap at the first submit"); no Ray is started."""

from __future__ import annotations

import os
import shutil

import pytest

from maskray.errors import UsageError
from maskray.pipeline.inputs.listing import list_media
from maskray.pipeline.inputs.overlap import refuse_output_among_sources
from submit_helpers import SMALL_FLAGS, run_cli


@pytest.fixture
def project(tmp_path, data_dir):
    frames = tmp_path / "proj" / "frames"
    frames.mkdir(parents=True)
    for name in ("camera.png", "coins.png"):
        shutil.copy(data_dir / "images" / name, frames / name)
    return tmp_path / "proj"


def test_a_source_inside_the_output_is_refused_before_anything_is_written(project):
    # OUT/frames/ is proj/frames/: the first run wrote the job's parts into the source folder.
    run = run_cli("submit", project / "frames", "--output", project, *SMALL_FLAGS, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert "lies inside the output" in lines[0] and "choose an --output outside the sources" in lines[0]
    assert sorted(os.listdir(project)) == ["frames"]  # no _job.json, no lease, no parts
    assert sorted(os.listdir(project / "frames")) == ["camera.png", "coins.png"]


def test_the_same_folder_as_source_and_output_is_refused(project):
    with pytest.raises(UsageError, match=r"source .* is the output .*choose an --output outside"):
        refuse_output_among_sources(str(project / "frames"), [str(project / "frames/")])
    with pytest.raises(UsageError, match="lies inside the output"):
        refuse_output_among_sources(str(project), [str(project / "frames" / "camera.png")])


def test_an_output_inside_a_source_is_allowed_where_the_listing_skips_it(project):
    output = project / "out"
    refuse_output_among_sources(str(output), [str(project)])  # no error
    (output / "frames").mkdir(parents=True)
    shutil.copy(project / "frames" / "camera.png", output / "frames" / "render.png")
    listed = [os.path.relpath(item.uri, project) for item in list_media([str(project)], output=str(output))]
    assert listed == ["frames/camera.png", "frames/coins.png"]  # OUT's files are not inputs


def test_an_output_reached_through_a_link_inside_a_source_is_refused(project, tmp_path):
    (project / "results").mkdir()
    os.symlink(project / "results", tmp_path / "results-link")
    with pytest.raises(UsageError, match="lies inside source .* by another path"):
        refuse_output_among_sources(str(tmp_path / "results-link"), [str(project)])


def test_object_store_prefixes_are_compared_as_folders():
    with pytest.raises(UsageError, match="lies inside the output"):
        refuse_output_among_sources("s3://cams/proj", ["s3://cams/proj/frames/"])
    refuse_output_among_sources("s3://cams/proj-out", ["s3://cams/proj"])  # a sibling, not inside
    refuse_output_among_sources("s3://cams/proj/masks", ["s3://cams/proj"])  # skipped by the listing
