"""pyarrow's dataset module imported without pandas, for commands that only read OUT.

`import pyarrow.dataset` builds a default expression (`pa.scalar(True)`), and `pa.scalar` asks
pyarrow's pandas shim whether its value is a pandas object, which imports pandas: 0.4-1.2 s of
a `maskray query` that never touches pandas (about a third of its time on a compacted OUT).
`query`, `status` and `export` call `import_dataset_module()` first: pandas is hidden while
pyarrow.dataset loads, and pyarrow imports it only when it next needs it (`to_pandas()`,
`pa.table(data_frame)` still work). Where pandas or pyarrow.dataset is loaded already (a
notebook, a test session) nothing changes.
"""

from __future__ import annotations

import sys


class _HidePandas:
    """A meta path finder that says pandas cannot be imported."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is hidden while pyarrow.dataset loads")
        return None


def import_dataset_module() -> None:
    """Import pyarrow.dataset with pandas hidden (unless either is loaded already)."""
    if "pyarrow.dataset" in sys.modules or "pandas" in sys.modules:
        return
    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        import pyarrow.dataset  # noqa: F401
    finally:
        sys.meta_path.remove(hide)
