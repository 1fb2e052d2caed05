"""The write lifecycle of one output, in the manner of Ray Data's `Datasink`.

    sink = OutputSink(output)
    manifest = sink.on_write_start(make_manifest, overwrite=..., sources=...)   # driver
    writer = sink.shard_writer(shard_id, attempt, metadata)                   # worker, per shard
    writer.add(instances, frames); record = writer.commit(CommitRecord fields)
    sink.on_write_complete(summary) | sink.on_write_failed(error)             # driver

Every file is written whole (`storage.write_bytes_atomic`: local temp + rename, one PUT on
object stores). Parts carry attempt-unique names and the commit record names them, so a reader
sees a shard entirely or not at all and a late attempt never mixes its rows with another's.
Before its parts and before its commit, a writer checks that OUT still belongs to its job
(`_job.json`'s job id) and its driver's lease: a zombie attempt of a replaced job commits nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Optional

from maskray.models.errors import MaskrayError, UsageError
from maskray.pipeline import storage
from maskray.pipeline.output import layout
from maskray.pipeline.output.layout import CommitRecord, DamagedOutputError
from maskray.pipeline.output.lease import Lease
from maskray.pipeline.output.shard_writer import ShardWriter


class StaleWriterError(MaskrayError):
    """OUT no longer belongs to this writer's job or driver: its attempt commits nothing."""


class OutputSink:
    """One output folder's writer. Picklable (a URI and ids), so workers carry it."""

    def __init__(self, output: str, job_id: str = "", owner: str = ""):
        self.output = output
        self.job_id = job_id
        self.owner = owner
        self.lease: Optional[Lease] = None

    def __getstate__(self):
        return {"output": self.output, "job_id": self.job_id, "owner": self.owner, "lease": None}

    # ---- driver: start ------------------------------------------------------------------------
    def on_write_start(self, make_manifest: Callable[[Optional[dict]], dict], *, overwrite: bool,
                       sources: Iterable[str], lease_ttl_s: float) -> dict:
        """Take the lease, check or clear the previous job, write `_job.json`; returns it.

        `make_manifest(previous)` builds the new manifest from the previous one (None when
        there is none or it was overwritten); it raises UsageError for a different job.
        """
        if overwrite:
            refuse_overlap(self.output, sources)
        try:
            self.lease = Lease(self.output, lease_ttl_s).acquire()
        except OSError as error:
            raise UsageError(f"cannot write to output {self.output}: {_line(error)}") from None
        self.owner = self.lease.owner
        try:
            try:
                previous = read_job(self.output)
            except DamagedOutputError:
                previous = {"fingerprint": "unreadable"}
            if previous is not None and overwrite:
                clear_output(self.output)
                previous = None
            manifest = make_manifest(previous)
            self.job_id = manifest["job_id"]
            write_job(self.output, manifest)
            _delete_file(layout.success_uri(self.output))
            self.lease.renew(self.job_id)
        except OSError as error:
            self.lease.release()
            raise UsageError(f"cannot write to output {self.output}: {_line(error)}") from None
        except BaseException:
            self.lease.release()
            raise
        return manifest

    # ---- worker: one shard ------------------------------------------------------------------
    def shard_writer(self, shard_id: str, attempt: int, metadata: dict) -> ShardWriter:
        return ShardWriter(self, shard_id, attempt, metadata)

    def check_owner(self) -> None:
        """StaleWriterError unless OUT still holds our job and our driver's lease."""
        job = read_job(self.output) or {}
        if job.get("job_id") != self.job_id:
            raise StaleWriterError(
                f"{self.output} now holds job {job.get('job_id')}, not {self.job_id}: this attempt is discarded"
            )
        if self.owner and not storage.exists(layout.lease_uri(self.output, self.owner)):
            raise StaleWriterError(f"the driver of job {self.job_id} lost its lease on {self.output}")

    def commit(self, record: CommitRecord) -> CommitRecord:
        """Publish `record` (its parts are written); the parts of a commit it replaces go."""
        self.check_owner()
        uri = layout.commit_uri(self.output, record.shard)
        replaced = _read_commit_or_none(uri)
        storage.write_bytes_atomic(uri, record.to_json())
        if replaced is not None:
            for old in set(replaced.paths().values()) - set(record.paths().values()):
                _delete_file(layout.relative_uri(self.output, old))
        return record

    # ---- driver: progress, end ----------------------------------------------------------------
    def committed(self) -> dict[str, CommitRecord]:
        """This job's commit records; a damaged one is left out (its shard is redone)."""
        return read_commits(self.output, self.job_id, damaged="skip")

    def withdraw(self, record: CommitRecord) -> None:
        """Remove a commit (readers stop seeing it), then the parts it names."""
        _delete_file(layout.commit_uri(self.output, record.shard))
        for path in record.paths().values():
            _delete_file(layout.relative_uri(self.output, path))

    def write_job_manifest(self, manifest: dict) -> None:
        write_job(self.output, manifest)

    def write_driver_state(self, state: dict) -> None:
        storage.write_bytes_atomic(layout.driver_uri(self.output), layout.dumps(state))

    def on_write_complete(self, summary: dict) -> None:
        storage.write_bytes_atomic(layout.success_uri(self.output), layout.dumps(dict(summary, job_id=self.job_id)))

    def on_write_failed(self, error: BaseException) -> None:
        """The job failed: give OUT up. Committed shards stay, so the same `submit` resumes;
        the driver's heartbeat has left `state: failed` with the error's line."""
        self.release()

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()


# ---- reading the job's files ------------------------------------------------------------------

def read_json(uri: str) -> Optional[dict]:
    """A JSON file's content, None when it does not exist; DamagedOutputError naming a bad one."""
    try:
        data = storage.read_bytes(uri)
    except (FileNotFoundError, OSError) as error:
        if storage.exists(uri):
            raise error
        return None
    return layout.parse_json(data, uri)


def read_job(output: str) -> Optional[dict]:
    return read_json(layout.job_uri(output))


def write_job(output: str, manifest: dict) -> None:
    storage.write_bytes_atomic(layout.job_uri(output), layout.dumps(manifest))


def read_driver_state(output: str) -> Optional[dict]:
    return read_json(layout.driver_uri(output))


def read_success(output: str) -> Optional[dict]:
    return read_json(layout.success_uri(output))


def write_success(output: str, summary: dict) -> None:
    storage.write_bytes_atomic(layout.success_uri(output), layout.dumps(summary))


def read_commits(output: str, job_id: Optional[str] = None, damaged: str = "raise") -> dict[str, CommitRecord]:
    """`{shard id: CommitRecord}` of committed shards (of `job_id` only, when given).

    A damaged record raises DamagedOutputError naming its file (`damaged="skip"` leaves it
    out). Reads run in parallel on object stores.
    """
    try:
        found = storage.list_files(layout.commits_uri(output))
    except FileNotFoundError:
        return {}
    uris = [uri for uri, _ in found if layout.is_commit_file(uri)]

    def load(uri: str):
        try:
            return CommitRecord.from_json(storage.read_bytes(uri), uri)
        except DamagedOutputError:
            if damaged == "skip":
                return None
            raise
        except FileNotFoundError:  # withdrawn while we listed
            return None

    with ThreadPoolExecutor(max_workers=1 if storage.is_local(output) else 16) as pool:
        records = [r for r in pool.map(load, uris) if r is not None]
    return {r.shard: r for r in records if job_id is None or r.job_id == job_id}


# ---- removing ---------------------------------------------------------------------------------

def clear_output(output: str) -> None:
    """Remove a previous job (for `--overwrite`): each commit record, then the parts it names,
    then maskray's job files. Nothing else in OUT is touched."""
    try:
        found = storage.list_files(layout.commits_uri(output))
    except FileNotFoundError:
        found = []
    for uri, _ in found:
        if not layout.is_commit_file(uri):
            continue
        try:
            record = CommitRecord.from_json(storage.read_bytes(uri), uri)
        except (DamagedOutputError, FileNotFoundError):
            record = None
        _delete_file(uri)
        for path in (record.paths().values() if record else ()):
            _delete_file(layout.relative_uri(output, path))
        if record is not None and record.tracks is not None:  # the video's stitched track ids
            from maskray.pipeline.tracking.track_ids import video_key

            _delete_file(layout.track_ids_uri(output, video_key(record.planned)))
    for name in layout.JOB_FILES:
        _delete_file(storage.join(output, name))


def refuse_overlap(output: str, sources: Iterable[str]) -> None:
    """UsageError when OUT and a source contain one another: `--overwrite` there could
    remove inputs."""
    out = _comparable(output)
    for source in sources:
        src = _comparable(source)
        if out.startswith(src) or src.startswith(out):
            raise UsageError(
                f"--overwrite refused: output {output} overlaps source {source};"
                " choose an --output outside the sources"
            )


def _comparable(uri: str) -> str:
    import os

    text = storage.canonical(uri)
    if storage.is_local(text):
        text = os.path.realpath(text)
    return text.rstrip("/") + "/"


def _read_commit_or_none(uri: str) -> Optional[CommitRecord]:
    try:
        return CommitRecord.from_json(storage.read_bytes(uri), uri)
    except (FileNotFoundError, DamagedOutputError):
        return None
    except OSError:
        return None


def _delete_file(uri: str) -> None:
    import pyarrow.fs as pafs

    filesystem, path = storage.resolve(uri)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        filesystem.delete_file(path)


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
