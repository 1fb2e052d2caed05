"""Where video frame indexes are cached: `OUT/_index/<key>.npz`, one file per source version.

Planning writes them and workers read them; output/layout.py lists the folder among OUT's
names from here, so inputs never import the output side.
"""

from __future__ import annotations

from maskray.pipeline import storage

INDEXES = "_index"


def video_index_uri(output: str, key: str) -> str:
    """Where the frame index of one source version (`key`) is cached."""
    return storage.join(output, INDEXES, f"{key}.npz")
