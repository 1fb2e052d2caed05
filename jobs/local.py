"""Running a job from this process: an embedded Ray, or a cluster joined with `--address`.

- no address: a private Ray on this machine, stopped at the end: no dashboard, node address
  127.0.0.1, and Ray's token authentication (its default for a new local cluster). Ray 2.60's
  GCS and raylet still listen on all interfaces (it has no option to bind them to loopback);
  the token is what keeps others out;
- `auto` or `ray://host:10001`: join that cluster as a client/driver;
- `http(s)://host:8265`: the Ray Jobs API, handled by `jobs.cluster`;
- Ray already initialised in this process (tests, notebooks): use it as it is.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, TextIO

from maskray.jobs.spec import JobSpec
from maskray.models.errors import UsageError, first_line

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

    import ray

    from maskray.pipeline.execution import driver

    started_here = []

    def connect() -> None:
        if not ray.is_initialized():  # Ray already up in this process (tests, notebooks): use it
            _connect(address)
            started_here.append(True)

    try:
        outcome = driver.run(
            spec, overwrite=overwrite, connect=connect, stream=stream, maskray_version=_version(),
            preflight=lambda: _check_model_and_weights(spec, on_this_machine=not address),
        )
        return outcome.exit_code
    finally:
        if started_here:
            ray.shutdown()


def _check_model_and_weights(spec: JobSpec, on_this_machine: bool) -> None:
    """Fail in a second, not after starting Ray and the workers: an unknown model, and
    (when the workers run here) weights that are not where they should be."""
    from maskray.models.specs import get_spec
    from maskray.models.weights import coco_weights_cached, load_weights

    model = get_spec(spec.model)  # UsageError naming the choices
    if not on_this_machine or spec.weights in ("none", "demo"):
        return
    missing = (coco_weights_cached(spec.model) is not True if spec.weights == "coco"
               else "://" not in spec.weights and not os.path.isfile(spec.weights))
    if missing:  # loading says precisely what is wrong, and where to put the file
        load_weights(spec.weights, model=spec.model, coco_file=model.coco_weights)


def _connect(address: Optional[str]) -> None:
    import ray

    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **quiet)
            return
        # Token auth is Ray's default for a new local cluster: keep it, without its warning
        # on every run.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(
            num_cpus=_local_cpus(), include_dashboard=False, _node_ip_address="127.0.0.1",
            **quiet,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or "an embedded local Ray"
        raise UsageError(f"cannot start or join Ray at {where}: {first_line(error)}") from None


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable GCS for minutes; a closed port should fail in seconds."""
    import socket

    host_port = address.split("://", 1)[-1]
    if address == "auto" or ":" not in host_port:
        return
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot reach a Ray cluster at {address}: {first_line(error)}") from None


def _local_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("maskray")
    except Exception:
        return "unknown"

