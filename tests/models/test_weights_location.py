"""Resolving `--weights` in the driver, without Ray: paths, s3://, http(s) URLs, `coco`'s cache
and download (torch hub's own, against a server on 127.0.0.1), sha256 checks, `--offline`."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import torch

from file_server import FileServer, closed_url
from maskray.errors import UsageError, WeightsError
from maskray.models.weight_files import URL_BASE_VARIABLE, coco_cache_dir, fetch_coco
from maskray.models.weight_integrity import prefix_in_name
from maskray.models.weights import load_weights
from maskray.pipeline.weights_location import resolve_weights
from submit_helpers import run_cli

COCO_FILE = "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"  # torchvision's name for R50-FPN's weights


def _state_file_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"layer.weight": torch.arange(6.0).reshape(2, 3)}, buffer)
    return buffer.getvalue()


WEIGHTS = _state_file_bytes()
SHA256 = hashlib.sha256(WEIGHTS).hexdigest()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache; its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def _one_line(error) -> str:
    text = str(error.value)
    assert text and "\n" not in text
    return text


def test_a_path_is_read_and_checked(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(WEIGHTS)
    resolved = resolve_weights(str(path), model="demo", sha256=SHA256.upper())
    assert (resolved.kind, resolved.sha256, resolved.data, resolved.size) == ("file", SHA256, WEIGHTS, len(WEIGHTS))
    assert resolve_weights(str(path), model="demo", sha256=SHA256[:8]).sha256 == SHA256  # a prefix will do
    with pytest.raises(WeightsError) as refused:
        resolve_weights(str(path), model="demo", sha256="0" * 64)
    assert str(path) in _one_line(refused) and "sha256" in str(refused.value)
    with pytest.raises(UsageError, match="hex digits"):
        resolve_weights(str(path), model="demo", sha256="xyz")
    with pytest.raises(UsageError, match="PATH or URI"):
        resolve_weights("demo", model="demo", sha256=SHA256)
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.pt"), model="demo")
    assert resolve_weights("none", model="demo") is None


def test_the_demo_weights_are_the_shipped_file():
    from maskray.models.weight_files import DEMO_WEIGHTS

    resolved = resolve_weights("demo", model="demo")
    assert resolved.kind == "demo" and resolved.sha256 == hashlib.sha256(DEMO_WEIGHTS.read_bytes()).hexdigest()


def test_an_https_style_url_is_fetched_once_and_its_name_hash_is_checked():
    named = f"net-{SHA256[:8]}.pt"
    with FileServer({"/plain.pt": WEIGHTS, f"/{named}": WEIGHTS, "/liar-0123abcd.pt": WEIGHTS}) as server:
        resolved = resolve_weights(server.url("plain.pt"), model="demo")
        assert resolved.data == WEIGHTS and server.requests["/plain.pt"] == 1
        assert resolve_weights(server.url(named), model="demo").sha256 == SHA256
        with pytest.raises(WeightsError) as refused:  # the name promises another file
            resolve_weights(server.url("liar-0123abcd.pt"), model="demo")
        assert "0123abcd" in _one_line(refused)
        with pytest.raises(WeightsError) as refused:  # the user's digest
            resolve_weights(server.url("plain.pt"), model="demo", sha256="ab" * 32)
        assert "sha256" in _one_line(refused)
        with pytest.raises(WeightsError, match="HTTP 404"):
            resolve_weights(server.url("missing.pt"), model="demo")
        before = server.total()
        with pytest.raises(WeightsError, match="--offline"):
            resolve_weights(server.url("plain.pt"), model="demo", offline=True)
        assert server.total() == before  # no request at all
    with pytest.raises(UsageError, match="use https"):
        resolve_weights("http://example.com/net.pt", model="demo")
    with pytest.raises(WeightsError) as refused:
        resolve_weights(closed_url("net.pt"), model="demo")
    assert "cannot download" in _one_line(refused)


def test_hash_prefixes_in_names_are_torchvisions():
    assert prefix_in_name(COCO_FILE) == "bf2d0c1e"
    assert prefix_in_name("resnet50-0676ba61.pth") == "0676ba61"
    assert prefix_in_name("model-2024.pt") is None and prefix_in_name("model-final.pt") is None
    assert prefix_in_name("model.pt") is None


def test_s3_weights_resolve_with_the_environments_credentials(s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="models/net.pt", Body=WEIGHTS)
    resolved = resolve_weights(f"s3://{s3_bucket}/models/net.pt", model="demo", sha256=SHA256)
    assert resolved.data == WEIGHTS and resolved.name == f"s3://{s3_bucket}/models/net.pt"
    with pytest.raises(WeightsError) as missing:
        resolve_weights(f"s3://{s3_bucket}/models/gone.pt", model="demo")
    assert f"s3://{s3_bucket}/models/gone.pt" in _one_line(missing)


def test_the_coco_cache_is_torch_hubs(tmp_path, monkeypatch):
    for variables in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}):
        for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        assert str(coco_cache_dir()) == os.path.join(torch.hub.get_dir(), "checkpoints")


def test_coco_downloads_once_with_torch_hubs_hash_check(torch_home, monkeypatch):
    name = f"tiny_coco-{SHA256[:8]}.pth"  # named the way torchvision names its files
    with FileServer({f"/models/{name}": WEIGHTS, f"/models/bad_coco-{SHA256[8:16]}.pth": WEIGHTS}) as server:
        monkeypatch.setenv(URL_BASE_VARIABLE, server.base + "/models/")
        path = fetch_coco(name)
        assert path == torch_home / name and path.read_bytes() == WEIGHTS
        assert fetch_coco(name, offline=True) == path  # cached: --offline is happy
        assert server.requests[f"/models/{name}"] == 1
        with pytest.raises(WeightsError) as refused:
            fetch_coco(f"bad_coco-{SHA256[8:16]}.pth")
        assert "invalid hash" in _one_line(refused)
        assert sorted(p.name for p in torch_home.iterdir()) == [name]  # nothing unchecked is kept


def test_coco_offline_is_one_line_naming_the_file_and_the_folder(torch_home, monkeypatch):
    with FileServer() as server:
        monkeypatch.setenv(URL_BASE_VARIABLE, server.base)
        with pytest.raises(WeightsError) as refused:
            resolve_weights("coco", model="maskrcnn_resnet50_fpn", offline=True)
        assert server.total() == 0
    line = _one_line(refused)
    assert COCO_FILE in line and str(torch_home) in line and "--offline" in line
    monkeypatch.setenv(URL_BASE_VARIABLE, closed_url("models/"))  # online, but the host is unreachable
    with pytest.raises(WeightsError) as refused:
        resolve_weights("coco", model="maskrcnn_resnet50_fpn")
    line = _one_line(refused)
    assert COCO_FILE in line and str(torch_home) in line and "downloading them failed" in line
    with pytest.raises(WeightsError, match="no published COCO weights"):
        resolve_weights("coco", model="maskkeypointrcnn_resnet50_fpn")


def test_replicas_check_the_bytes_they_are_given():
    loaded = load_weights("https://example.com/net.pt", model="demo", coco_file=None, data=WEIGHTS, sha256=SHA256)
    assert loaded.weights_id == f"file:{SHA256[:12]}" and torch.equal(loaded.state_dict["layer.weight"],
                                                                        torch.arange(6.0).reshape(2, 3))
    with pytest.raises(WeightsError, match="sha256"):
        load_weights("net.pt", model="demo", coco_file=None, data=WEIGHTS + b"x", sha256=SHA256)
    coco = load_weights("coco", model="maskrcnn_resnet50_fpn", coco_file=COCO_FILE, data=WEIGHTS, sha256=SHA256)
    assert coco.weights_id == f"coco:{COCO_FILE}"


# ---- the command line: each fails in the driver, before Ray starts ----------------------------

def test_submit_refuses_a_wrong_sha256_in_one_line(data_dir, tmp_path):
    with FileServer({"/net.pt": WEIGHTS}) as server:
        result = run_cli("submit", data_dir / "images" / "coins.png", "--output", tmp_path / "out",
                         "--model", "demo", "--weights", server.url("net.pt"), "--weights-sha256", "0" * 64)
        assert server.requests["/net.pt"] == 1
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "sha256" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_submit_offline_with_coco_not_cached_makes_no_request(data_dir, tmp_path):
    torch_home = tmp_path / "torch-home"
    with FileServer() as server:
        environment = dict(os.environ, TORCH_HOME=str(torch_home), **{URL_BASE_VARIABLE: server.base})
        result = run_cli("submit", data_dir / "images" / "coins.png", "--output", tmp_path / "out",
                         "--model", "maskrcnn_resnet50_fpn", "--weights", "coco", "--offline", env=environment)
        assert server.total() == 0
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip()
    assert "\n" not in line and COCO_FILE in line and str(torch_home) in line and "Traceback" not in line


def test_submit_refuses_a_coco_download_that_fails_torchvisions_hash(data_dir, tmp_path):
    """torchvision's real file name, wrong bytes behind it: torch hub's check refuses them."""
    torch_home = tmp_path / "torch-home"
    with FileServer({f"/models/{COCO_FILE}": WEIGHTS}) as server:
        environment = dict(os.environ, TORCH_HOME=str(torch_home), **{URL_BASE_VARIABLE: server.base + "/models"})
        result = run_cli("submit", data_dir / "images" / "coins.png", "--output", tmp_path / "out",
                         "--model", "maskrcnn_resnet50_fpn", "--weights", "coco", env=environment)
        assert server.requests[f"/models/{COCO_FILE}"] == 1
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("maskray: error: ")]
    assert len(errors) == 1 and "invalid hash value" in errors[0] and "Traceback" not in result.stderr
    assert not (torch_home / "hub" / "checkpoints" / COCO_FILE).exists()
