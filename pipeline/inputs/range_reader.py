"""Reading a file in ranges (seek + read through pyarrow.fs), counting what was read.

Container indexes read a few headers out of a large file; each `read_at` is one ranged GET
on an object store. The counters let tests and benchmarks prove how little was read.
"""

from __future__ import annotations

from maskray.pipeline import storage


class RangeReader:
    """Ranged reads of one file; `bytes_read` and `requests` count them. Use as a context manager."""

    def __init__(self, uri: str):
        self.uri = uri
        self._file = storage.open_input(uri)
        self.size = int(self._file.size())
        self.bytes_read = 0
        self.requests = 0

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the file)."""
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        self._file.seek(offset)
        data = self._file.read(length)
        self.requests += 1
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RangeReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
