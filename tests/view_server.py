"""`maskray view OUT --port 0` in a process of its own, for the viewer's tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request


class Viewer:
    """`maskray view OUT --port 0` in its own process group; `url` carries the token."""

    def __init__(self, output: str, *extra: str):
        self.process = subprocess.Popen([sys.executable, "-m", "maskray", "view", output, "--port", "0", *extra],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        printed = []
        for line in self.process.stdout:
            printed.append(line)
            found = re.search(r"open (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise AssertionError("the viewer printed no URL:\n" + "".join(printed))
        parsed = urllib.parse.urlsplit(self.url)
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.port = parsed.port
        self.token = urllib.parse.parse_qs(parsed.query)["token"][0]

    def get(self, path: str, token=True, **params):
        """(status, body bytes) of a GET; token: True (the right one), False (none) or another."""
        if token is not False:
            params["token"] = self.token if token is True else token
        url = f"{self.base}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def api(self, path: str, **params):
        status, body = self.get(f"/api/{path}", **params)
        assert status == 200, body
        return json.loads(body)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
