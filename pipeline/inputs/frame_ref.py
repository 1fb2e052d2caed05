"""What decoding yields for each frame: its identity (`FrameRef`), or why it failed (`FrameError`).

Inputs make these and the output tables record them (pipeline/output/columns.py), so they
live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class FrameRef:
    """Identity of one frame: `(source, frame)`; `time` is None for an image."""

    source: str
    frame: int
    time: Optional[float]
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class FrameError:
    """A frame (or a whole input) that could not be decoded."""

    source: str
    frame: int
    time: Optional[float]
    message: str
    transient: bool = False  # the store failed, not the file: worth trying again on a resume
