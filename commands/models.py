"""`maskray models`: the model catalogue and which weights are available here."""

from __future__ import annotations

import click

from maskray.pipeline.text_table import table_lines


@click.command("models")
def models_command():
    """List the models, what they predict, and which weights are available here.

    `coco` weights are torchvision's published files in the torch hub cache (`maskray
    submit --weights coco` downloads them there once when missing, unless --offline);
    `demo` weights ship with maskray.

    \b
    Example:
      maskray models
      maskray submit ./photos/ --output out/ --model keypointrcnn_resnet50_fpn --weights coco
    """
    from maskray.models.listing import cache_dir, model_rows

    rows = model_rows()
    columns = ("name", "tasks", "categories", "weights")
    header, *lines = table_lines([c.upper() for c in columns], [[row[c] for c in columns] for row in rows])
    click.echo(header)
    for line, row in zip(lines, rows):  # each model's line, then what it is
        click.echo(line)
        click.echo(f"    {row['description']}")
    click.echo(f"coco weights cache: {cache_dir()}")
    return 0
