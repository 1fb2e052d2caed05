"""The driver's heartbeat: a thread that renews the output's lease and `_driver.json`.

It beats from the moment the lease is taken (planning, Ray start-up and model loading
included), so `maskray status` is honest from the first second. A lease lost to another driver
(we were silent past its expiry) is noted in `lost`; the driver stops at its next check.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from maskray.pipeline.output.lease import LeaseLostError

HEARTBEAT_S = 30.0
LEASE_TTL_S = 4 * HEARTBEAT_S  # four missed beats before another driver may take over


class Heartbeat:
    def __init__(self, sink, job_id: str, interval: float = HEARTBEAT_S,
                 rate: Callable[[], float] = lambda: 0.0):
        self.sink, self.job_id, self.interval, self.rate = sink, job_id, interval, rate
        self.phase = "planning"
        # Counts and the replicas per node for `maskray status` (set by the driver once it has them).
        self.details: Callable[[], dict] = lambda: {}
        self.lost: Optional[LeaseLostError] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="maskray-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except LeaseLostError as error:
                self.lost = error
                return
            except Exception:  # a storage hiccup: the next beat tries again
                continue

    def beat(self, state: str = "running", message: str = "") -> None:
        with self._lock:
            if state == "running":
                self.sink.lease.renew(self.job_id)
            self.sink.write_driver_state({
                "job_id": self.job_id, "state": state, "phase": self.phase, "message": message,
                "owner": self.sink.owner, "updated": time.time(), "heartbeat_s": self.interval,
                "frames_per_s": round(float(self.rate()), 3), **self._details(),
            })

    def _details(self) -> dict:
        try:
            return dict(self.details())
        except Exception:  # noqa: BLE001 - a status detail never stops the heartbeat
            return {}

    def stop(self, state: str, message: str = "") -> None:
        """Stop beating and leave the final state (done or failed) for `maskray status`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.lost is not None:  # OUT is another driver's now: its state is not ours to write
            return
        try:
            self.beat(state=state, message=message)
        except Exception:  # never hide the job's own outcome behind a status write
            pass
