"""Errors of the input side that are about one input, not about the job.

A `DecodeError` never stops a job: the worker records it as a `frames` row with
`status='error'` and goes on (DESIGN.md, "Bad input"). One that is `transient` (the store
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
