"""`maskray retrack`: a finished job's track ids made again with other tracker settings."""

from __future__ import annotations

import click
from click.core import ParameterSource

from maskray.commands.tracker_options import tracker_options


@click.command("retrack")
@click.argument("output")
@tracker_options(keep_current=True)
@click.pass_context
def retrack_command(ctx, output, **options):
    """Recompute the track ids of a finished job in OUTPUT with new --track-* settings.

    Tracks what the job stored (boxes, masks, categories, scores, and appearance embeddings
    where stored), segment by segment as the job did: no model, no Ray. Settings you do not
    give stay as they made the current tracks (`maskray status` shows them). Readers see the
    old ids or the new, never a mix; the same `submit` run again keeps the new ids.

    \b
    Example:
      maskray retrack out/ --track-match-iou 0.5 --track-max-gap 30
      maskray retrack s3://cams/masks/ --no-track-same-category
    """
    from maskray.pipeline.tracking.retrack import retrack

    given = {name[len("track_"):]: value for name, value in options.items()
             if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
    done = retrack(output, given)
    settings = ", ".join(f"{k}={v}" for k, v in sorted(done.settings.items())) or "the defaults"
    click.echo(f"retracked {done.videos} videos with {settings}: {done.tracks_before} tracks -> "
               f"{done.tracks_after} (generation {done.generation})")
    if done.left_out:
        click.echo(f"left without track ids, as the job left them: {len(done.left_out)} videos with a"
                   " segment split after failures")
    return 0
