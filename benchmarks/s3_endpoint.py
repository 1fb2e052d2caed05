"""An S3 endpoint for the scale benchmark: moto's server on 127.0.0.1 (as tests/conftest.py
starts it), the requests it answered, and a parallel upload of the generated inputs.

The server runs in a thread of the benchmark's own process; `maskray` and its Ray workers,
in their own processes, reach it through the AWS_* variables set here. The credentials are
random per run, live only in this process's environment and are never printed.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUCKET = "maskray-bench"
UPLOAD_THREADS = 16
_CLEARED = ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")
# No quote before the method: werkzeug colours a line whose status is not 200 (a ranged GET's 206)
# with ANSI codes between the quote and the method.
_REQUEST_LINE = re.compile(r'(GET|HEAD|PUT|POST|DELETE) (/\S*) HTTP')
KINDS = ("get", "list", "head", "put", "post", "delete")


class RequestCounter(logging.Handler):
    """Counts the requests moto's server answers (its werkzeug access log), by kind.

    Requests are counted only from `start()` until `stop()`, so the uploads are left out.
    Path-style requests: `/bucket?list-type=2...` is a listing, `/bucket/key` an object.
    """

    def __init__(self):
        super().__init__(logging.INFO)
        self.counts: Counter = Counter()
        self._counting = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._counting:
            return
        found = _REQUEST_LINE.search(record.getMessage())
        if found:
            method, path = found.groups()
            on_bucket = "/" not in path.split("?", 1)[0].strip("/")
            self.counts["list" if method == "GET" and on_bucket else method.lower()] += 1

    def start(self) -> None:
        with self.lock:
            self.counts.clear()
            self._counting = True

    def take(self) -> dict:
        """The counts since `start()` or the last `take()` (then counting starts afresh): the
        total and per kind (get, list, head, put, post, delete)."""
        with self.lock:
            counts, self.counts = dict(self.counts), Counter()
        return {"total": sum(counts.values()), **{kind: counts.get(kind, 0) for kind in KINDS}}

    def stop(self) -> None:
        with self.lock:
            self._counting = False


class MotoEndpoint:
    """`with MotoEndpoint() as endpoint:` a fresh server with one empty bucket, `endpoint.prefix`."""

    def __init__(self):
        self.prefix = f"s3://{BUCKET}"
        self.requests = RequestCounter()
        self._server = self._client = None
        self._saved: dict = {}
        self._logger = logging.getLogger("werkzeug")
        self._level = self._logger.level

    def __enter__(self) -> "MotoEndpoint":
        from moto.server import ThreadedMotoServer

        # The handler first: werkzeug adds its own stderr handler to a logger that has none.
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self.requests)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        settings = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "BENCH" + secrets.token_hex(8).upper(),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance-metadata lookup
        }
        self._saved = {name: os.environ.get(name) for name in (*settings, *_CLEARED)}
        os.environ.update(settings)  # the child `maskray` processes inherit these
        for name in _CLEARED:
            os.environ.pop(name, None)
        import boto3

        self._client = boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"], region_name="us-east-1")
        self._client.create_bucket(Bucket=BUCKET)
        return self

    def put(self, uri: str, data: bytes) -> None:
        """One PutObject: half the time of pyarrow's writer, which makes each object a
        three-request multipart upload (a setup step, so it need not go through maskray)."""
        bucket, key = uri.split("://", 1)[1].split("/", 1)
        self._client.put_object(Bucket=bucket, Key=key, Body=data)

    def __exit__(self, *exc) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._server is not None:
            self._server.stop()
        self._logger.removeHandler(self.requests)
        self._logger.setLevel(self._level)

    @property
    def address(self) -> str:
        """host:port, for the log (no credentials)."""
        host, port = self._server.get_host_and_port()
        return f"{host}:{port}"


def upload(root: Path, prefix: str, put=None, threads: int = UPLOAD_THREADS) -> str:
    """Copy the input folder under an object-store prefix (skipping what is there already),
    `threads` PUTs at a time: 100,000 small files one by one take far too long. `put(uri, data)`
    writes one object (default: maskray's own storage)."""
    from maskray.pipeline import storage

    put = put or storage.write_bytes_atomic
    present = {uri for uri, _ in storage.list_files(prefix)} if storage.exists(prefix) else set()
    pending = [(path, storage.join(prefix, str(path.relative_to(root))))
               for path in sorted(root.rglob("*")) if path.is_file() and not path.name.startswith(".")]
    pending = [(path, uri) for path, uri in pending if uri not in present]
    done, lock = [0], threading.Lock()

    def copy_one(item: tuple[Path, str]) -> None:
        path, uri = item
        put(uri, path.read_bytes())
        with lock:
            done[0] += 1
            if done[0] % 10_000 == 0:
                print(f"  uploaded {done[0]:,} of {len(pending):,}", flush=True)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(copy_one, pending))  # list(): re-raises the first failure
    return prefix
