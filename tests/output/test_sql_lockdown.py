"""Issue 12, item 9: `maskray query` / `Output.sql` see the output's tables and nothing else.

Before the lockdown, DuckDB in `Output.sql` read any local file (`read_text('/etc/hostname')`
printed it), wrote any path (`COPY ... TO`), and installed or loaded extensions.
"""

from __future__ import annotations

import json

import pytest

from maskray.errors import UsageError
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.schema import FrameRef
from results_helpers import prediction, rectangle, run_maskray, write_output

NAMES = {1: "person"}


@pytest.fixture
def output(tmp_path):
    out = str(tmp_path / "out")
    frames = [(FrameRef(f"/data/{name}.png", 0, None, 32, 24),
               prediction([rectangle(24, 32, 2, 2, 12, 12)], [1], [0.9], NAMES)) for name in ("a", "b")]
    write_output(out, frames, shard_size=1)
    return out


def test_normal_queries_still_work(output, capsys):
    code, text, _ = run_maskray(["query", output, "SELECT count(*) AS n FROM instances JOIN frames "
                                 "USING (source, frame)", "--format", "json"], capsys)
    assert code == 0 and json.loads(text) == [{"n": 2}]
    assert open_output(output).sql("SELECT source FROM frames ORDER BY 1").column("source").to_pylist() == [
        "/data/a.png", "/data/b.png"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('{part}')",
    "ATTACH '{target}.duckdb' AS other",
])
def test_queries_cannot_read_local_files(output, tmp_path, sql, capsys):
    part = open_output(output).part_paths("frames")[0]  # a file the query has no business opening
    sql = sql.format(part=part, target=tmp_path / "other")
    code, text, err = run_maskray(["query", output, sql], capsys)
    assert code == 2 and text == ""
    assert err.count("\n") == 1 and err.startswith("maskray: error: query failed: ")
    assert not (tmp_path / "other.duckdb").exists()


def test_queries_cannot_write_files(output, tmp_path, capsys):
    target = tmp_path / "stolen.csv"
    code, _, err = run_maskray(["query", output, f"COPY (SELECT * FROM instances) TO '{target}'"], capsys)
    assert code == 2 and err.count("\n") == 1 and "query failed" in err
    assert not target.exists()


@pytest.mark.parametrize("sql", ["INSTALL httpfs", "LOAD httpfs", "LOAD '/tmp/evil.duckdb_extension'",
                                 "SET enable_external_access = true", "SET lock_configuration = false",
                                 "SET allow_unsigned_extensions = true", "RESET enable_external_access"])
def test_extensions_and_settings_are_refused(output, sql):
    with pytest.raises(UsageError, match="^query failed: ") as refused:
        open_output(output).sql(sql)
    assert "\n" not in str(refused.value)
    # The refusal is for good: the same connection's next file access is still refused.
    with pytest.raises(UsageError):
        open_output(output).sql(f"{sql}; SELECT * FROM read_text('/etc/hostname')")
