"""`maskray verify OUT`: is every committed result in OUT as it was written?

Reads the whole output, so it costs a read of every part (status does the cheap half,
`part_check.py`). Checked, each problem one line:

- `_job.json` parses and names a job; the commit log (`_manifest.json`, its manifest,
  `_commits/*.json`) parses, and the manifest holds the shards the pointer says;
- every part a commit names exists, has the size, the sha256 and the row count recorded
  at commit (records of an older maskray have no checksum or part row count: their parts
  are read whole instead, and a note says so), parses as Parquet, and its metadata names
  the job, model and weights of `_job.json`;
- a finished job (`_SUCCESS`) covers every planned shard, with the frames it reported;
- the track ids (`tracks/*.parquet`) of every fully committed, tracked video exist and read.

Files in the tables' folders that no commit names (an attempt that lost, a copy) are
counted in a note: readers never read them.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from maskray.errors import UsageError, first_line
from maskray.pipeline import storage
from maskray.pipeline.output import commit_log, layout, part_check, sink
from maskray.pipeline.output.commit_log import Committed
from maskray.pipeline.output.layout import CommitRecord, DamagedOutputError
from maskray.pipeline.output.part_check import PartProblem


@dataclass
class Verification:
    output: str
    problems: list = field(default_factory=list)  # one line each
    notes: list = field(default_factory=list)
    parts: int = 0
    part_bytes: int = 0
    shards: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        found = "no problems" if self.ok else f"{len(self.problems)} problem{'s' * (len(self.problems) != 1)}"
        text = (f"verified {self.output}: {self.shards} committed shards, {self.parts} parts"
                f" ({self.part_bytes / 2**20:.1f} MiB) read: {found}")
        if not self.ok:
            text += "; the same `maskray submit` run again redoes the shards of missing or damaged parts"
        return text


def verify_output(output: str) -> Verification:
    """Check `output` (a path or s3:// / gs:// prefix); UsageError when nothing is there."""
    output = storage.canonical(output)
    report = Verification(output)
    job = _read_job(output, report)
    committed = _read_log(output, job.get("job_id"), report)
    report.shards = len(committed)
    _check_parts(output, committed, job, report)
    _check_totals(output, committed, job, report)
    _check_tracks(output, committed, report)
    return report


def _read_job(output: str, report: Verification) -> dict:
    try:
        job = sink.read_job(output)
    except DamagedOutputError as error:
        report.problems.append(str(error))
        return {}
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {output}: {first_line(error)}") from None
    if job is None:
        if storage.exists(layout.manifest_pointer_uri(output)) or storage.exists(layout.commits_uri(output)):
            report.problems.append(f"{layout.job_uri(output)}: missing (OUT holds commits of a job)")
            return {}
        what = "no output" if not storage.exists(output) else "no maskray job"
        raise UsageError(f"{what} at {output} (no {layout.JOB_FILE})")
    if not job.get("job_id"):
        report.problems.append(f"{layout.job_uri(output)}: names no job id")
    return job


def _read_log(output: str, job_id: Optional[str], report: Verification) -> Committed:
    """The commit log as readers see it, each damaged file reported (and left out)."""
    try:
        pointer = commit_log.read_pointer(output)
    except DamagedOutputError as error:
        report.problems.append(str(error))
        pointer = None
    manifest = commit_log.MANIFEST_SCHEMA.empty_table()
    if pointer is not None and job_id and pointer.get("job_id") != job_id:
        report.notes.append(f"{layout.manifest_pointer_uri(output)} names job {pointer.get('job_id')}, not"
                            f" {job_id}: readers ignore it")
        pointer = None
    if pointer is not None:
        name = str(pointer.get("manifest"))
        try:
            manifest = commit_log.read_manifest(output, name)
        except FileNotFoundError:
            report.problems.append(f"{layout.relative_uri(output, name)}: missing (named by"
                                   f" {layout.MANIFEST_POINTER})")
        except DamagedOutputError as error:
            report.problems.append(str(error))
        else:
            if pointer.get("shards") is not None and int(pointer["shards"]) != manifest.num_rows:
                report.problems.append(f"{layout.relative_uri(output, name)}: holds {manifest.num_rows} commits,"
                                       f" {layout.MANIFEST_POINTER} says {pointer['shards']}")
    complete = bool(pointer and pointer.get("complete"))
    pending = {} if complete else _read_commit_files(output, job_id, report)
    return Committed(manifest, pending, complete=complete, pointer=pointer,
                     generation=int(pointer.get("generation", 0)) if pointer else 0)


def _read_commit_files(output: str, job_id: Optional[str], report: Verification) -> dict:
    try:
        found = storage.list_files(layout.commits_uri(output))
    except FileNotFoundError:
        return {}
    records, others = {}, 0
    for uri, _ in found:
        if not layout.is_commit_file(uri):
            continue
        try:
            record = CommitRecord.from_json(storage.read_bytes(uri), uri)
        except FileNotFoundError:
            continue
        except DamagedOutputError as error:
            report.problems.append(str(error))
            continue
        if job_id and record.job_id != job_id:
            others += 1
        else:
            records[record.shard] = record
    if others:
        report.notes.append(f"{others} commit records in {layout.commits_uri(output)} are another job's: readers ignore them")
    return records


def _check_parts(output: str, committed: Committed, job: dict, report: Verification) -> None:
    expected: dict[str, dict] = {}
    naming: dict[str, list] = defaultdict(list)
    for record in committed.records.values():
        for table, part in record.files.items():
            path = str(part["path"])
            expected.setdefault(path, dict(part, table=table))
            naming[path].append(record)
    report.parts = len(expected)

    def check(path: str):
        return _check_part(output, path, expected[path], naming[path], job)

    workers = 2 if storage.is_local(output) else 8
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, sorted(expected)))
    unchecked = 0
    for path, (size, problem, had_checksum) in zip(sorted(expected), results):
        report.part_bytes += size
        unchecked += not had_checksum
        if problem is not None:
            problem.shards = sorted(record.shard for record in naming[path])
            report.problems.append(problem.line(output))
    if unchecked:
        report.notes.append(f"{unchecked} parts were committed by a maskray that recorded no checksum: checked"
                            " for size, Parquet structure and row counts only")
    stray = [p for p in part_check.list_part_sizes(output) if p.endswith(".parquet") and p not in expected]
    if stray:
        report.notes.append(f"{len(stray)} files in the tables' folders are named by no commit (e.g. {stray[0]}):"
                            " readers never read them")


def _check_part(output: str, path: str, part: dict, records: list, job: dict):
    """(bytes read, a PartProblem or None, whether a checksum was recorded) of one part."""
    had_checksum = part.get("sha256") is not None
    try:
        data = storage.read_bytes(layout.relative_uri(output, path))
    except FileNotFoundError:
        return 0, PartProblem(path, part_check.MISSING), had_checksum
    if part.get("bytes") is not None and len(data) != int(part["bytes"]):
        return len(data), PartProblem(path, part_check.WRONG_SIZE, f"{len(data)} bytes, recorded {part['bytes']}"), had_checksum
    if had_checksum and hashlib.sha256(data).hexdigest() != part["sha256"]:
        return len(data), PartProblem(path, "checksum mismatch", "its bytes changed since commit"), had_checksum
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        rows = parquet.metadata.num_rows
        if not had_checksum:  # nothing vouches for the pages: decode them
            parquet.read()
    except (pa.ArrowException, OSError, ValueError) as error:
        return len(data), PartProblem(path, "unreadable", first_line(error, 160)), had_checksum
    want = _expected_rows(part, records)
    if want is not None and rows != want:
        return len(data), PartProblem(path, "wrong row count", f"{rows} rows, recorded {want}"), had_checksum
    mismatch = _metadata_mismatch(parquet.schema_arrow.metadata or {}, job)
    if mismatch:
        return len(data), PartProblem(path, f"does not match {layout.JOB_FILE}", mismatch), had_checksum
    return len(data), None, had_checksum


def _expected_rows(part: dict, records: list) -> Optional[int]:
    if part.get("rows") is not None:
        return int(part["rows"])
    if part.get("shards") is None and len(records) == 1:  # an older record: its shard's row counts
        rows = records[0].rows or {}
        if part["table"] in rows:
            return int(rows[part["table"]])
    return None


def _metadata_mismatch(metadata: dict, job: dict) -> str:
    wrong = []
    for key, name in (("maskray.job_id", "job_id"), ("maskray.model", "model"), ("maskray.weights_id", "weights_id")):
        stored = metadata.get(key.encode())
        if stored is not None and job.get(name) and stored.decode() != str(job[name]):
            wrong.append(f"{name} {stored.decode()}, {layout.JOB_FILE} says {job[name]}")
    return "; ".join(wrong)


def _check_totals(output: str, committed: Committed, job: dict, report: Verification) -> None:
    try:
        success = sink.read_success(output)
    except DamagedOutputError as error:
        report.problems.append(str(error))
        return
    if success is None or not job.get("job_id") or success.get("job_id", job["job_id"]) != job["job_id"]:
        return
    covered, planned = len(committed.covered_shards()), job.get("shards")
    if planned is not None and covered < int(planned):
        report.problems.append(f"{layout.success_uri(output)}: the job finished, but only {covered} of its"
                               f" {planned} planned shards are committed")
    frames = committed.total("frames")
    if success.get("frames") is not None and int(success["frames"]) != frames:
        report.problems.append(f"{layout.success_uri(output)}: reports {success['frames']} frames, the"
                               f" commits hold {frames}")


def _check_tracks(output: str, committed: Committed, report: Verification) -> None:
    from maskray.pipeline.output.track_table import video_key

    videos: dict[str, list] = defaultdict(list)
    for record in committed.records.values():
        if record.planned.startswith("vid-"):
            videos[video_key(record.planned)].append(record)
    try:
        stored = {uri for uri, _ in storage.list_files(layout.tracks_dir_uri(output)) if uri.endswith(".parquet")}
    except FileNotFoundError:
        stored = set()
    finished = _finished(output, committed)
    for key, records in sorted(videos.items()):
        stitched = all(r.tracks is not None and not r.piece for r in records)
        uri = layout.track_ids_uri(output, key)
        if stitched and finished and uri not in stored:
            report.problems.append(f"{uri}: missing (the track ids of a tracked video whose segments are all committed)")
    for uri in sorted(stored):
        try:
            table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)))
            json.loads((table.schema.metadata or {}).get(b"maskray.shards", b"[]"))
        except (pa.ArrowException, OSError, ValueError) as error:
            report.problems.append(f"{uri}: unreadable ({first_line(error, 160)})")


def _finished(output: str, committed: Committed) -> bool:
    try:
        return sink.read_success(output) is not None
    except DamagedOutputError:
        return False
