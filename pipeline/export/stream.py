"""Running an exporter over an output, one source at a time, in memory that does not grow with
the job.

Two passes over the `instances` parts, in the order the manifest lists them (shard order, so a
video's segments and an image shard's pictures are neighbours):

1. read only the `source` and category columns, noting the part where each source is seen last;
2. read the parts again with every column an exporter needs, keeping the rows of the sources
   still open, and hand a source to `write_source` as soon as the part where it was seen last
   has been read. Sources with frames but no instances are handed over with an empty table.

So memory holds the open sources' instances (about one video's, or one shard's pictures), plus
one small row per processed frame.
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from maskray.errors import UsageError
from maskray.models.catalog import get_spec
from maskray.pipeline.export.exporter import INSTANCE_COLUMNS, ExportContext, Exporter, Frame
from maskray.pipeline.export.formats import exporter_class
from maskray.pipeline.output.reader import Output, open_output


def run_export(output, dest: str, format_name: str, *, min_score: float = 0.0, **options) -> Exporter:
    """Export `output` (a URI or an open `Output`) to `dest` in `format_name`; returns the
    exporter after `close()` (its `summary` holds the lines to print)."""
    cls = exporter_class(format_name)
    given = {name: value for name, value in options.items() if value is not None}
    known = {option.name for option in cls.options}
    for name in given:
        if name not in known:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to --format {format_name}")
    output = output if isinstance(output, Output) else open_output(output)
    context = ExportContext(output, {}, _ok_frames(output), min_score)
    last_part, seen = _survey(output, min_score)
    context.categories = _categories(output, seen)
    exporter = cls(context, **given)
    exporter.open(dest)
    try:
        written = set()
        for source, instances in _by_source(output, min_score, last_part):
            exporter.write_source(source, context.frames.get(source, []), instances)
            written.add(source)
        empty = _empty_table(output)
        for source in sorted(set(context.frames) - written):
            exporter.write_source(source, context.frames[source], empty)
        exporter.summary = exporter.close()
    except BaseException:
        exporter.abort()
        raise
    return exporter


def _ok_frames(output: Output) -> dict[str, list[Frame]]:
    table = output.frames().to_table(columns=["source", "frame", "time", "width", "height"],
                                     filter=ds.field("status") == "ok")
    frames: dict[str, list[Frame]] = defaultdict(list)
    for source, frame, time, width, height in zip(*(table[c].to_pylist() for c in table.column_names)):
        frames[source].append(Frame(int(frame), time, int(width), int(height)))
    return {source: sorted(set(rows)) for source, rows in sorted(frames.items())}


def _scanner(output: Output, columns: list[str], min_score: float) -> ds.Scanner:
    return output.instances().scanner(columns=columns, filter=ds.field("score") >= min_score)


def _survey(output: Output, min_score: float) -> tuple[dict[str, int], dict[int, str]]:
    """{source: index of the last part holding it}, and {category id: name} seen."""
    last_part: dict[str, int] = {}
    seen: dict[int, str] = {}
    part, path = -1, None
    for tagged in _scanner(output, ["source", "category_id", "category"], min_score).scan_batches():
        if tagged.fragment.path != path:
            part, path = part + 1, tagged.fragment.path
        batch = tagged.record_batch
        for source in set(batch.column("source").to_pylist()):
            last_part[source] = part
        pairs = pa.Table.from_batches([batch]).group_by(["category_id", "category"]).aggregate([])
        seen.update(zip(pairs["category_id"].to_pylist(), pairs["category"].to_pylist()))
    return last_part, seen


def _by_source(output: Output, min_score: float, last_part: dict[str, int]):
    """(source, its instances) in the order sources finish; see the module's note."""
    names = output.instances().schema.names
    columns = [c for c in INSTANCE_COLUMNS if c in names] + [c for c in ("shard", "track") if "track" in names]
    open_rows: dict[str, list[pa.Table]] = defaultdict(list)
    part, path = -1, None

    def finished(upto: int):
        for source in sorted(s for s in open_rows if last_part[s] <= upto):
            table = pa.concat_tables(open_rows.pop(source)).sort_by([("frame", "ascending"), ("instance", "ascending")])
            yield source, _complete(output.attach_track_ids(table))

    for tagged in _scanner(output, columns, min_score).scan_batches():
        if tagged.fragment.path != path:
            yield from finished(part)
            part, path = part + 1, tagged.fragment.path
        table = pa.Table.from_batches([tagged.record_batch])
        for source in set(table["source"].to_pylist()):
            open_rows[source].append(table.filter(pc.equal(table["source"], source)))
    yield from finished(part + 1)


def _empty_table(output: Output) -> pa.Table:
    names = output.instances().schema.names
    return _complete(output.instances().schema.empty_table().select([c for c in INSTANCE_COLUMNS if c in names]))


def _complete(table: pa.Table) -> pa.Table:
    """`table` with exactly INSTANCE_COLUMNS (a column an older output lacks reads as null)."""
    for name in INSTANCE_COLUMNS:
        if name not in table.column_names:
            kind = pa.int64() if name in ("track_id", "instance") else pa.string()
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
    return table.select(INSTANCE_COLUMNS)


def _categories(output: Output, seen: dict[int, str]) -> dict[int, str]:
    """The model's categories (from `_job.json`), with any others the output holds."""
    categories: dict[int, str] = {}
    try:
        categories.update(get_spec(str(output.job.get("model"))).categories)
    except (UsageError, KeyError, AttributeError):  # a model this version does not know
        pass
    categories.update(seen)
    return dict(sorted(categories.items()))
