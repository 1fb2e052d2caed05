"""A job's weights, fetched once by the driver and shipped to every replica through Ray.

`resolve_weights` turns `--weights` into checked bytes:
- `none`: nothing (random initialisation in each replica);
- `demo`: the file shipped with maskray;
- `coco`: torchvision's published file from the torch hub cache, downloaded there first when
  missing (torch hub's own download and hash check, `models/weight_files.py`), never with
  `--offline`;
- a PATH or `file://`, `s3://`, `gs://` URI: read through `pipeline.storage` (credentials come
  from the environment and go no further than pyarrow);
- an `https://` URL (`http://` only on this machine's loopback): fetched with one request.
A sha256 is checked where one is known: `--weights-sha256` (a PATH or URI), the hash prefix a
URL's file name carries torchvision-style, torchvision's for `coco`.

`ship_weights` puts the bytes into Ray's object store once; replicas get them as an actor
argument (Ray moves them to each node at most once), so a node that joins needs no cache, no
copy of the file and no credentials. The driver never imports torch for this, except to
download `coco`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from maskray.errors import UsageError, WeightsError, first_line
from maskray.models.weight_files import DEMO_WEIGHTS, coco_file_of, fetch_coco
from maskray.models.weight_integrity import check_digest, parse_digest, prefix_in_name
from maskray.pipeline import storage

KEYWORDS = ("coco", "none", "demo")
URL_SCHEMES = ("https", "http")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
URL_TIMEOUT_S = 60.0  # between bytes, not for the whole file


@dataclass
class ResolvedWeights:
    """Weights read and checked by the driver; `data` moves to Ray's store in `ship_weights`."""

    kind: str  # coco | demo | file
    name: str  # what --weights said (never holds credentials: JobSpec refuses those)
    sha256: str  # of `data`, 64 hex digits
    size: int  # bytes
    data: Optional[bytes]


@dataclass(frozen=True)
class ShippedWeights:
    """What replicas are given: `ref` (an ObjectRef to the bytes) and how to check them."""

    kind: str
    name: str
    sha256: str
    size: int
    ref: Any

    def describe(self) -> str:
        return f"weights {self.name} ({self.size / 1e6:.1f} MB, sha256 {self.sha256[:12]})"


class JobWeights:
    """A job's weights in the driver: resolved once, when Ray is first needed (after the cheap
    checks of sources and OUT, before Ray is touched; never for a re-run with nothing left to
    do), then shipped once for every replica."""

    def __init__(self, spec):
        self._spec = spec
        self._resolved: Optional[ResolvedWeights] = None
        self._done = False
        self._shipped: Optional[ShippedWeights] = None

    def resolve(self) -> None:
        if not self._done:
            self._resolved, self._done = resolve_job_weights(self._spec), True

    def before(self, connect):
        """`connect`, preceded by resolving the weights (a mistake fails before Ray starts)."""
        def resolve_then_connect() -> None:
            self.resolve()
            connect()
        return resolve_then_connect

    def ship(self) -> Optional[ShippedWeights]:
        """The shipped weights (`ray.put` on the first call); None for `none`."""
        self.resolve()
        if self._shipped is None:
            self._shipped = ship_weights(self._resolved)
        return self._shipped


def resolve_job_weights(spec) -> Optional[ResolvedWeights]:
    """`resolve_weights` for a job spec (read through its attributes: pipeline never imports jobs)."""
    return resolve_weights(spec.weights, model=spec.model, sha256=getattr(spec, "weights_sha256", None),
                           offline=bool(getattr(spec, "offline", False)))


def resolve_weights(weights: str, *, model: str, sha256: Optional[str] = None,
                    offline: bool = False) -> Optional[ResolvedWeights]:
    """The checked bytes of `weights` for `model`; None for `none`. UsageError/WeightsError
    (one line, exit 2) for anything that cannot be had or does not match its hash."""
    weights = str(weights)
    expected = parse_digest(sha256) if sha256 else None
    if expected and weights in KEYWORDS:
        raise UsageError(f"--weights-sha256 checks a PATH or URI, not --weights {weights}")
    if weights == "none":
        return None
    if weights == "demo":
        if not DEMO_WEIGHTS.is_file():
            raise WeightsError(f"demo weights are missing: {DEMO_WEIGHTS} is not in this installation "
                               "(train them with `maskray train`, or use --weights none)")
        return _checked("demo", weights, DEMO_WEIGHTS.read_bytes(), None)
    if weights == "coco":
        path = fetch_coco(coco_file_of(model), offline=offline)
        return _checked("coco", weights, path.read_bytes(), None)
    scheme = weights.split("://", 1)[0].lower() if "://" in weights else ""
    if scheme in URL_SCHEMES:
        name_prefix = prefix_in_name(urlsplit(weights).path.rsplit("/", 1)[-1])
        data = _download(weights, offline)
        _checked("file", weights, data, name_prefix)  # the name's own promise, then the user's
        return _checked("file", weights, data, expected)
    return _checked("file", weights, _read_location(weights), expected)


def ship_weights(resolved: Optional[ResolvedWeights]) -> Optional[ShippedWeights]:
    """Put the bytes into Ray's object store (once per job); the driver lets go of its copy."""
    if resolved is None:
        return None
    import ray

    ref = ray.put(resolved.data)
    resolved.data = None
    return ShippedWeights(resolved.kind, resolved.name, resolved.sha256, resolved.size, ref)


def _checked(kind: str, name: str, data: bytes, expected: Optional[str]) -> ResolvedWeights:
    digest = check_digest(data, expected, name)
    return ResolvedWeights(kind, name, digest, len(data), data)


def _read_location(location: str) -> bytes:
    """A PATH or a storage URI's bytes (transient failures retried by `storage`)."""
    try:
        if storage.is_local(location) and not storage.exists(location):
            raise WeightsError(f"weights file {location} does not exist (or use one of: {', '.join(KEYWORDS)})")
        return storage.read_bytes(location)
    except UsageError:
        raise
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read weights {location}: {first_line(error)}") from None


def _download(url: str, offline: bool) -> bytes:
    """An http(s) URL's body, with one GET; `http://` only for this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise UsageError(f"weights URL {url} is plain http: use https (http:// is for this machine only)")
    if offline:
        raise WeightsError(f"--offline forbids downloading weights {url}: download them yourself and give their PATH")
    request = urllib.request.Request(url, headers={"User-Agent": "maskray"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise WeightsError(f"cannot download weights {url}: HTTP {error.code} {error.reason}") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsError(f"cannot download weights {url}: {first_line(reason)}") from None
