"""Whether a replica's in-flight shard is kept or requeued when its node gets a drain notice
with a deadline (no Ray started): judged from the replica's own recent shard times."""

from __future__ import annotations

import time

from maskray.pipeline.execution.replica import Replica, finishes_before


def _replica_with_shards(*seconds: float, in_flight_s: float) -> Replica:
    replica = Replica(actor=None)
    for value in seconds:
        replica.recent.append((value, 10))
    replica.begin_shard()
    replica.shard_started = time.monotonic() - in_flight_s
    return replica


def test_a_shard_that_will_end_before_the_deadline_is_kept_and_one_that_will_not_is_requeued():
    replica = _replica_with_shards(10.0, 12.0, 11.0, in_flight_s=8.0)  # median 11 s: ~3 s left
    assert finishes_before(replica, time.time() + 20, fallback_s=None)
    assert not finishes_before(replica, time.time() + 4, fallback_s=None)  # 3 s + 2 s margin > 4 s
    assert finishes_before(replica, None, fallback_s=None)  # a drain without a deadline waits


def test_no_estimate_or_a_shard_slower_than_usual_counts_as_not_finishing():
    fresh = _replica_with_shards(in_flight_s=1.0)
    assert not finishes_before(fresh, time.time() + 600, fallback_s=None)
    assert finishes_before(fresh, time.time() + 600, fallback_s=5.0)  # the pool's typical time
    late = _replica_with_shards(10.0, in_flight_s=15.0)
    assert not finishes_before(late, time.time() + 600, fallback_s=None)
