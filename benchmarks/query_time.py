"""Seconds of `maskray query` on local OUTs, each run a fresh process, the runs interleaved.

    python -m benchmarks.query_time OUT [OUT ...] [--runs 7] [--sql "SELECT count(*) FROM instances"]
        [--code NAME=PYTHONPATH ...]

For each OUT (and each `--code`: another checkout on PYTHONPATH, e.g. the code before a change)
the query runs `--runs` times, all combinations interleaved so that the machine's other work
falls on each alike; printed per combination: the median and the smallest wall seconds, the
median CPU seconds (user + system, which move much less than wall seconds on a shared
machine), and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from benchmarks.scale import _timed_cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="+")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sql", default="SELECT count(*) FROM instances")
    parser.add_argument("--code", action="append", default=[], metavar="NAME=PYTHONPATH",
                        help="also time the query with this PYTHONPATH (default: this interpreter's own)")
    args = parser.parse_args(argv)
    codes = dict(item.split("=", 1) for item in args.code) or {"this": os.environ.get("PYTHONPATH", "")}
    load_before = os.getloadavg()
    times: dict = {(code, out): [] for code in codes for out in args.outputs}
    for _ in range(args.runs):
        for code, path in codes.items():
            command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {path!r}) if {path!r} else None; "
                       "from maskray.cli import main; main()"]
            for out in args.outputs:
                times[(code, out)].append(_timed_cpu(command + ["query", out, args.sql]))
    for (code, out), runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(json.dumps({"code": code, "output": out, "sql": args.sql, "runs": len(runs),
                          "median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
                          "median_cpu_s": round(statistics.median(cpus), 3)}), flush=True)
    print(json.dumps({"load_average_before": [round(v, 1) for v in load_before],
                      "load_average_after": [round(v, 1) for v in os.getloadavg()]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
