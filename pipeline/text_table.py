"""Plain-text tables for the terminal: `maskray models`, `jobs`, `query`, `ablate`, `demo`.

Cells are text (each caller formats its own numbers); columns are two spaces apart, each as
wide as its widest cell, left-aligned unless named in `right` (numbers line up on their last
digit). Lines carry no trailing spaces.

    >>> print(text_table(["name", "n"], [["circle", "12"], ["square", "3"]], right={1}, rule=True))
    name     n
    ------  --
    circle  12
    square   3
"""

from __future__ import annotations

from typing import Collection, Iterable, Sequence


def table_lines(header: Sequence[str], rows: Iterable[Sequence[str]], *,
                right: Collection[int] = (), rule: bool = False) -> list[str]:
    """The table's lines: the header, a rule of dashes under it when `rule`, then the rows."""
    rows = [list(row) for row in rows]
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if index in right else cell.ljust(width)
                         for index, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(header)]
    if rule:
        lines.append(line(["-" * width for width in widths]))
    return lines + [line(row) for row in rows]


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]], *,
               right: Collection[int] = (), rule: bool = False) -> str:
    """`table_lines` joined into one text, without a final newline."""
    return "\n".join(table_lines(header, rows, right=right, rule=rule))
