"""Tools over a job's output: `query`, `export`, `eval`, `render`, `compact`."""

from __future__ import annotations

import click


@click.command("query")
@click.argument("output")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="How to write the result (parquet needs --out).")
@click.option("--out", "out_file", default=None, metavar="FILE", help="Write the result to FILE (a path or s3://...) instead of stdout.")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N", help="Return at most N rows.")
def query_command(output, sql, fmt, out_file, limit):
    """Run SQL over an output's `instances` and `frames` tables (DuckDB).

    Only committed shards are read, so a query during a running job sees finished shards
    only. Works the same on local folders and s3:// outputs.

    \b
    Example:
      maskray query out/ "SELECT category, count(*) AS n FROM instances GROUP BY 1 ORDER BY n DESC"
      maskray query s3://cams/masks/ "SELECT * FROM frames WHERE status = 'error'" --format csv
    """
    from maskray.errors import UsageError
    from maskray.pipeline.output.arrow_import import import_dataset_module

    import_dataset_module()  # before the reader: without pandas (a third of the command's time)
    from maskray.pipeline.output.reader import open_output, write_file
    from maskray.pipeline.output.results_format import serialize

    if fmt == "parquet" and not out_file:
        raise UsageError("--format parquet writes a binary file: add --out FILE")
    table = open_output(output).sql(sql, limit=limit)
    data = serialize(table, fmt)
    if out_file:
        write_file(out_file, data)
        click.echo(f"wrote {table.num_rows} rows to {out_file}", err=True)
    else:
        click.echo(data.decode(), nl=False)
    return 0


@click.command("export")
@click.argument("output")
@click.argument("dest", required=False)
@click.option("--format", "format_name", metavar="FORMAT",
              help="coco, mots, cityscapes, cvat, label-studio or yolo (see docs/export.md).")
@click.option("--coco", "coco_file", metavar="FILE", help="Same as DEST FILE --format coco.")
@click.option("--cityscapes", "cityscapes_dir", metavar="DIR", help="Same as DEST DIR --format cityscapes.")
@click.option("--mots", "mots_dir", metavar="DIR", help="Same as DEST DIR --format mots.")
@click.option("--gt", "gt_file", default=None, metavar="FILE",
              help="coco: COCO annotations whose images give the image ids (matched by 'source'/'frame', then file_name).")
@click.option("--images", "images_file", default=None, metavar="FILE",
              help="coco without --gt: where the assigned images list goes (default: FILE with .images.json).")
@click.option("--shapes", type=click.Choice(["polygon", "mask"]), default=None,
              help="cvat: masks as <polygon>s (default) or as CVAT's own <mask> RLE.")
@click.option("--min-score", type=float, default=0.0, show_default=True, help="Leave out instances scored below.")
def export_command(output, dest, format_name, coco_file, cityscapes_dir, mots_dir, gt_file, images_file, shapes,
                   min_score):
    """Export instances to DEST in a format other tools read: COCO results, Cityscapes or MOTS
    results, CVAT XML, Label Studio tasks, a YOLO segmentation set.

    Written one source at a time, so memory does not grow with the job. --coco, --cityscapes
    and --mots are the older spellings of DEST with --format.

    \b
    Example:
      maskray export out/ results.json --format coco --gt annotations.json
      maskray export out/ cvat/ --format cvat          # cvat/annotations.xml (+ a folder per tracked video)
      maskray export out/ tasks.json --format label-studio
      maskray export out/ yolo/ --format yolo          # yolo/labels/*.txt + yolo/data.yaml
      maskray export out/ --coco results.json          # also writes results.images.json
    """
    chosen = [(name, value) for name, value in (("coco", coco_file), ("cityscapes", cityscapes_dir),
                                                ("mots", mots_dir), (format_name, dest)) if value]
    if len(chosen) != 1 or (dest and not format_name) or (format_name and not dest):
        raise click.UsageError("give one of --coco FILE, --cityscapes DIR or --mots DIR, or DEST with --format FORMAT")
    from maskray.pipeline.output.arrow_import import import_dataset_module

    import_dataset_module()
    from maskray.pipeline.export.stream import run_export
    from maskray.pipeline.output.reader import damage_named

    (name, target), = chosen
    with damage_named(output):
        exporter = run_export(output, target, name, min_score=min_score, gt=gt_file, images=images_file, shapes=shapes)
    for line in exporter.summary:
        click.echo(line[1:] if line.startswith("!") else line, err=line.startswith("!"))
    return 0


@click.command("eval")
@click.argument("output")
@click.option("--gt", "gt_file", metavar="FILE", help="COCO annotations JSON (a path or s3://...).")
@click.option("--cityscapes", "cityscapes_root", metavar="ROOT", type=click.Path(),
              help="Instead: a Cityscapes root (gtFine/); official instance-level AP of the images whose names match.")
@click.option("--out", "metrics_file", default="metrics.json", show_default=True, metavar="FILE",
              help="Write the metrics as JSON to FILE.")
@click.option("--task", "tasks", multiple=True, type=click.Choice(["bbox", "segm", "keypoints"]),
              help="Evaluate only these (repeatable; default: all the output and GT allow).")
@click.option("--min-score", type=float, default=0.0, show_default=True, help="Leave out instances scored below.")
def eval_command(output, gt_file, cityscapes_root, metrics_file, tasks, min_score):
    """COCO AP/AR of an output against ground truth (pycocotools), or Cityscapes AP (its official scripts).

    Evaluates boxes, masks and (where both sides have them) keypoints, on the GT images
    that the output's processed frames match, so a partial run is not scored as misses.

    \b
    Example:
      maskray eval out/ --gt annotations.json --out metrics.json
      maskray eval out/ --cityscapes ~/data/cityscapes
    """
    if bool(gt_file) == bool(cityscapes_root):
        raise click.UsageError("give one of --gt FILE or --cityscapes ROOT")
    from maskray.pipeline.output.reader import damage_named

    with damage_named(output):
        return _eval(output, gt_file, cityscapes_root, metrics_file, tasks, min_score)


def _eval(output, gt_file, cityscapes_root, metrics_file, tasks, min_score):
    if cityscapes_root:
        from maskray.pipeline.evaluation.cityscapes import evaluate_cityscapes, write_metrics
        from maskray.pipeline.evaluation.cityscapes_report import evaluation_report

        evaluation = evaluate_cityscapes(output, cityscapes_root, min_score=min_score)
        click.echo(evaluation_report(evaluation), nl=False)
        write_metrics(evaluation, metrics_file)
        click.echo(f"metrics written to {metrics_file}")
        return 0
    from maskray.pipeline.evaluation.coco import evaluate, write_metrics

    evaluation = evaluate(output, gt_file, tasks=list(tasks) or None, min_score=min_score)
    metrics = evaluation.metrics
    click.echo(f"evaluated {metrics['instances']} instances on {metrics['images']} images")
    if metrics["unmatched_frames"]:
        click.echo(f"{metrics['unmatched_frames']} processed frames match no image of {gt_file} "
                   f"({metrics['unmatched_instances']} instances skipped)", err=True)
    for task, reason in metrics.get("skipped", {}).items():
        click.echo(f"{task}: not evaluated ({reason})")
    click.echo(evaluation.summary, nl=False)
    write_metrics(evaluation, metrics_file)
    click.echo(f"metrics written to {metrics_file}")
    return 0


@click.command("render")
@click.argument("output")
@click.option("--source", required=True, metavar="PATH", help="The image or video the job read (a path or s3://...).")
@click.option("--out", "out_file", required=True, metavar="FILE", help="Picture to write: .png/.jpg/.webp, or .mp4/.mov/.mkv for a video.")
@click.option("--min-score", type=float, default=0.5, show_default=True, help="Draw instances scored at least this.")
@click.option("--frames", type=click.Choice(["all", "processed"]), default="all", show_default=True,
              help="Video: every frame (unprocessed ones shown as they are) or only processed frames.")
@click.option("--frame", type=click.IntRange(min=0), default=None, metavar="N", help="Video: render only frame N to an image.")
@click.option("--trails", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Video: draw each track's path over its last N processed frames (colours follow tracks).")
def render_command(output, source, out_file, min_score, frames, frame, trails):
    """Draw masks, boxes, labels and keypoints over a source image or video.

    \b
    Example:
      maskray render out/ --source photos/street.jpg --out street-masks.png
      maskray render s3://cams/masks/ --source s3://cams/2026-11/gate.mp4 --out gate-masks.mp4
    """
    from maskray.pipeline.output.reader import damage_named
    from maskray.pipeline.render.overlays import render

    with damage_named(output):
        summary = render(output, source, out_file, min_score=min_score, frames=frames, frame=frame, trails=trails)
    click.echo(f"wrote {out_file}: {summary.frames_written} frames, {summary.instances_drawn} instances "
               f"drawn on {summary.frames_annotated} of them")
    return 0


@click.command("compact")
@click.argument("output")
@click.option("--target-size", "target_mb", type=click.IntRange(min=1), default=128, show_default=True,
              metavar="MB", help="About how large each merged file is.")
def compact_command(output, target_mb):
    """Merge a finished job's small Parquet parts into larger files, atomically.

    Readers (query, status, export, eval, render, the Python API) see the old parts or the
    merged ones, never a mix; the old parts are deleted after the switch. Refused while a
    job runs on OUTPUT or before it finished. Safe to run again after a crash.

    \b
    Example:
      maskray compact out/
      maskray compact s3://cams/masks/ --target-size 256
    """
    from maskray.pipeline.output.compaction import compact

    done = compact(output, target_bytes=target_mb * 2**20)
    if not done.merged_files:
        click.echo(f"nothing to compact: {done.shards} shards in {done.parts_before} files")
    else:
        click.echo(f"compacted {done.shards} shards: {done.parts_before} files -> {done.parts_after}"
                   f" ({done.merged_files} written; manifest {done.generation})")
    return 0


@click.command("verify")
@click.argument("output")
def verify_command(output):
    """Check that every committed result in OUTPUT is as it was written.

    Reads every part and checks it against its commit record (exists, size, checksum, row
    count), the commit log and `_job.json`, and the track ids of tracked videos. Prints one line
    per problem and a summary. Exit 0: no problems; 1: problems found (the same
    `maskray submit` run again redoes the shards of missing or damaged parts).

    \b
    Example:
      maskray verify out/
      maskray verify s3://cams/masks/
    """
    from maskray.pipeline.output.verify import verify_output

    report = verify_output(output)
    for line in report.problems:
        click.echo(line)
    for line in report.notes:
        click.echo(f"note: {line}", err=True)
    click.echo(report.summary())
    return 0 if report.ok else 1
