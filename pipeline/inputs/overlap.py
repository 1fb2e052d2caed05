"""Whether a job's output and its sources are apart: checked before every submit writes.

A source inside OUT (`submit proj/frames --output proj`) would receive OUT's own parts
(`OUT/frames/*.parquet` is `proj/frames/`): refused. An OUT inside a source is allowed only
when the listing provably skips it: the listing leaves out files under OUT when OUT is
spelled as a folder below the source (`listing._output_below`); reached another way (a
symlink, the same folder by another name) its files could be listed as inputs: refused.
`--overwrite` refuses any overlap (`sink.refuse_overlap`): removing a job there could reach
inputs.
"""

from __future__ import annotations

import os
from typing import Iterable

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.inputs.listing import output_skipped

_ADVICE = "choose an --output outside the sources (e.g. next to them)"


def refuse_output_among_sources(output: str, sources: Iterable[str]) -> None:
    """UsageError (one line, exit 2) when a source lies in OUT, or OUT lies in a source
    whose listing would not skip it."""
    out = _real_folder(output)
    for source in sources:
        src = _real_folder(source)
        if src.startswith(out):
            where = "is" if src == out else "lies inside"
            raise UsageError(f"source {source} {where} the output {output}: maskray would write its"
                             f" parts among the inputs; {_ADVICE}")
        if out.startswith(src) and not output_skipped(output, source):
            raise UsageError(f"output {output} lies inside source {source} by another path (a link):"
                             f" its files could be read as inputs; {_ADVICE}")


def _real_folder(uri: str) -> str:
    """`uri` as one comparable spelling ending in `/`: local paths with links resolved."""
    text = storage.canonical(uri)
    if storage.is_local(text):
        text = os.path.realpath(text)
    return text.rstrip("/") + "/"
