"""The driver's side of the commit log: folds commit records into manifests (commit_log.py).

    log = CommitLogWriter(output, job_id).open()   # after the lease: reopens a finished log
    log.load(committed)                            # what storage holds (a resume)
    log.add(record) ... log.remove(record)         # as the driver learns of commits, withdraws
    log.publish(complete=True)                     # before `_SUCCESS`

A manifest is published when `every` records changed or `interval_s` passed since the last
one (checked as records arrive), and always at the end. Only after the switch does the writer
delete what the new manifest no longer needs: the `_commits/` files it folded (each only if it
still holds the folded record), the parts of withdrawn or replaced records that no record
names any more, and the manifest before the previous one (a reader that read the old pointer
a moment ago still finds its manifest).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from maskray.pipeline import storage
from maskray.pipeline.output import commit_log, layout
from maskray.pipeline.output.commit_log import Committed
from maskray.pipeline.output.layout import TABLE_NAMES, CommitRecord

PUBLISH_EVERY = 1000  # changed records
PUBLISH_INTERVAL_S = 10.0


class CommitLogWriter:
    def __init__(self, output: str, job_id: str, every: int = PUBLISH_EVERY,
                 interval_s: float = PUBLISH_INTERVAL_S):
        self.output, self.job_id, self.every, self.interval_s = output, job_id, every, interval_s
        self.pointer: Optional[dict] = None
        self.table = commit_log.MANIFEST_SCHEMA.empty_table()  # the published manifest
        self.paths: dict[str, tuple] = {}  # shard -> its parts, for every record known
        self.changes: dict[str, Optional[CommitRecord]] = {}  # since the last publish; None: withdrawn
        self.unfolded: dict[str, CommitRecord] = {}  # records whose `_commits/` file goes after the publish
        self.garbage: set[str] = set()  # parts to delete once no record names them
        self.published_at = time.monotonic()

    @property
    def generation(self) -> int:
        return int(self.pointer["generation"]) if self.pointer else 0

    def open(self) -> "CommitLogWriter":
        """Read the current pointer; a finished log is reopened (`complete` off), so readers
        look at `_commits/` again before any new commit lands there."""
        pointer = commit_log.read_pointer(self.output)
        if pointer is not None and pointer.get("job_id") == self.job_id:
            self.pointer = pointer
            if pointer.get("complete"):
                self.pointer = dict(pointer, complete=False)
                commit_log.write_pointer(self.output, self.pointer)
        elif pointer is not None:  # another job's log (left by a crashed --overwrite): start after it
            self.pointer = {"generation": pointer.get("generation", 0), "manifest": None}
        return self

    def load(self, committed: Committed) -> dict[str, CommitRecord]:
        """Take storage's view (the manifest we published, files not yet folded); records
        withdrawn since the last publish stay withdrawn. Returns the records the driver sees."""
        self.table = committed.manifest
        shards = committed.manifest["shard"].to_pylist()
        columns = [committed.manifest[f"{t}_path"].to_pylist() for t in TABLE_NAMES]
        self.paths = {shard: tuple(p for p in parts if p) for shard, *parts in zip(shards, *columns)}
        records = dict(committed.records)
        for shard, record in self.changes.items():
            if record is None and shard not in committed.pending:
                records.pop(shard, None)
                self.paths.pop(shard, None)
        for shard, record in committed.pending.items():
            self._learn(record)
        return records

    def add(self, record: CommitRecord) -> None:
        self._learn(record)
        self.maybe_publish()

    def _learn(self, record: CommitRecord) -> None:
        old = self.paths.get(record.shard)
        new = tuple(record.paths().values())
        if old is not None and old != new:
            self.garbage.update(old)
        self.paths[record.shard] = new
        self.changes[record.shard] = record
        self.unfolded[record.shard] = record

    def remove(self, record: CommitRecord) -> bool:
        """Forget `record`; True when a published manifest still names it, so its parts must
        wait for the next publish (they are then deleted if nothing names them)."""
        self.unfolded.pop(record.shard, None)
        self.changes[record.shard] = None
        self.paths.pop(record.shard, None)
        published = bool(pc.any(pc.equal(self.table["shard"], record.shard)).as_py())
        if published:
            self.garbage.update(record.paths().values())
        self.maybe_publish()
        return published

    def maybe_publish(self) -> None:
        due = time.monotonic() - self.published_at >= self.interval_s
        if self.changes and (len(self.changes) >= self.every or due):
            self.publish(complete=False)

    def publish(self, complete: bool) -> dict:
        """Write the next manifest and switch to it; then delete what it no longer needs.
        With nothing changed only the pointer is rewritten (a resume that found all done)."""
        if not self.changes and self.pointer and self.pointer.get("manifest"):
            if bool(self.pointer.get("complete")) != complete:
                self.pointer = dict(self.pointer, complete=complete)
                commit_log.write_pointer(self.output, self.pointer)
            return self.pointer
        changed = pa.array(list(self.changes), pa.string())
        kept = self.table.filter(pc.invert(pc.is_in(self.table["shard"], value_set=changed)))
        added = commit_log.records_to_table(r for r in self.changes.values() if r is not None)
        table = pa.concat_tables([kept, added])
        previous = self.pointer.get("manifest") if self.pointer else None
        before = self.pointer.get("previous") if self.pointer else None
        self.pointer = commit_log.publish(self.output, self.job_id, self.generation + 1, table,
                                          complete=complete, previous=previous)
        self.table, self.changes, self.published_at = table, {}, time.monotonic()
        folded, self.unfolded = self.unfolded, {}
        self._after_switch(folded, before)
        return self.pointer

    def _after_switch(self, folded: dict[str, CommitRecord], old_manifest: Optional[str]) -> None:
        unused = set()
        if self.garbage:  # a merged part may still be named by other records
            named = {p for table in TABLE_NAMES for p in self.table[f"{table}_path"].to_pylist() if p}
            named.update(p for parts in self.paths.values() for p in parts)
            unused, self.garbage = self.garbage - named, set()
        output = self.output

        def fold(record: CommitRecord) -> None:
            if commit_log.record_names_parts(output, record):
                delete_file(layout.commit_uri(output, record.shard))

        with ThreadPoolExecutor(max_workers=1 if storage.is_local(output) else 16) as pool:
            list(pool.map(fold, folded.values()))
            list(pool.map(lambda path: delete_file(layout.relative_uri(output, path)), sorted(unused)))
        if old_manifest:
            delete_file(layout.relative_uri(output, old_manifest))


def delete_file(uri: str) -> None:
    """Delete `uri` if it is there (a file maskray wrote; never a folder)."""
    import pyarrow.fs as pafs

    filesystem, path = storage.resolve(uri)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        try:
            filesystem.delete_file(path)
        except FileNotFoundError:
            pass
