"""Running a job from this process: an embedded Ray, or a cluster joined with `--address`.

- no address: a private Ray on this machine, stopped at the end, on 127.0.0.1 with token
  authentication forced on (`jobs.ray_local`);
- `auto` or `ray://host:10001`: join that cluster as a client/driver (`jobs.ray_local`);
- `http(s)://host:8265`: the Ray Jobs API, handled by `jobs.cluster`;
- Ray already initialised in this process (tests, notebooks): use it as it is.
"""

from __future__ import annotations

import contextlib
from typing import Optional, TextIO

from maskray.jobs.spec import JobSpec
from maskray.jobs.ray_local import ray_session

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INPUT_ERRORS = 0, 1, 2, 3


def run_job(spec: JobSpec, address: Optional[str] = None, *, overwrite: bool = False,
            wait: bool = True, stream: Optional[TextIO] = None) -> int:
    """Run `spec` to the end and return the exit code (0 done, 3 some inputs were errors).

    Usage mistakes raise `UsageError` (exit 2), a failed job `MaskrayError` (exit 1).
    """
    if address and address.startswith(("http://", "https://")):
        from maskray.jobs.cluster import api as cluster

        return cluster.submit_job(spec, address, wait=wait, overwrite=overwrite, stream=stream)
    spec.validate(check_local_device=not address)

    from maskray.pipeline.execution import driver

    # Ray starts (or is joined) only once the job needs it, and stops when the job ends.
    with contextlib.ExitStack() as ray_held:
        outcome = driver.run(
            spec, overwrite=overwrite, stream=stream, maskray_version=_version(),
            connect=lambda: ray_held.enter_context(ray_session(address)),
            preflight=lambda: _check_model(spec),
        )
        return outcome.exit_code


def _check_model(spec: JobSpec) -> None:
    """Fail in a second, not after starting Ray: an unknown model. Torch-free. The weights are
    read and checked next, by the driver, once for every replica (`pipeline/weights_location.py`)."""
    from maskray.models.catalog import get_spec

    get_spec(spec.model)  # UsageError naming the choices


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("maskray")
    except Exception:
        return "unknown"

