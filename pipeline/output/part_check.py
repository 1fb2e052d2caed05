"""Are the parts a commit log names still there, whole? The cheap check, from one listing.

`maskray status`, a resumed `submit` and the readers (when a read fails) ask it: one listing
of each table's folder (no request per part) gives every file's size, compared with the size
the commit records hold. A part deleted (a lifecycle rule, a partial copy, a mistaken `rm`)
or of another size (a truncated copy) is found here; a part whose bytes changed but not its
size only by `maskray verify` (verify.py), which reads every part and checks its checksum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from maskray.errors import first_line
from maskray.pipeline import storage
from maskray.pipeline.output.layout import TABLE_NAMES, DamagedOutputError

MISSING = "missing"
WRONG_SIZE = "wrong size"


@dataclass
class PartProblem:
    """One committed part that is not as its commit record says."""

    path: str  # relative to OUT
    problem: str  # missing | wrong size | checksum mismatch | wrong row count | unreadable | ...
    detail: str = ""
    shards: list = field(default_factory=list)  # the committed shards whose rows it holds

    def line(self, output: str) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        held = ", ".join(self.shards[:3]) + (f" and {len(self.shards) - 3} more" if len(self.shards) > 3 else "")
        return f"{storage.join(output, self.path)}: {self.problem}{detail}" + (f" [shard {held}]" if held else "")


def list_part_sizes(output: str) -> dict[str, int]:
    """`{path relative to OUT: size}` of the files in the tables' folders: one listing each."""
    sizes: dict[str, int] = {}
    for table in TABLE_NAMES:
        filesystem, path = storage.resolve(storage.join(output, table))
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
        for info in storage.retrying(filesystem.get_file_info, selector):
            if info.type == pafs.FileType.File:
                sizes[f"{table}/{info.base_name}"] = int(info.size or 0)
    return sizes


def missing_or_damaged(manifest: pa.Table, sizes: dict[str, int]) -> list[PartProblem]:
    """The parts named by `manifest` (commit_log.MANIFEST_SCHEMA rows) that `sizes` lacks or
    holds at another size than recorded; one problem per part, with the shards naming it."""
    listed = pa.array(list(sizes), pa.string())
    listed_sizes = pa.array(list(sizes.values()), pa.int64())
    problems: dict[str, PartProblem] = {}
    for table in TABLE_NAMES:
        paths, recorded = manifest[f"{table}_path"], manifest[f"{table}_bytes"]
        position = pc.index_in(paths, value_set=listed)
        missing = pc.and_(pc.is_valid(paths), pc.is_null(position))
        wrong = pc.fill_null(pc.not_equal(pc.take(listed_sizes, position), recorded), False)
        bad = manifest.filter(pc.or_(missing, wrong)).select(["shard", f"{table}_path", f"{table}_bytes"])
        for shard, path, size in zip(*(column.to_pylist() for column in bad.columns)):
            if path not in problems:
                problems[path] = (PartProblem(path, MISSING) if path not in sizes else
                                  PartProblem(path, WRONG_SIZE, f"{sizes[path]} bytes, recorded {size}"))
            problems[path].shards.append(shard)
    return [problems[path] for path in sorted(problems)]


def check_parts(output: str, manifest: pa.Table) -> list[PartProblem]:
    """`missing_or_damaged` against a fresh listing of OUT's table folders."""
    return missing_or_damaged(manifest, list_part_sizes(output))


def part_count(manifest: pa.Table) -> int:
    return sum(len(pc.unique(manifest[f"{t}_path"].drop_null())) for t in TABLE_NAMES)


def shards_to_redo(manifest: pa.Table, damaged: set) -> set:
    """`damaged` shards and those sharing a merged (compacted) part with them, in either
    table: once a shard is redone, a merged file must not hold rows of it readers would keep,
    so every shard of such a file is redone with it (the file is then named by none)."""
    redo = set(damaged)
    while True:
        grown = set(redo)
        chosen = pc.is_in(manifest["shard"], value_set=pa.array(sorted(redo), pa.string()))
        for table in TABLE_NAMES:
            merged = pc.is_valid(manifest[f"{table}_shards"])
            files = manifest.filter(pc.and_(chosen, merged))[f"{table}_path"]
            sharing = pc.is_in(manifest[f"{table}_path"], value_set=files.combine_chunks())
            grown.update(manifest.filter(pc.fill_null(sharing, False))["shard"].to_pylist())
        if grown == redo:
            return redo
        redo = grown


def summary_line(output: str, problems: list[PartProblem], parts: int) -> str:
    """One line for a user: the first problem, how many there are, and what to do."""
    count = f"{len(problems)} of {parts} committed parts are missing or damaged" if parts else \
        f"{len(problems)} committed parts are missing or damaged"
    return (f"{problems[0].line(output)} ({count}); run `maskray verify {output}` for the list, then the"
            " same `maskray submit` again to redo their shards")


def read_failure(output: str, manifest: pa.Table, error: BaseException) -> DamagedOutputError:
    """The one-line error for a read of OUT's parts that failed with `error`: which part is
    missing or damaged when the listing shows it, else the reader's own first line."""
    try:
        problems = check_parts(output, manifest)
    except OSError:  # the store itself is out of reach: say what the read met
        problems = []
    if problems:  # the file the read failed on first, when the error names it
        problems.sort(key=lambda problem: problem.path not in str(error))
        damage = DamagedOutputError(summary_line(output, problems, part_count(manifest)))
    else:
        damage = DamagedOutputError(f"cannot read the results in {output}: {first_line(error)}; run"
                                    f" `maskray verify {output}` to check every part")
    damage.parts_found = problems
    return damage
