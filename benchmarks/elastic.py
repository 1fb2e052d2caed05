"""The elastic benchmark: a fixed job on a real Ray cluster of nodes on this machine.

Four runs of the same job (copies of `bikes.mp4`, every 2nd frame, 2 s segments, the demo
architecture at 128-256 px), each on a fresh cluster (token auth, 127.0.0.1; the nodes are
`ray start` process groups, as in tests/ray_head.py):

    never      a 1-node cluster (head, 1 CPU); no node joins
    join@10s   the same, and a second node (1 CPU) joins 10 s after `maskray submit` starts
    steady     head + one worker node (1 CPU each); nothing happens
    preempt    the same, but every 30 s the worker node gets Ray's drain call (reason
               PREEMPTION, 15 s deadline), its process group is killed at the deadline, and a
               fresh node joins in its place (a spot fleet's replacement)

Printed per run: wall seconds of `maskray submit` (start to exit), frames/s, the preemptions
and shards requeued it reported, retries charged, and whether every frame is there once.

    python -m benchmarks.elastic                 # 6 copies (1,500 frames sampled to 750)
    python -m benchmarks.elastic --copies 3 --runs never join@10s
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from ray_head import drain_node, kill_node, ray_env, start_head, start_node, stop_head  # noqa: E402

FLAGS = ["--model", "demo", "--weights", "none", "--min-size", "128", "--max-size", "256",
         "--score-threshold", "0.0", "--max-instances", "5", "--every", "2", "--segment-seconds", "2",
         "--batch-size", "2"]
RUNS = ("never", "join@10s", "steady", "preempt")
PREEMPT_EVERY_S, DEADLINE_S = 30.0, 15


def run(name: str, source: Path, work: Path) -> dict:
    head = start_head(num_cpus=1, auth_mode="token", timeout=400)
    nodes: list = []
    stop = threading.Event()
    try:
        if name in ("steady", "preempt"):
            nodes.append(start_node(head, num_cpus=1, auth_mode="token", timeout=400))
        output = work / f"out-{name}"
        shutil.rmtree(output, ignore_errors=True)
        command = [sys.executable, "-c", "from maskray.cli import main; main()", "submit", str(source),
                   "--output", str(output), "--address", head.gcs_address, *FLAGS]
        started = time.monotonic()
        submit = subprocess.Popen(command, cwd=REPO, env=ray_env("token"), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        events = threading.Thread(target=_cluster_events, args=(name, head, nodes, started, stop), daemon=True)
        events.start()
        _, log = submit.communicate(timeout=3600)
        wall = time.monotonic() - started
        stop.set()
        events.join(timeout=120)
        return _figures(name, submit.returncode, wall, output, log)
    finally:
        stop.set()
        for node in nodes:
            stop_head(node)
        stop_head(head)


def _cluster_events(name: str, head, nodes: list, started: float, stop: threading.Event) -> None:
    """What happens to the cluster during run `name` (on a thread, while the job runs)."""
    if name == "join@10s":
        if not stop.wait(max(0.0, started + 10 - time.monotonic())):
            nodes.append(start_node(head, num_cpus=1, auth_mode="token", timeout=400))
    elif name == "preempt":
        next_at = started + PREEMPT_EVERY_S
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            node = nodes[-1]
            drain_node(head, node, DEADLINE_S)
            if stop.wait(DEADLINE_S):
                return
            kill_node(node)
            nodes.append(start_node(head, num_cpus=1, auth_mode="token", timeout=400))
            next_at += PREEMPT_EVERY_S


def _figures(name: str, code: int, wall: float, output: Path, log: str) -> dict:
    from maskray.pipeline.output.status import output_status

    status = output_status(str(output))
    frames_once = status.frames_done == status.frames_total
    return {"run": name, "exit": code, "wall_s": round(wall, 1), "frames": status.frames_done,
            "frames_per_s": round(status.frames_done / wall, 2) if wall else 0.0,
            "preemptions": status.preemptions, "requeued_shards": status.requeued_shards,
            "retries": status.retries, "every_frame_once": frames_once,
            "last_line": log.strip().splitlines()[-1] if log.strip() else ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6, help="Copies of bikes.mp4 (250 frames each).")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="maskray-elastic-"))
    source = work / "src"
    source.mkdir()
    for n in range(args.copies):
        shutil.copy(REPO / "tests" / "data" / "videos" / "bikes.mp4", source / f"bikes-{n}.mp4")
    results = []
    try:
        for name in args.runs:
            figures = run(name, source, work)
            results.append(figures)
            print(json.dumps(figures), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'run':<10} {'exit':>4} {'wall s':>7} {'frames/s':>8} {'preempt':>7} {'requeued':>8} {'retries':>7} once")
    for r in results:
        print(f"{r['run']:<10} {r['exit']:>4} {r['wall_s']:>7.1f} {r['frames_per_s']:>8.2f} {r['preemptions'] or 0:>7}"
              f" {r['requeued_shards'] or 0:>8} {r['retries'] or 0:>7} {r['every_frame_once']}")
    return 0 if all(r["exit"] == 0 and r["every_frame_once"] for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
