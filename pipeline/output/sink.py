"""The write lifecycle of one output, in the manner of Ray Data's `Datasink`.

    sink = OutputSink(output)
    job_record = sink.on_write_start(make_job_record, overwrite=..., sources=...)   # driver
    writer = sink.shard_writer(shard_id, attempt, metadata)                   # worker, per shard
    writer.add(instances, frames); record = writer.commit(CommitRecord fields)
    sink.record(record)                                                         # driver, per commit
    sink.on_write_complete(summary) | sink.on_write_failed(error)             # driver

The driver's sink folds the commit records into manifests (`commit_log_writer.py`), so readers of a
large job read a few files instead of one record per shard (`commit_log.py`).

Every file is written whole (`storage.write_bytes_atomic`: local temp + rename, one PUT on
object stores). Parts carry attempt-unique names and the commit record names them, so a reader
sees a shard entirely or not at all and a late attempt never mixes its rows with another's.
Before its parts and before its commit, a writer checks that OUT still belongs to its job
(`_job.json`'s job id) and its driver's lease: a zombie attempt of a replaced job commits nothing.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from maskray.errors import MaskrayError, UsageError, first_line
from maskray.pipeline import storage
from maskray.pipeline.output import commit_log, layout, part_check
from maskray.pipeline.output.layout import CommitRecord, DamagedOutputError
from maskray.pipeline.output.lease import Lease
from maskray.pipeline.output.commit_log_writer import CommitLogWriter, delete_file
from maskray.pipeline.output.shard_writer import ShardWriter
from maskray.pipeline.output.track_table import delete_generations, video_key


class StaleWriterError(MaskrayError):
    """OUT no longer belongs to this writer's job or driver: its attempt commits nothing."""


class OutputSink:
    """One output folder's writer. Picklable (a URI and ids), so workers carry it."""

    def __init__(self, output: str, job_id: str = "", owner: str = ""):
        self.output = output
        self.job_id = job_id
        self.owner = owner
        self.lease: Optional[Lease] = None
        self.log: Optional[CommitLogWriter] = None  # the driver's only
        self.repaired: list = []  # the driver's: problems of parts whose shards it withdrew to redo
        self.redone: set = set()  # those shards (and any sharing a merged part with them)

    def __getstate__(self):
        return {"output": self.output, "job_id": self.job_id, "owner": self.owner, "lease": None, "log": None,
                "repaired": [], "redone": set()}

    # ---- driver: start ------------------------------------------------------------------------
    def on_write_start(self, make_job_record: Callable[[Optional[dict]], dict], *, overwrite: bool,
                       sources: Iterable[str], lease_ttl_s: float) -> dict:
        """Take the lease, check or clear the previous job, write `_job.json`; returns it.

        `make_job_record(previous)` builds the new `_job.json` record from the previous one (None when
        there is none or it was overwritten); it raises UsageError for a different job.
        """
        if overwrite:
            refuse_overlap(self.output, sources)
        try:
            self.lease = Lease(self.output, lease_ttl_s).acquire()
        except OSError as error:
            raise UsageError(_unwritable(self.output, error)) from None
        self.owner = self.lease.owner
        try:
            try:
                previous = read_job(self.output)
            except DamagedOutputError as error:
                if not overwrite:  # which job OUT holds cannot be told: never guess, never replace
                    raise UsageError(_unreadable_job(self.output, error)) from None
                previous = {"fingerprint": "unreadable"}
            if previous is not None and overwrite:
                clear_output(self.output)
                previous = None
            job_record = make_job_record(previous)
            self.job_id = job_record["job_id"]
            write_job(self.output, job_record)
            self.log = CommitLogWriter(self.output, self.job_id).open()
            _delete_file(layout.success_uri(self.output))
            self.lease.renew(self.job_id)
        except OSError as error:
            self.lease.release()
            raise UsageError(_unwritable(self.output, error)) from None
        except BaseException:
            self.lease.release()
            raise
        return job_record

    # ---- worker: one shard ------------------------------------------------------------------
    def shard_writer(self, shard_id: str, attempt: int, metadata: dict, **options) -> ShardWriter:
        return ShardWriter(self, shard_id, attempt, metadata, **options)

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
    def committed(self, repair: bool = False) -> dict[str, CommitRecord]:
        """This job's commit records (manifest and files); a damaged one is left out (its
        shard is redone). With `repair` (a driver starting), the commits whose parts are
        missing or of the wrong size (one listing: `part_check.py`) are withdrawn first, with
        any sharing a merged part with them, so their shards are redone; `repaired` says which."""
        found = commit_log.read_committed(self.output, self.job_id, damaged="skip")
        records = self._log().load(found)
        if repair and len(found):
            problems = part_check.check_parts(self.output, found.table)
            redo = part_check.shards_to_redo(found.table, {s for p in problems for s in p.shards})
            for shard in sorted(redo):
                if shard in records:
                    self.withdraw(records.pop(shard))
            self.repaired, self.redone = problems, redo
        return records

    def record(self, record: CommitRecord) -> None:
        """The driver learnt of a commit: it goes into the next manifest."""
        self._log().add(record)

    def withdraw(self, record: CommitRecord) -> None:
        """Remove a commit (readers stop seeing it), then the parts it names: at once, or,
        when a published manifest names it, right after the next manifest leaves it out."""
        _delete_file(layout.commit_uri(self.output, record.shard))
        if not self._log().remove(record):
            for path in record.paths().values():
                _delete_file(layout.relative_uri(self.output, path))

    def _log(self) -> CommitLogWriter:
        if self.log is None:
            self.log = CommitLogWriter(self.output, self.job_id).open()
        return self.log

    def write_job_record(self, job_record: dict) -> None:
        write_job(self.output, job_record)

    def write_driver_state(self, state: dict) -> None:
        storage.write_bytes_atomic(layout.driver_uri(self.output), layout.dumps(state))

    def on_write_complete(self, summary: dict) -> None:
        """Publish the final manifest (complete: readers need not look at `_commits/`), then `_SUCCESS`."""
        self._log().publish(complete=True)
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


def require_job(output: str) -> dict:
    """OUT's `_job.json` for a command that works on a job (compact, retrack); one line if none."""
    try:
        job = read_job(output)
    except OSError as error:
        raise UsageError(f"cannot read {output}: {first_line(error)}") from None
    if job is None or not job.get("job_id"):
        raise UsageError(f"no maskray job in {output} (no {layout.JOB_FILE})")
    return job


def write_job(output: str, job_record: dict) -> None:
    storage.write_bytes_atomic(layout.job_uri(output), layout.dumps(job_record))


def read_driver_state(output: str) -> Optional[dict]:
    return read_json(layout.driver_uri(output))


def read_success(output: str) -> Optional[dict]:
    return read_json(layout.success_uri(output))


def write_success(output: str, summary: dict) -> None:
    storage.write_bytes_atomic(layout.success_uri(output), layout.dumps(summary))


def read_commits(output: str, job_id: Optional[str] = None, damaged: str = "raise") -> dict[str, CommitRecord]:
    """`{shard id: CommitRecord}` of committed shards (of `job_id` only, when given): the
    current manifest's, overlaid with `_commits/` files not folded yet (`commit_log.py`).

    A damaged record raises DamagedOutputError naming its file (`damaged="skip"` leaves it
    out).
    """
    return commit_log.read_committed(output, job_id, damaged).records


# ---- removing ---------------------------------------------------------------------------------

def clear_output(output: str) -> None:
    """Remove a previous job (for `--overwrite`): the manifest pointer (readers stop seeing its
    manifests), each commit record, then the parts they name, the manifests, and maskray's job
    files. Nothing else in OUT is touched."""
    try:
        pointer = commit_log.read_pointer(output)
    except DamagedOutputError:
        pointer = None
    manifests = [name for name in ((pointer or {}).get("manifest"), (pointer or {}).get("previous")) if name]
    records = []
    for name in manifests:
        try:
            records += commit_log.table_to_records(commit_log.read_manifest(output, name)).values()
        except (FileNotFoundError, DamagedOutputError):
            continue
    _delete_file(layout.manifest_pointer_uri(output))
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
        records += [record] if record else []
    for path in {path for record in records for path in record.paths().values()}:
        _delete_file(layout.relative_uri(output, path))
    for key in {video_key(r.planned) for r in records if r.tracks is not None}:  # stitched track ids
        _delete_file(layout.track_ids_uri(output, key))
    delete_generations(output)  # and those of `maskray retrack`
    for name in manifests:
        _delete_file(layout.relative_uri(output, name))
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
    delete_file(uri)


def _unreadable_job(output: str, error: DamagedOutputError) -> str:
    detail = str(error).split(": ", 1)[-1]
    return (f"{layout.job_uri(output)} is unreadable ({detail}), so which job {output} holds cannot be told;"
            " restore it from a copy to resume, or run with --overwrite to replace that job"
            " (its committed results are removed), or choose another --output")


def _unwritable(output: str, error: OSError) -> str:
    """The line for an OUT that cannot be written at the start (a usage error: exit 2)."""
    if isinstance(error, storage.WriteError) and error.detail:
        return f"cannot write to output {output}: {error.detail}"
    return f"cannot write to output {output}: {_line(error)}"


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
