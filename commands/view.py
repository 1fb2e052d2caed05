"""`maskray view`: look at an output's frames, masks and tracks in a browser."""

from __future__ import annotations

import sys

import click


@click.command("view")
@click.argument("output")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but the loopback lets other machines reach the viewer "
                   "(they still need the token).")
def view_command(output, port, host):
    """Serve a local web viewer of OUTPUT: overview, gallery, frames and videos with their masks.

    Read-only. It prints a URL with a random token; requests without it are refused. Works
    on local and s3:// outputs while a job runs (the pages follow its commits) or after.

    \b
    Example:
      maskray view out/
      maskray view s3://cams/masks/ --port 9000
    """
    # asyncio, aiohttp and the viewer load only here: nobody who never runs `view` pays for them
    # (asyncio alone is a tenth of a `maskray query`).
    import asyncio

    from maskray.pipeline.output.arrow_import import import_dataset_module

    import_dataset_module()  # before anything imports pyarrow.dataset: without pandas (~100 MB)
    from maskray.pipeline.view.server import serve

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"maskray view: listening on {host}: anyone who can reach it and has the token sees OUTPUT",
                   err=True)
    try:
        asyncio.run(serve(output, host, port, echo))
    except KeyboardInterrupt:
        pass
    return 0
