"""Checking that weights are the bytes a user meant: sha256 digests and hash prefixes.

Torch-free (the driver checks weights before any replica exists, and never imports torch).
A digest may be given in full (64 hex digits) or as a prefix of at least 8, the way
torchvision names its published files (`maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth` carries the
first 8 hex digits of its sha256).
"""

from __future__ import annotations

import hashlib
import re

from maskray.errors import UsageError, WeightsError

MIN_PREFIX = 8  # hex digits: torchvision's names carry 8
# torch.hub's own pattern (`HASH_REGEX`): the hex after the last '-' before the extension.
_NAME_PREFIX = re.compile(r"-([a-f0-9]+)\.[^/]*$")
_HEX = re.compile(r"[0-9a-f]+")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_digest(text: str, flag: str = "--weights-sha256") -> str:
    """A digest or prefix as a user typed it, lower-cased; UsageError (one line) otherwise."""
    digest = str(text).strip().lower()
    if not _HEX.fullmatch(digest) or not MIN_PREFIX <= len(digest) <= 64:
        raise UsageError(f"{flag} must be {MIN_PREFIX} to 64 hex digits of a sha256, got {text!r}")
    return digest


def prefix_in_name(name: str) -> str | None:
    """The hash prefix a file name carries torchvision-style (`name-<hex>.ext`), or None.

    Shorter runs of hex (`model-2024.pt`, `net-e2.pth`) are not taken for a hash."""
    match = _NAME_PREFIX.search(name)
    if match is None or len(match.group(1)) < MIN_PREFIX:
        return None
    return match.group(1)


def check_digest(data: bytes, expected: str | None, source: str) -> str:
    """The sha256 of `data` (64 hex digits); WeightsError when it does not start with
    `expected` (a digest or prefix; None checks nothing)."""
    actual = sha256_hex(data)
    if expected and not actual.startswith(expected.lower()):
        raise WeightsError(
            f"weights {source} do not match their sha256: expected {expected}, got {actual[:len(expected)]}"
            " (a corrupted or replaced file; nothing was run)"
        )
    return actual
