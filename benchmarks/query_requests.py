"""S3 requests and seconds of `maskray query` on a local OUT uploaded to moto's S3 server.

    python -m benchmarks.query_requests OUT [OUT ...] [--sql "SELECT count(*) FROM instances"]

Each OUT (e.g. a scale benchmark's `out-10x`, or a copy after `maskray compact`) is uploaded as
it is under a fresh prefix; each query runs as `maskray query` in its own process, and the
requests moto answered meanwhile are printed by kind (`benchmarks/s3_endpoint.py`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.commands import _environment, maskray_command
from benchmarks.s3_endpoint import MotoEndpoint, upload


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="+", type=Path)
    parser.add_argument("--sql", nargs="+", default=["SELECT count(*) FROM frames", "SELECT count(*) FROM instances"])
    args = parser.parse_args(argv)
    with MotoEndpoint() as endpoint:
        for number, folder in enumerate(args.outputs):
            uri = upload(folder, f"{endpoint.prefix}/out-{number}", endpoint.put)
            for sql in args.sql:
                endpoint.requests.start()
                started = time.perf_counter()
                done = subprocess.run(maskray_command() + ["query", uri, sql], capture_output=True, text=True,
                                      env=_environment())
                seconds = time.perf_counter() - started
                requests = endpoint.requests.take()
                endpoint.requests.stop()
                if done.returncode != 0:
                    sys.exit(f"query_requests: {done.stderr.strip()}")
                print(json.dumps({"output": str(folder), "sql": sql, "seconds": round(seconds, 2), **requests}),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
