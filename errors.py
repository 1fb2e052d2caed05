"""maskray's error types: each carries the one line a user sees and the exit code.

Every layer raises these for a user's mistake; `cli.py` prints `str(error)` and exits
with `error.exit_code`, no traceback. Anything else is a bug and keeps its traceback.
"""


class MaskrayError(Exception):
    """A failure with a one-line message meant for the user (exit 1: the job failed)."""

    exit_code = 1


class UsageError(MaskrayError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class WeightsError(UsageError):
    """Weights cannot be loaded: offline `coco`, a missing file, a refused pickle (exit 2)."""


def first_line(error, limit: int = 300) -> str:
    """The first line of an error (or a text), at most `limit` characters: what fits a
    one-line message; an error without text is named by its type.

    The one way maskray shortens an error; the specialisations build on it (Ray's quoted
    remote tracebacks in `pipeline.execution.worker_pool.error_line`, DuckDB's caret
    diagrams in `pipeline.output.reader`)."""
    text = str(error if error is not None else "").strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return text.splitlines()[0].strip()[:limit]
