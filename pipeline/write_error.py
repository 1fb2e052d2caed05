"""`WriteError`: a file of OUT could not be written, as the one line a user reads.

`storage.write_bytes_atomic` raises it for any failure that outlasts its retries; the line
names the file, says what happened in plain words (disk full, quota, read-only, permission,
the store refused or did not answer) and what to do, and that the same command resumes.
"""

from __future__ import annotations

import errno

from maskray.errors import MaskrayError, first_line


# errno -> (what happened, what to do), in a user's words
_WRITE_PROBLEMS = {
    errno.ENOSPC: ("no space left on the device", "free some space there (or copy OUT to a bigger disk and"
                                                    " give that as --output)"),
    errno.EDQUOT: ("disk quota exceeded", "free some of your quota or have it raised"),
    errno.EROFS: ("read-only file system", "make it writable or choose another --output"),
    errno.EACCES: ("permission denied", "give maskray write permission there or choose another --output"),
    errno.EPERM: ("operation not permitted", "give maskray write permission there or choose another --output"),
    errno.ENOTDIR: ("a file is in the way (part of the path is a file, not a folder)", "choose another --output"),
    errno.EFBIG: ("file too large for this file system", "choose an --output on another file system"),
}
_DENIED_WORDS = ("AccessDenied", "ACCESS_DENIED", "Forbidden", "(HTTP status 403")


class WriteError(MaskrayError, OSError):
    """A file of OUT could not be written. The job ends with this one line (exit 1); what
    it committed stays, so the same command resumes once the cause is fixed. An OSError too,
    so code that tolerates a failed write (a cache) still does. `transient`: the store did
    not answer (a worker's shard is retried); otherwise nothing will change until the user acts."""

    def __init__(self, message: str, transient: bool = False, code: int = 0, detail: str = ""):
        super().__init__(message)
        self.transient, self.code, self.detail = transient, code, detail  # detail: "what; what to do"

    def __reduce__(self):  # crosses from a Ray worker to the driver whole
        return type(self), (str(self), self.transient, self.code, self.detail)

    def __str__(self) -> str:
        return self.args[0] if self.args else ""

    @classmethod
    def of(cls, uri: str, error: OSError, transient: bool = False) -> "WriteError":
        """`transient`: the store did not answer (storage.is_transient says so)."""
        code = error.errno or 0
        if code in _WRITE_PROBLEMS:
            what, fix = _WRITE_PROBLEMS[code]
        elif any(word in str(error) for word in _DENIED_WORDS):
            what, fix = "the store refused the write (access denied)", "check the credentials and the bucket's policy"
        elif transient:
            what, fix = f"the store did not answer ({first_line(error, 160)})", "check the store or the network"
        else:
            what, fix = first_line(error, 200), "check that OUT is writable"
        transient = code not in _WRITE_PROBLEMS and transient
        return cls(f"cannot write {uri}: {what}; {fix}, then run the same command to resume"
                   " (what is committed is kept)", transient=transient, code=code, detail=f"{what}; {fix}")
