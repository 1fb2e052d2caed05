"""Watching the Ray cluster from the driver: is our own node alive, which nodes died, which
nodes are there (the elastic pool follows them) and which are draining (preemption notices).

Ray does not always tell a waiting driver: with the embedded Ray's raylet killed, or the
cluster it joined gone, `ray.wait` keeps returning nothing; an actor task on a node that
vanished can stay pending. So a thread asks the GCS every CHECK_S seconds for the nodes
(and where the running actors live), and the dispatch loop reads its latest answer:
- the driver's own node dead, or no answer for `cluster_lost_after_s()`: the job fails with one line
  (exit 1), instead of waiting forever;
- an actor whose node is dead: its shard goes back to the queue on a fresh actor, and the
  attempt is not counted (losing a node is routine on spot fleets, not the shard's fault);
- the alive nodes with their resources, and the draining ones with their deadlines (the GCS
  drain state that `ray drain-node`, the autoscaler and KubeRay set before a node goes).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Callable, Optional

from maskray.errors import MaskrayError

CHECK_S = 3.0
# Ray's own limit: its driver quits without a word after this long without the GCS
# (`RAY_gcs_rpc_server_reconnect_timeout_s`, default 60).
_RAY_RECONNECT_ENV, _RAY_RECONNECT_DEFAULT_S = "RAY_gcs_rpc_server_reconnect_timeout_s", 60.0
_PROBE_TIMEOUT_S = 2.0
# How long a lost actor's node may still look alive before the loss counts as the worker's:
# Ray's GCS declares a silent node dead after its health checks fail (~15-30 s).
NODE_VERDICT_S = 60.0
NODE_LOST, WORKER_DIED = "node lost", "worker died"


def cluster_lost_after_s() -> float:
    """How long without an answer before the job fails: half of Ray's own limit, so the one
    line comes before Ray's silent exit (30 s by default; shorter where Ray is told shorter)."""
    try:
        ray_limit = float(os.environ.get(_RAY_RECONNECT_ENV, _RAY_RECONNECT_DEFAULT_S))
    except ValueError:
        ray_limit = _RAY_RECONNECT_DEFAULT_S
    return max(CHECK_S, min(ray_limit, _RAY_RECONNECT_DEFAULT_S) / 2)


class ClusterLost(MaskrayError):
    """The driver can no longer reach a working Ray cluster (exit 1)."""


class ClusterWatch:
    def __init__(self, check_s: float = CHECK_S, lost_after_s: Optional[float] = None,
                 on_lost: Optional[Callable[[str], None]] = None):
        """`on_lost(message)` is called from the watching thread when the cluster is lost,
        for a caller whose own thread may be stuck inside Ray (see `exit_lost`)."""
        import ray

        self._check_s, self._lost_after_s = check_s, lost_after_s or cluster_lost_after_s()
        context = ray.get_runtime_context()
        self._own_node = context.get_node_id()
        self._gcs = _host_port(context.gcs_address)
        self._lock = threading.Lock()
        self._last_answer = time.monotonic()
        self._dead_nodes: set[str] = set()
        self._alive_nodes: dict[str, dict] = {}  # node id (hex) -> its total resources
        self._draining: dict[str, Optional[float]] = {}  # node id -> deadline (epoch s), None: none
        self._ever_draining: set[str] = set()  # a node that died after a notice was preempted
        self._actor_nodes: dict[str, str] = {}  # actor id (hex) -> node id (hex)
        self._watched: set[str] = set()
        self._error: Optional[str] = None
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maskray-cluster-watch", daemon=True)
        self._thread.start()

    def watch_actor(self, actor) -> None:
        with self._lock:
            self._watched.add(actor._actor_id.hex())

    def forget_actor(self, actor) -> None:
        with self._lock:
            self._watched.discard(actor._actor_id.hex())

    def raise_if_lost(self) -> None:
        message = self.lost_message()
        if message:
            raise ClusterLost(message)

    def lost_message(self) -> Optional[str]:
        with self._lock:
            silent = time.monotonic() - self._last_answer
            own_dead = self._own_node in self._dead_nodes
            detail = self._error
        if own_dead:
            return "lost the Ray cluster: the node this driver runs on died (its raylet is gone)"
        if silent > self._lost_after_s:
            why = f" ({detail})" if detail else ""
            return f"lost the Ray cluster: no answer from it for {silent:.0f}s{why}"
        return None

    def on_dead_node(self, actor) -> bool:
        """True when the GCS says the node `actor` was placed on has died."""
        with self._lock:
            node = self._actor_nodes.get(actor._actor_id.hex())
            return node is not None and node in self._dead_nodes

    def alive_nodes(self) -> dict[str, dict]:
        """`{node id: total resources}` of the nodes alive at the latest answer (draining included)."""
        with self._lock:
            return dict(self._alive_nodes)

    def draining(self) -> dict[str, Optional[float]]:
        """`{node id: deadline as a Unix time (None: no deadline)}` of the nodes being drained."""
        with self._lock:
            return dict(self._draining)

    def was_draining(self, node_id: Optional[str]) -> bool:
        with self._lock:
            return node_id in self._ever_draining

    def actor_node(self, actor) -> Optional[str]:
        with self._lock:
            return self._actor_nodes.get(actor._actor_id.hex())

    def verdict(self, actor, error, since: float) -> Optional[str]:
        """Why `actor` was lost: NODE_LOST, WORKER_DIED, or None while that cannot be told yet.

        An actor that died on a live node (its process crashed) is the worker's loss at once;
        one that is only "unavailable" (its node stopped answering) waits for the GCS to
        declare the node dead, at most NODE_VERDICT_S.
        """
        import ray

        if getattr(error, "preempted", False):
            return NODE_LOST
        waiting = error is None or isinstance(error, ray.exceptions.ActorUnavailableError)
        # A death is decided once, so ask the GCS now; a wait reads the thread's latest answer.
        if self.on_dead_node(actor) if waiting else self.node_is_dead(actor):
            return NODE_LOST
        if waiting:
            return WORKER_DIED if time.monotonic() - since > NODE_VERDICT_S else None
        return WORKER_DIED

    def node_is_dead(self, actor) -> bool:
        """Asked now (not from the last check): did the node of `actor` die?"""
        self._refresh(threading.Event(), also=[actor._actor_id.hex()])
        return self.on_dead_node(actor)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._check_s):
            answered = threading.Event()
            reader = threading.Thread(target=self._refresh, args=(answered,), daemon=True)
            reader.start()
            # A GCS that is gone can make the call hang: stop waiting for it, keep checking.
            reader.join(timeout=max(self._check_s, 10.0))
            message = self.lost_message()
            if message and self._on_lost is not None:
                self._on_lost(message)
                return

    def _refresh(self, answered: threading.Event, also: tuple = ()) -> None:
        import ray
        from ray._private import state

        try:
            # Ray's GCS calls can hold the interpreter while they wait for a GCS that is gone;
            # a plain connection attempt first tells a vanished cluster without blocking.
            if self._gcs:
                socket.create_connection(self._gcs, timeout=_PROBE_TIMEOUT_S).close()
            nodes = ray.nodes()
            dead = {node["NodeID"] for node in nodes if not node.get("Alive", True)}
            alive = {node["NodeID"]: dict(node.get("Resources") or {}) for node in nodes if node.get("Alive", True)}
            draining = _draining_nodes(alive)
            with self._lock:
                watched = [a for a in {*self._watched, *also} if a not in self._actor_nodes]
            placed = {}
            for actor_id in watched:
                entry = state.actors(actor_id=actor_id) or {}
                node = (entry.get("Address") or {}).get("NodeID")
                if node:
                    placed[actor_id] = node
        except Exception as error:  # the GCS is unreachable or answered nonsense: not an answer
            with self._lock:
                self._error = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            return
        with self._lock:
            self._dead_nodes, self._last_answer, self._error = dead, time.monotonic(), None
            self._alive_nodes, self._draining = alive, draining
            self._ever_draining |= set(draining)
            self._actor_nodes.update(placed)
        answered.set()


def _draining_nodes(alive: dict) -> dict[str, Optional[float]]:
    """The GCS's drain state: `{node id: deadline (Unix s) or None}` for alive nodes."""
    import ray

    gcs = ray._private.worker.global_worker.gcs_client
    answer = gcs.get_draining_nodes(timeout=_PROBE_TIMEOUT_S * 5)
    # The GCS gives each deadline in ms since the epoch; 0 means "no deadline".
    found = {(node if isinstance(node, str) else node.hex()): deadline for node, deadline in answer.items()}
    return {node: (deadline / 1000.0 if deadline else None) for node, deadline in found.items() if node in alive}


def exit_lost(record: Callable[[str], None]) -> Callable[[str], None]:
    """An `on_lost` that records the failure (`record(message)`), prints the one line and ends
    the process with exit code 1: with its cluster gone, Ray calls in the driver's main thread
    can block for minutes, or Ray ends the process itself without a word."""

    def on_lost(message: str) -> None:
        try:
            record(message)
        finally:
            sys.stderr.write(f"maskray: error: {message}\n")
            sys.stderr.flush()
            os._exit(ClusterLost.exit_code)

    return on_lost


def _host_port(address: Optional[str]) -> Optional[tuple[str, int]]:
    host, _, port = (address or "").rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None
