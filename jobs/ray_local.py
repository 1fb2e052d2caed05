"""Ray for a maskray job in this process: join a cluster, or start a private one here.

The one place maskray starts or joins Ray (`submit`, `train`, `ablate`, `demo`).

- Ray already initialised in this process (tests, notebooks): used as it is, never stopped.
- an address (`auto`, `HOST:PORT`, `ray://HOST:10001`): joined as a driver; a closed port
  fails in seconds, not after Ray's minutes of retries.
- no address: a private Ray on this machine, stopped when the session ends, locked down:
  * no dashboard;
  * token authentication forced on, even when `RAY_AUTH_MODE=disabled` (or a token of the
    user's own) is in the environment: the cluster gets a fresh random token, kept in a file
    that only this user can read (0600, in a 0700 folder), deleted at the end;
  * every listening socket on 127.0.0.1. `ray.init` turns a loopback `_node_ip_address` into
    the machine's routable address, so that argument does nothing; Ray keeps the loopback
    address (and its GCS, raylet and workers then bind their gRPC servers to it) only where
    it treats the machine as a single-machine platform, which `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`
    asks for. Ray reads that variable once, when `ray` is first imported, so this holds when
    the session is the first to import Ray in the process (the `maskray` command always is);
    otherwise Ray's defaults stay and the token is what keeps other machines out. (Once read,
    it holds for the process: a later direct join of another machine's GCS from the same
    Python process would announce this node as 127.0.0.1; use `ray://` or a new process.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from typing import Iterator, Optional

from maskray.errors import UsageError, first_line

# Ray's own switches (environment variables its processes read).
AUTH_MODE = "RAY_AUTH_MODE"
AUTH_TOKEN = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_FILE = "auth_token"


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, *, min_cpus: int = 1,
                logging_level: int = logging.WARNING) -> Iterator[bool]:
    """Ray for the body of a `with`: yields True when this call started or joined it (and will
    shut it down at the end), False when Ray was already up in this process.

    min_cpus: a private Ray gets this machine's usable cores, at least this many.
    Raises UsageError (one line) when Ray cannot be started or joined.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        yield False
        return
    quiet = {"log_to_driver": False, "logging_level": logging_level, "configure_logging": True}
    with contextlib.ExitStack() as cleanup:
        try:
            if address:
                _check_reachable(address)
                import ray

                ray.init(address=address, **quiet)
            else:
                cleanup.enter_context(private_cluster_environment())
                import ray

                ray.init(num_cpus=max(min_cpus, usable_cpus()), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or "a private local Ray"
            raise UsageError(f"cannot start or join Ray at {where}: {first_line(error)}") from None
        try:
            yield True
        finally:
            ray.shutdown()


def start_ray(address: Optional[str] = None, *, min_cpus: int = 1,
              logging_level: int = logging.WARNING) -> contextlib.ExitStack:
    """`ray_session` held open until the returned stack is closed (for callers that start Ray
    in one place and stop it in another)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(ray_session(address, min_cpus=min_cpus, logging_level=logging_level))
    except BaseException:
        stack.close()
        raise
    return stack


@contextlib.contextmanager
def private_cluster_environment() -> Iterator[str]:
    """The environment a private cluster starts under (inherited by all its processes), held
    for the cluster's life; the previous values are restored and the token file removed
    afterwards. Yields the token file's path. (`ray_session` uses it; so may a caller that
    needs `ray.init` options of its own, such as tests with made-up GPUs.)"""
    names = (AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH, SINGLE_MACHINE)
    saved = {name: os.environ.get(name) for name in names}
    folder = tempfile.mkdtemp(prefix="maskray-ray-")  # 0700: only this user can enter it
    try:
        token_path = os.path.join(folder, TOKEN_FILE)
        descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as token_file:
            token_file.write(_process_token())
        os.environ.pop(AUTH_TOKEN, None)  # a user's token would take precedence over the file
        os.environ[AUTH_MODE] = "token"
        os.environ[AUTH_TOKEN_PATH] = token_path
        if "ray" not in sys.modules:  # read by Ray at import: see the module's docstring
            os.environ[SINGLE_MACHINE] = "0"
        _refresh_ray_config()
        yield token_path
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


_TOKEN: list = []


def _process_token() -> str:
    """This process's cluster token: random, made once. Ray keeps the token it first read for
    the life of the process, so a second private cluster in one process (a notebook, several
    jobs) must be started with the same one; each cluster still gets its own 0600 file."""
    if not _TOKEN:
        _TOKEN.append(secrets.token_hex(32))
    return _TOKEN[0]


def _refresh_ray_config() -> None:
    """Ray caches its C++ config (the auth mode among it) and the token it loaded; when Ray was
    imported before (and perhaps ran a cluster without a token, as a plain `ray.init()` does),
    have it read both again so the forced token mode and this token hold here too."""
    if "ray" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable GCS for minutes; a closed port should fail in seconds."""
    host_port = address.split("://", 1)[-1]
    if address == "auto" or ":" not in host_port:
        return
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot reach a Ray cluster at {address}: {first_line(error)}") from None


def usable_cpus() -> int:
    """The cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
