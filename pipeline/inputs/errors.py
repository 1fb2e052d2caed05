"""Errors of the input side that are about one input, not about the job.

A `DecodeError` never stops a job: the worker records it as a `frames` row with
`status='error'` and goes on (DESIGN.md, "Bad input").
"""


class DecodeError(Exception):
    """An image or video cannot be read (empty, corrupt, truncated, not media); short message."""
