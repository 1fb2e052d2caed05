"""Asking the autoscaler for what the queue needs (`--max-workers`).

While shards wait, the driver asks Ray's autoscaler (`ray.autoscaler.sdk.request_resources`)
for one replica bundle per replica the queue could keep busy, up to `--max-workers`; Ray keeps
such a request until it is replaced, so it is cleared (an empty request) as soon as the queue
is empty and, whatever happens, when the job ends: a failed or interrupted job must not keep
an autoscaler holding GPU nodes for nobody.
"""

from __future__ import annotations

from typing import Optional


class ResourceRequest:
    def __init__(self, bundle: dict, max_workers: Optional[int]):
        self.bundle = dict(bundle)
        self.max_workers = max_workers
        self.count = 0  # bundles asked for now
        self.asked = False  # ever asked: then the end clears

    def update(self, waiting: int, working: int = 0) -> None:
        """`waiting` shards in the queue and `working` in flight: ask for as many replicas as
        they can use (at most `--max-workers`), or clear the request once nothing waits."""
        if not self.max_workers:
            return
        wanted = min(self.max_workers, waiting + working) if waiting else 0
        if wanted != self.count:
            self._ask(wanted)

    def clear(self) -> None:
        if self.asked and self.count:
            try:
                self._ask(0)
            except Exception:  # noqa: BLE001 - a cluster that is gone holds no request either
                pass

    def _ask(self, count: int) -> None:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[dict(self.bundle) for _ in range(count)])
        self.count, self.asked = count, True
