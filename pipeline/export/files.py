"""Files an export writes piece by piece (a COCO results list, a CVAT XML), whole or not at all.

Local: a temporary file beside the target, renamed over it on `commit`. Object stores: one
streamed upload (multipart on S3), which makes the object appear only when it completes.
Either way memory holds a buffer, not the file.
"""

from __future__ import annotations

import os
import tempfile

from maskray.errors import UsageError, first_line
from maskray.pipeline import storage


class StreamedFile:
    """`write(text)` as often as needed, then `commit()` (or `discard()` on failure)."""

    def __init__(self, uri: str):
        self.uri = storage.canonical(uri)
        try:
            if storage.is_local(self.uri):
                folder = os.path.dirname(self.uri)
                os.makedirs(folder, exist_ok=True)
                handle, self._temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
                self._stream = os.fdopen(handle, "wb")
            else:
                filesystem, path = storage.resolve(self.uri)
                self._temp, self._stream = None, filesystem.open_output_stream(path)
        except (ValueError, OSError) as error:
            raise UsageError(f"cannot write {uri}: {first_line(error)}") from None

    def write(self, text: str) -> None:
        self._stream.write(text.encode())

    def commit(self) -> None:
        self._stream.close()
        if self._temp is not None:
            os.chmod(self._temp, 0o644)
            os.replace(self._temp, self.uri)

    def discard(self) -> None:
        if self._temp is not None and not self._stream.closed:
            self._stream.close()
            os.unlink(self._temp)
