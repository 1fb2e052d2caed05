"""`maskray view` on the demo's output, through a real headless Chromium and plain HTTP.

The demo runs once for the module (a real local Ray, the shipped demo model); the viewer is
the real command (`python -m maskray view OUT --port 0`) in its own process. The browser is the
OS package (`apt-get install -y chromium`), driven over the DevTools protocol (tests/chromium.py).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from scipy import ndimage

from chromium import Chromium, find_chromium
from view_server import Viewer
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.render.drawing import PALETTE

pytestmark = pytest.mark.ray  # the demo's job runs on a real local Ray
REPO = Path(__file__).resolve().parents[2]
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("view") / "demo"
    done = subprocess.run([sys.executable, "-m", "maskray", "demo", "--workdir", str(workdir), "--images", "4",
                           "--video-frames", "8"], cwd=REPO, capture_output=True, text=True, timeout=400,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    # The demo ends by telling the user how to look at what it made.
    assert done.stdout.strip().splitlines()[-1].endswith(f"maskray view {workdir / 'out'}")
    return workdir / "out"


@pytest.fixture(scope="module")
def viewer(demo_out):
    server = Viewer(str(demo_out))
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no Chromium (apt-get install -y chromium)")
    chromium = Chromium(1200, 900)
    yield chromium
    chromium.close()


def open_page(browser: Chromium, viewer: Viewer, fragment: str) -> None:
    browser.evaluate("delete document.body.dataset.ready") if browser.evaluate("!!document.body") else None
    browser.goto(f"{viewer.url}{fragment}")
    browser.wait_for("document.body && document.body.dataset.ready")


def card_categories(browser: Chromium) -> list[set]:
    browser.wait_for("document.querySelectorAll('#grid .card').length === "
                     "document.querySelectorAll('#grid canvas[data-drawn]').length")
    captions = browser.evaluate("[...document.querySelectorAll('#grid .card .categories')].map(e => e.textContent)")
    return [set(c.split(", ")) for c in captions]


@needs_chromium
def test_gallery_shows_the_demo_categories_and_a_category_filter_narrows_it(viewer, browser, demo_out):
    output = open_output(str(demo_out))
    categories = {r["category"] for r in output.sql("SELECT DISTINCT category FROM instances").to_pylist()}
    assert categories <= {"circle", "square", "triangle"} and len(categories) >= 2
    open_page(browser, viewer, "#/gallery")
    shown = card_categories(browser)
    frames = output.sql("SELECT count(DISTINCT (source, frame)) AS n FROM instances").to_pylist()[0]["n"]
    assert len(shown) == min(24, frames)
    assert set().union(*shown) == categories

    chosen = sorted(categories)[-1]
    counts = output.sql(f"SELECT count(DISTINCT (source, frame)) AS n FROM instances WHERE category = '{chosen}'")
    browser.evaluate(f"(() => {{ const s = document.querySelector('#filters select[name=category]');"
                     f" s.value = '{chosen}'; s.dispatchEvent(new Event('change')); }})()")
    browser.wait_for(f"location.hash.includes('category={chosen}') && document.body.dataset.route === '/gallery'"
                     " && document.getElementById('gallery-status').textContent !== 'Loading…'")
    filtered = card_categories(browser)
    assert filtered and all(c == {chosen} for c in filtered)
    assert len(filtered) == min(24, counts.to_pylist()[0]["n"])
    assert filtered != shown


def interior_pixel(instance: dict, others: list[dict]) -> tuple[int, int]:
    """A pixel well inside `instance`'s mask, off every other mask, box edge, label and keypoint."""
    h, w = instance["height"], instance["width"]
    decode = lambda r: coco_mask.decode({"size": [h, w], "counts": r["mask_rle"].encode()}).astype(bool)
    free = ndimage.binary_erosion(decode(instance), iterations=4)
    for other in others:
        free &= ~ndimage.binary_dilation(decode(other), iterations=3)
    for row in [instance, *others]:
        for x in (row["x1"], row["x2"]):
            free[:, max(0, int(x) - 4):int(x) + 5] = False
        for y in (row["y1"], row["y2"]):
            free[max(0, int(y) - 4):int(y) + 5, :] = False
        free[max(0, int(row["y1"]) - 18):int(row["y1"]) + 4, int(row["x1"]):] = False  # its label
        points = np.asarray(row["keypoints"] or [], np.float32).reshape(-1, 3)
        for x, y, _ in points:
            free[max(0, int(y) - 7):int(y) + 8, max(0, int(x) - 7):int(x) + 8] = False
    ys, xs = np.nonzero(free)
    assert len(xs), "no clear pixel inside the instance"
    centre = np.array([ys.mean(), xs.mean()])
    best = np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2)
    return int(xs[best]), int(ys[best])


def on_screen(browser: Chromium, x: int, y: int) -> tuple[float, float]:
    """The viewport point (CSS pixels) showing frame pixel (x, y) of the frame page's canvas."""
    left, top, scale = browser.evaluate(
        "(() => { const c = document.getElementById('frame-canvas'); c.scrollIntoView();"
        " const r = c.getBoundingClientRect(); return [r.left, r.top, r.width / c.width]; })()")
    return left + (x + 0.5) * scale, top + (y + 0.5) * scale


def canvas_pixel(browser: Chromium, x: int, y: int) -> np.ndarray:
    """The screen's colour at frame pixel (x, y) of the frame page's canvas (a real screenshot)."""
    box = browser.evaluate("(() => { const r = document.getElementById('frame-canvas').getBoundingClientRect();"
                           " const c = document.getElementById('frame-canvas');"
                           " return [r.left, r.top, r.width / c.width]; })()")
    left, top, scale = box
    png = browser.screenshot({"x": left + (x + 0.5) * scale - 1, "y": top + (y + 0.5) * scale - 1,
                              "width": 3, "height": 3})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[1, 1].astype(int)


@needs_chromium
def test_a_frame_page_draws_the_masks_in_their_colours(viewer, browser, demo_out):
    output = open_output(str(demo_out))
    rows = output.sql("SELECT * FROM instances WHERE time IS NULL ORDER BY mask_area DESC").to_pylist()
    target = rows[0]
    on_frame = [r for r in rows if (r["source"], r["frame"]) == (target["source"], target["frame"])]
    x, y = interior_pixel(target, [r for r in on_frame if r["instance"] != target["instance"]])
    query = urllib.parse.urlencode({"source": target["source"], "frame": target["frame"]})
    open_page(browser, viewer, f"#/frame?{query}")
    browser.wait_for("document.getElementById('frame-canvas').dataset.drawn === '0'")
    assert browser.evaluate("document.querySelectorAll('#instances tr[data-instance]').length") == len(on_frame)
    with_masks = canvas_pixel(browser, x, y)
    corner = canvas_pixel(browser, 2, target["height"] - 3)  # no instance there in the demo's images
    browser.evaluate("document.getElementById('show-masks').click()")
    without = canvas_pixel(browser, x, y)
    corner_without = canvas_pixel(browser, 2, target["height"] - 3)
    browser.evaluate("document.getElementById('show-masks').click()")
    # The mask is the instance's colour blended half and half over the picture; elsewhere
    # the picture is untouched.
    expected = (without + np.array(PALETTE[target["instance"] % len(PALETTE)])) / 2
    assert np.abs(with_masks - expected).max() <= 6, (with_masks, expected, without)
    assert np.abs(with_masks - without).max() >= 20
    assert np.abs(corner - corner_without).max() <= 2


@needs_chromium
def test_a_video_page_steps_through_the_processed_frames(viewer, browser, demo_out):
    output = open_output(str(demo_out))
    video = output.sql("SELECT source, list(frame ORDER BY frame) AS frames FROM frames "
                       "WHERE time IS NOT NULL GROUP BY 1").to_pylist()[0]
    first, second = video["frames"][:2]
    open_page(browser, viewer, "#/frame?" + urllib.parse.urlencode({"source": video["source"], "frame": first}))
    browser.wait_for(f"document.getElementById('frame-canvas').dataset.drawn === '{first}'")
    assert f"1 of {len(video['frames'])}" in browser.evaluate("document.getElementById('position').textContent")
    before = browser.evaluate("document.getElementById('frame-canvas').toDataURL()")
    browser.evaluate("document.getElementById('next').click()")
    browser.wait_for(f"document.getElementById('frame-canvas') && "
                     f"document.getElementById('frame-canvas').dataset.drawn === '{second}'")
    assert f"2 of {len(video['frames'])}" in browser.evaluate("document.getElementById('position').textContent")
    after = browser.evaluate("document.getElementById('frame-canvas').toDataURL()")
    assert after != before  # the shapes moved
    instances = output.sql(f"SELECT count(*) AS n FROM instances WHERE source = '{video['source']}' "
                           f"AND frame = {second}").to_pylist()[0]["n"]
    assert browser.evaluate("document.querySelectorAll('#instances tr[data-instance]').length") == instances
    tracked = browser.evaluate("[...document.querySelectorAll('#instances tr[data-instance] td:last-child')]"
                               ".filter(td => td.textContent !== '').length")
    assert tracked == instances  # the demo's video is tracked: every instance has its track id


def shown_row(browser: Chromium) -> dict:
    """The instance row the frame page shows (its "Instance" table), as {column: text}."""
    return browser.evaluate("Object.fromEntries([...document.querySelectorAll('#instance-row tr')]"
                            ".map(tr => [tr.cells[0].textContent, tr.cells[1].textContent]))")


@needs_chromium
def test_hovering_or_clicking_an_instance_shows_its_row(viewer, browser, demo_out):
    output = open_output(str(demo_out))
    rows = output.sql("SELECT * FROM instances WHERE time IS NULL ORDER BY mask_area DESC").to_pylist()
    target = rows[0]
    on_frame = [r for r in rows if (r["source"], r["frame"]) == (target["source"], target["frame"])]
    others = [r for r in on_frame if r["instance"] != target["instance"]]
    assert others, "the demo image should hold more than one instance"
    x, y = interior_pixel(target, others)
    open_page(browser, viewer, "#/frame?" + urllib.parse.urlencode({"source": target["source"], "frame": target["frame"]}))
    browser.wait_for(f"document.getElementById('frame-canvas').dataset.drawn === '{target['frame']}'")
    assert shown_row(browser) == {}  # nothing under the pointer yet

    browser.mouse("move", *on_screen(browser, x, y))
    row = browser.wait_for("document.querySelector('#instance-row table') && "
                           "Object.fromEntries([...document.querySelectorAll('#instance-row tr')]"
                           ".map(tr => [tr.cells[0].textContent, tr.cells[1].textContent]))")
    assert row["instance"] == str(target["instance"]) and row["category"] == target["category"]
    assert float(row["score"]) == pytest.approx(target["score"], abs=1e-3)
    assert float(row["mask_area"]) == target["mask_area"]
    # The instance's line in the list is lit.
    assert browser.evaluate("[...document.querySelectorAll('#instances tr.hot')].map(tr => tr.dataset.instance)") \
        == [str(target["instance"])]

    # A click pins it: moving onto another instance leaves the pinned row shown.
    browser.mouse("click", *on_screen(browser, x, y))
    other = max(others, key=lambda r: r["mask_area"])
    ox, oy = interior_pixel(other, [r for r in on_frame if r["instance"] != other["instance"]])
    browser.mouse("move", *on_screen(browser, ox, oy))
    assert shown_row(browser)["instance"] == str(target["instance"])
    # Clicking the other one pins that one instead.
    browser.mouse("click", *on_screen(browser, ox, oy))
    row = shown_row(browser)
    assert row["instance"] == str(other["instance"]) and row["category"] == other["category"]


def video_rows(demo_out: Path) -> tuple[str, list[int], list[dict]]:
    """The demo's video: its source, processed frames, and its instances (with track ids)."""
    output = open_output(str(demo_out))
    video = output.sql("SELECT source, list(frame ORDER BY frame) AS frames FROM frames "
                       "WHERE time IS NOT NULL AND status = 'ok' GROUP BY 1").to_pylist()[0]
    rows = output.sql("SELECT * FROM instances WHERE source = $s ORDER BY frame, instance",
                      params={"s": video["source"]}).to_pylist()
    return video["source"], video["frames"], rows


@needs_chromium
def test_clicking_a_tracked_instance_shows_its_strip_of_crops(viewer, browser, demo_out):
    source, frames, rows = video_rows(demo_out)
    first = [r for r in rows if r["frame"] == frames[0]]
    target = max(first, key=lambda r: r["mask_area"])
    assert target["track_id"] is not None
    seen = [r["frame"] for r in rows if r["track_id"] == target["track_id"]]
    x, y = interior_pixel(target, [r for r in first if r["instance"] != target["instance"]])
    open_page(browser, viewer, "#/frame?" + urllib.parse.urlencode({"source": source, "frame": frames[0]}))
    browser.wait_for(f"document.getElementById('frame-canvas').dataset.drawn === '{frames[0]}'")
    assert browser.evaluate("document.querySelectorAll('#strip img').length") == 0

    browser.mouse("click", *on_screen(browser, x, y))
    assert shown_row(browser)["track_id"] == str(target["track_id"])
    # One crop per frame the track was seen on (the demo's track is short), each a real picture.
    browser.wait_for(f"document.querySelectorAll('#strip img').length === {len(seen)} && "
                     "[...document.querySelectorAll('#strip img')].every(i => i.complete && i.naturalWidth > 0)")
    caption = browser.evaluate("document.querySelector('#strip div').textContent")
    assert caption == f"track {target['track_id']}: frames {seen[0]}–{seen[-1]}"
    titles = browser.evaluate("[...document.querySelectorAll('#strip img')].map(i => i.title)")
    assert [int(t.split(",")[0].removeprefix("frame ")) for t in titles] == seen
    # A crop is the instance's box: about its shape, at most 96 pixels a side.
    sizes = browser.evaluate("[...document.querySelectorAll('#strip img')].map(i => [i.naturalWidth, i.naturalHeight])")
    box_w, box_h = round(target["x2"]) - round(target["x1"]), round(target["y2"]) - round(target["y1"])
    assert max(sizes[0]) <= 96 and abs(sizes[0][0] / sizes[0][1] - box_w / box_h) < 0.25
    # A crop links to its frame.
    browser.evaluate("document.querySelectorAll('#strip img')[1].click()")
    browser.wait_for(f"document.getElementById('frame-canvas') && "
                     f"document.getElementById('frame-canvas').dataset.drawn === '{seen[1]}'")


@needs_chromium
def test_play_advances_through_the_videos_frames(viewer, browser, demo_out):
    source, frames, _ = video_rows(demo_out)
    assert len(frames) >= 4
    open_page(browser, viewer, "#/frame?" + urllib.parse.urlencode({"source": source, "frame": frames[0]}))
    browser.wait_for(f"document.getElementById('frame-canvas').dataset.drawn === '{frames[0]}'")
    # Record every frame the page draws while it plays.
    browser.evaluate("window.drawnFrames = []; window.watchFrames = setInterval(() => {"
                     " const c = document.getElementById('frame-canvas');"
                     " if (c && c.dataset.drawn && window.drawnFrames.at(-1) !== c.dataset.drawn)"
                     " window.drawnFrames.push(c.dataset.drawn); }, 10)")
    browser.evaluate("document.getElementById('play').click()")
    browser.wait_for(f"document.getElementById('frame-canvas') && "
                     f"document.getElementById('frame-canvas').dataset.drawn === '{frames[-1]}'")
    drawn = [int(f) for f in browser.evaluate("window.drawnFrames")]
    browser.evaluate("clearInterval(window.watchFrames)")
    # Forwards, in order, ending on the last processed frame (a fast step may go unsampled).
    assert drawn == sorted(drawn) and set(drawn) <= set(frames) and drawn[-1] == frames[-1] and len(drawn) >= 3
    assert "pause" in browser.evaluate("document.getElementById('play').textContent")
    # At the last frame it stops (nothing after it) and pausing leaves the frame shown.
    browser.evaluate("document.getElementById('play').click()")
    browser.wait_for("!location.hash.includes('play=1') && document.getElementById('play') && "
                     "document.getElementById('play').textContent.includes('play')")
    assert browser.evaluate("document.getElementById('frame-canvas').dataset.drawn") == str(frames[-1])


def test_requests_without_the_token_are_refused(viewer, demo_out):
    source = open_output(str(demo_out)).sql("SELECT source FROM frames LIMIT 1").to_pylist()[0]["source"]
    for path, params in (("/", {}), ("/static/app.js", {}), ("/api/gallery", {}), ("/api/overview", {}),
                         ("/api/image", {"source": source, "frame": 0})):
        assert viewer.get(path, token=False, **params)[0] == 403
        assert viewer.get(path, token="not-the-token", **params)[0] == 403
        assert viewer.get(path, **params)[0] == 200
    # The first tokened request leaves a cookie: the page's own requests then need no token.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    opener.open(f"{viewer.url}").read()
    with opener.open(f"{viewer.base}/api/overview") as response:
        assert response.status == 200


def test_paths_outside_the_jobs_sources_are_refused(viewer, demo_out, tmp_path):
    source = open_output(str(demo_out)).sql("SELECT source FROM frames LIMIT 1").to_pylist()[0]["source"]
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    escapes = [str(secret), f"file://{secret}", "/etc/passwd", "file:///etc/passwd", "../../../../etc/passwd",
               f"{source}/../../../../etc/passwd", os.path.relpath(secret, Path(source).parent),
               os.path.relpath(source, os.getcwd()), str(demo_out / "_job.json")]
    for escape in escapes:
        for endpoint in ("image", "frame", "track"):
            status, body = viewer.get(f"/api/{endpoint}", source=escape, frame=0, track=1)
            assert status == 403, (escape, endpoint, status)
            assert b"root:" not in body
    for path in ("/static/../cli.py", "/static/..%2f..%2fcli.py", "/static/%2e%2e/cli.py", "/static/index.htm",
                 "/../../etc/passwd", "/api/../../etc/passwd"):
        status, body = viewer.get(path)
        assert status in (403, 404), (path, status)
        assert b"root:" not in body and b"import" not in body
    # Read-only: nothing but GET/HEAD is routed.
    request = urllib.request.Request(f"{viewer.url}", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 405
    # The SQL filter cannot reach the filesystem.
    status, body = viewer.get("/api/gallery", where="EXISTS (SELECT * FROM read_text('/etc/passwd'))")
    assert status == 400 and b"root:" not in body


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        table = Path(f"/proc/net/{name}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_the_server_listens_on_the_loopback_only(viewer):
    assert viewer.base.startswith("http://127.0.0.1:")
    assert listening_addresses(viewer.port) == {"127.0.0.1"}
    # Another address of this machine does not reach it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            own = probe.getsockname()[0]
        except OSError:
            own = None
    if own and not own.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((own, viewer.port), timeout=5).close()


def test_view_on_s3_shows_the_same_as_the_local_copy(viewer, demo_out, s3_server, s3_client, s3_bucket):
    for path in sorted(demo_out.rglob("*")):
        if path.is_file():
            s3_client.upload_file(str(path), s3_bucket, f"out/{path.relative_to(demo_out)}")
    remote = Viewer(f"s3://{s3_bucket}/out")
    try:
        for name, params in (("gallery", {}), ("gallery", {"category": "circle", "sort": "time"}),
                             ("gallery", {"where": "mask_area > 500", "page": 1, "per_page": 4})):
            assert remote.api(name, **params) == viewer.api(name, **params)
        local, there = viewer.api("overview"), remote.api("overview")
        for key in ("totals", "categories", "histogram", "errors"):
            assert there[key] == local[key]
        assert there["status"]["state"] == local["status"]["state"] == "done"
        shown = viewer.api("gallery")["frames"][0]
        frame = {"source": shown["source"], "frame": shown["frame"]}
        assert remote.api("frame", **frame) == viewer.api("frame", **frame)
        assert remote.get("/api/image", **frame) == viewer.get("/api/image", **frame)
    finally:
        remote.close()
