"""The gallery's question: which instances count (form filters and a free SQL `WHERE`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from maskray.errors import UsageError

# The gallery's form filters, each one condition with its value bound by DuckDB.
_FILTERS = (
    ("category", "category = $category", str),  # by id when the name has one (see ViewQueries.gallery)
    ("min_score", "score >= $min_score", float),
    ("max_score", "score <= $max_score", float),
    ("source", "source = $source", str),
    ("track", "track_id = $track", int),
)


@dataclass(frozen=True)
class GalleryFilter:
    """A gallery's question: which instances count; frames holding one are shown."""

    category: Optional[str] = None
    min_score: Optional[float] = None
    max_score: Optional[float] = None
    source: Optional[str] = None
    track: Optional[int] = None
    where: Optional[str] = None  # free SQL over `instances`' columns
    sort: str = "score"

    def conditions(self) -> tuple[str, dict]:
        """(the WHERE text, its parameters)."""
        parts, params = ["TRUE"], {}
        for name, condition, cast in _FILTERS:
            value = getattr(self, name)
            if value is not None and value != "":  # a filter not given (0 is a value)
                parts.append(condition)
                params[name] = cast(value)
        if self.where and self.where.strip():
            if ";" in self.where:
                raise UsageError("the WHERE filter is one condition: no ';'")
            parts.append(f"({self.where})")
        return " AND ".join(parts), params
