"""A real headless Chromium driven through the Chrome DevTools Protocol, for the viewer's tests.

The OS package (`apt-get install -y chromium`) started with `--headless --remote-debugging-port=0`;
its page is driven over the DevTools WebSocket with aiohttp (already a dependency), on an
event loop in a thread of its own so the tests stay plain synchronous code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Optional

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> Optional[str]:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless browser with one page. `goto`, `evaluate`, `wait_for`, `mouse`, `screenshot`."""

    def __init__(self, width: int = 1400, height: int = 1000):
        executable = find_chromium()
        if executable is None:
            raise RuntimeError("no Chromium: install it with `apt-get install -y chromium`")
        self.profile = tempfile.mkdtemp(prefix="maskray-chromium-")
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--force-device-scale-factor=1",
             f"--window-size={width},{height}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._ids = 0
        self._pending: dict[int, asyncio.Future] = {}
        try:
            port = self._port()
            self._call(self._connect(port))
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    def _port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                # Chromium keeps logging: drain it, or a full pipe would stall the browser.
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                return int(found.group(1))
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError("Chromium did not start its DevTools endpoint")

    async def _connect(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self.socket = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                future.set_result(data)

    async def _send(self, method: str, params: dict) -> dict:
        self._ids += 1
        future = self.loop.create_future()
        self._pending[self._ids] = future
        await self.socket.send_str(json.dumps({"id": self._ids, "method": method, "params": params}))
        return await asyncio.wait_for(future, 60)

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(90)

    def send(self, method: str, **params) -> dict:
        reply = self._call(self._send(method, params))
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0):
        """Polls until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the page is between documents (navigating): not yet
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {expression}")
            time.sleep(0.1)

    def mouse(self, kind: str, x: float, y: float) -> None:
        """A real pointer event at viewport point (x, y): kind 'move' or 'click' (press and release)."""
        if kind == "move":
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
            return
        for event in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=event, x=x, y=y, button="left", clickCount=1)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self, clip: Optional[dict] = None) -> bytes:
        """PNG of the viewport, or of `clip` ({x, y, width, height} in CSS pixels)."""
        params = {"format": "png"}
        if clip:
            params["clip"] = dict(clip, scale=1)
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])

    def close(self) -> None:
        if hasattr(self, "socket"):
            self._call(self.socket.close())
        if hasattr(self, "session"):
            self._call(self.session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(20)
        shutil.rmtree(self.profile, ignore_errors=True)
