"""A lease on an output: at most one live driver writes OUT.

Protocol (the same on a local disk and on object stores, which pyarrow reaches without a
conditional PUT): every driver has its own lease file `_leases/<owner>.json`, so no two
writers ever write one name.

- acquire: write our own lease file, then list `_leases/`. If another live lease is listed,
  delete ours and refuse. Two drivers racing both write before they list, so the later
  lister always sees the other (local disks and S3 list what was written before, strongly
  consistent): at most one proceeds; at worst both refuse and the user runs again.
  Expired leases do not count, and the winner deletes them: that is the takeover.
- renew (the heartbeat): rewrite our file; if it is gone, another driver took OUT over after
  we were silent past the expiry, and we stop (`LeaseLostError`).
- release: delete our file.

A lease held by a process of this host that no longer exists (a killed `submit`) is dead at
once, so a re-run after a crash need not wait for the expiry; a holder on another host is
judged by time alone.

Clock skew: a lease's times are its holder's clock. A lease counts as live until
`renewed + ttl + SKEW_MARGIN_S` by the reader's clock, so clocks that disagree by less than
the margin never make a live driver look expired; an age is never shown negative.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Optional

from maskray.errors import MaskrayError, UsageError
from maskray.pipeline import storage
from maskray.pipeline.output.layout import DamagedOutputError, LeaseRecord, lease_uri, leases_uri

SKEW_MARGIN_S = 30.0


class LeaseLostError(MaskrayError):
    """Another driver took the output over (we were silent past our lease's expiry)."""


def is_live(lease: LeaseRecord, now: Optional[float] = None) -> bool:
    now = time.time() if now is None else now
    return now - lease.renewed <= lease.ttl_s + SKEW_MARGIN_S and not _gone_from_this_host(lease)


def _gone_from_this_host(lease: LeaseRecord) -> bool:
    """True only when the holder ran here and its process has ended."""
    if lease.host != socket.gethostname() or lease.pid <= 0:
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but another user's
        return False
    return False


def read_leases(output: str) -> list[LeaseRecord]:
    """Every readable lease on `output`, oldest first (a damaged or vanished file is skipped:
    it names no live holder)."""
    try:
        found = storage.list_files(leases_uri(output))
    except FileNotFoundError:
        return []
    leases = []
    for uri, _ in found:
        if not uri.endswith(".json") or uri.rsplit("/", 1)[-1].startswith("."):
            continue
        try:
            leases.append(LeaseRecord.from_json(storage.read_bytes(uri), uri))
        except (DamagedOutputError, FileNotFoundError):
            continue
    return sorted(leases, key=lambda lease: (lease.acquired, lease.owner))


def live_holder(output: str, now: Optional[float] = None) -> Optional[LeaseRecord]:
    """The live lease on `output` (the oldest, if several), or None."""
    live = [lease for lease in read_leases(output) if is_live(lease, now)]
    return live[0] if live else None


def describe_holder(lease: LeaseRecord, now: Optional[float] = None) -> str:
    holder = "driver" if lease.command == "submit" else lease.command
    return f"{holder} {lease.owner} (host {lease.host}, pid {lease.pid}), silent for {lease.silent_s(now):.0f}s"


class Lease:
    """Our claim on `output`; `ttl_s` is how long it stays live without a renewal."""

    def __init__(self, output: str, ttl_s: float, command: str = "submit"):
        now = time.time()
        self.output = output
        self.record = LeaseRecord(owner=uuid.uuid4().hex[:12], host=socket.gethostname(), pid=os.getpid(),
                                  acquired=now, renewed=now, ttl_s=ttl_s, command=command)
        self.uri = lease_uri(output, self.record.owner)

    @property
    def owner(self) -> str:
        return self.record.owner

    def acquire(self) -> "Lease":
        """Take the lease, or UsageError naming the live holder and how long it has been silent."""
        storage.write_bytes_atomic(self.uri, self.record.to_json())
        others = [lease for lease in read_leases(self.output) if lease.owner != self.owner]
        live = [lease for lease in others if is_live(lease)]
        if live:
            self._delete(self.uri)
            raise UsageError(
                f"{self.output} is being written by another maskray {live[0].command}: {describe_holder(live[0])};"
                " wait for it to finish (or for its lease to expire) before running again"
            )
        for expired in others:  # take over: a holder silent past its expiry has lost OUT
            self._delete(lease_uri(self.output, expired.owner))
        return self

    def renew(self, job_id: str = "") -> None:
        """Extend the lease (the heartbeat); LeaseLostError if another driver took it over."""
        if not storage.exists(self.uri):
            raise LeaseLostError(
                f"lost the lease on {self.output}: another driver took it over after this one was silent"
            )
        self.record.renewed = time.time()
        self.record.job_id = job_id or self.record.job_id
        storage.write_bytes_atomic(self.uri, self.record.to_json())

    def held(self) -> bool:
        return storage.exists(self.uri)

    def release(self) -> None:
        self._delete(self.uri)

    @staticmethod
    def _delete(uri: str) -> None:
        filesystem, path = storage.resolve(uri)
        try:
            filesystem.delete_file(path)
        except (FileNotFoundError, OSError):
            pass
