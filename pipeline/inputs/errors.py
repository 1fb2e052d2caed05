"""Errors of the input side that are about one input, not about the job.

A `DecodeError` never stops a job: the worker records it as a `frames` row with
`status='error'` and goes on (docs/inputs.md, "Errors reading inputs"). One that is `transient` (the store
did not answer, the network dropped) says so in the row's message, which starts with
TRANSIENT_PREFIX, so a resume knows the row is worth trying again.
"""

TRANSIENT_PREFIX = "transient: "


class DecodeError(Exception):
    """An image or video cannot be read (empty, corrupt, truncated, not media); short message."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def error_text(message: str, transient: bool) -> str:
    """The `error` column's text: transient errors carry the prefix exactly once."""
    if transient and not message.startswith(TRANSIENT_PREFIX):
        return TRANSIENT_PREFIX + message
    return message


def missing_is_transient(error: BaseException) -> bool:
    """Whether reading an input the job listed failed in a way worth trying again: the
    store did not answer, or the file is not found. A listed file that is gone was deleted
    after planning or hidden by an outage of the store; either way it is not a verdict on
    the file, so its row is redone on resume (a file really deleted is no longer listed)."""
    from maskray.pipeline import storage

    return storage.is_transient(error) or isinstance(error, FileNotFoundError) or _says_not_found(error)


def read_problem(error: BaseException) -> str:
    """What went wrong reading an input, in a user's words (not an exception's repr)."""
    from maskray.errors import first_line
    from maskray.pipeline import storage

    if isinstance(error, DecodeError):
        return first_line(error)
    if isinstance(error, FileNotFoundError) or _says_not_found(error):
        return "file not found (deleted or moved after the job listed it, or the store is out)"
    if isinstance(error, PermissionError) or "AccessDenied" in str(error):
        return "permission denied: maskray may not read this file"
    if isinstance(error, IsADirectoryError):
        return "a folder where a file was listed"
    if isinstance(error, MemoryError):
        return "not enough memory to decode it"
    if storage.is_transient(error):
        return f"the store did not answer ({first_line(error, limit=160)})"
    line = first_line(error, limit=200)
    return line if line != type(error).__name__ else f"unreadable ({line})"


def _says_not_found(error: BaseException) -> bool:
    # pyarrow's object-store clients raise a plain OSError for a missing key.
    text = str(error)
    return isinstance(error, OSError) and ("Path does not exist" in text or "NoSuchKey" in text
                                           or "[errno 2]" in text.lower())
