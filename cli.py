"""maskray's command line: thin click commands over `jobs/` and `pipeline/`.

Each command calls one function of `jobs/` or `pipeline/`. A `MaskrayError` becomes one line
on stderr and its exit code; click's own usage errors exit 2. Imports of the heavy layers
happen inside the commands so `maskray --help` stays instant.
"""

from __future__ import annotations

import sys

import click

from maskray.models.errors import MaskrayError


class _Group(click.Group):
    """Lists commands in the order they are declared, which follows a user's day."""

    def list_commands(self, ctx):
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maskray")
def cli():
    """maskray: Mask R-CNN instance segmentation over large image and video collections.

    \b
    Example:
      maskray demo
      maskray submit ./videos/ --output out/ --weights coco --every 5
      maskray query out/ "SELECT category, count(*) FROM instances GROUP BY 1"
    """


# ---- commands are registered below; each lives in one function ----------------------------


# @@models
@cli.command("models")
def models_command():
    """List the models, what they predict, and which weights are available here.

    `coco` weights are torchvision's published files, looked up in the torch hub cache
    (never downloaded by maskray); `demo` weights ship with maskray.

    \b
    Example:
      maskray models
      maskray submit ./photos/ --output out/ --model keypointrcnn_resnet50_fpn --weights coco
    """
    from maskray.models.catalog import cache_dir, model_rows

    rows = model_rows()
    columns = ("name", "tasks", "categories", "weights")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
        click.echo(f"    {row['description']}")
    click.echo(f"coco weights cache: {cache_dir()}")
    return 0


# @@submit
@cli.command("submit")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--output", "-o", required=True, help="Output folder or s3:// / gs:// prefix (OUT).")
@click.option("--model", default="maskrcnn_resnet50_fpn", show_default=True, help="Model name (see `maskray models`).")
@click.option("--weights", default="coco", show_default=True, help="coco | none | demo | PATH to a state dict.")
@click.option("--min-size", type=int, help="Shorter side the model resizes to (default: the model's).")
@click.option("--max-size", type=int, help="Longest side limit after resizing (default: the model's).")
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Keep instances scoring at least this.")
@click.option("--mask-threshold", type=float, default=0.5, show_default=True, help="Mask probability that counts as foreground.")
@click.option("--max-instances", type=int, default=100, show_default=True, help="At most this many instances per frame.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Frames per model call.")
@click.option("--workers", type=int, help="Model replicas (default: the cluster's GPUs / --gpus-per-worker, or 1).")
@click.option("--gpus-per-worker", type=float, default=1.0, show_default=True, help="GPUs per replica; fractions share a GPU.")
@click.option("--cpu", is_flag=True, help="Run on CPUs even where there are GPUs.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="Inference precision (fp16/bf16 need CUDA).")
@click.option("--every", type=int, help="Video: every N-th frame (0, N, 2N, ...).")
@click.option("--fps", type=float, help="Video: about F frames per second.")
@click.option("--keyframes", is_flag=True, help="Video: keyframes only.")
@click.option("--segment-seconds", type=float, help="Video: shard length in seconds (default: automatic).")
@click.option("--address", help="Ray cluster: auto, ray://HOST:10001, or http://HOST:8265 (Jobs API). "
              "Default: an embedded Ray on this machine.")
@click.option("--overwrite", is_flag=True, help="Replace a different job already in OUT.")
@click.option("--wait", is_flag=True, help="With a Jobs API address: follow the job to its end.")
def submit_command(sources, output, address, overwrite, wait, **options):
    """Run a model over images and videos; write Parquet instance tables to OUT.

    SOURCE is a file, a folder (recursive) or an s3:// / gs:// prefix. Re-running the same
    command resumes: committed shards are skipped. Exit codes: 0 done, 3 done but some inputs
    were recorded as errors, 2 usage error, 1 the job failed.

    \b
    Example:
      maskray submit ./videos/ ./photos/ --output out/ --weights coco --every 5
      maskray submit s3://cams/2026-11/ --output s3://cams/masks/ --fps 2 --address auto
    """
    from maskray.jobs.local import run_job
    from maskray.jobs.spec import JobSpec

    spec = JobSpec(sources=list(sources), output=output, **options)
    return run_job(spec, address, overwrite=overwrite, wait=wait)


# @@status
@cli.command("status")
@click.argument("target", metavar="OUT|JOB_ID")
@click.option("--address", help="With http://HOST:8265: TARGET is a cluster job id (see `maskray jobs`).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(target, address, as_json):
    """Show a job's state (running, done, failed), shards and frames done, instances, errors.

    Read from the output folder alone, so it works from any machine that can read OUT.

    \b
    Example:
      maskray status s3://cams/masks/
      maskray status maskray-1a2b3c4d-5e6f7a8b --address http://head:8265
    """
    if address and address.startswith(("http://", "https://")):
        from maskray.jobs.cluster.api import job_status

        job = job_status(target, address)
        click.echo(job.describe())
        return 0
    import json

    from maskray.pipeline.output.status import format_status, output_status
    from maskray.pipeline.storage import canonical

    status = output_status(canonical(target))
    click.echo(json.dumps(status.to_dict(), indent=2) if as_json else format_status(status))
    return 0


_JOBS_ADDRESS_HELP = (
    "Ray Jobs API address, e.g. http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS,"
    " $RAY_ADDRESS, else http://127.0.0.1:8265)."
)


@cli.command("jobs")
@click.option("--address", default=None, help=_JOBS_ADDRESS_HELP)
@click.option("--all", "everything", is_flag=True, help="Also list jobs not submitted by maskray.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Show the newest N jobs; 0 shows all.")
def jobs_command(address, everything, limit):
    """List the cluster's maskray jobs, newest first, with state and progress.

    Progress is read from each job's output (its committed shards).

    \b
    Example:
      maskray jobs --address http://head:8265
    """
    from maskray.jobs.cluster.api import format_table, list_jobs

    found = list_jobs(address, everything=everything, limit=limit)
    click.echo(format_table(found) if found else "no maskray jobs on this cluster")
    return 0


@cli.command("logs")
@click.argument("job_id")
@click.option("--address", default=None, help=_JOBS_ADDRESS_HELP)
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job ends; exit with its code.")
def logs_command(job_id, address, follow):
    """Print a cluster job's log (its driver's output).

    \b
    Example:
      maskray logs maskray-1a2b3c4d-5e6f7a8b --address http://head:8265 --follow
    """
    from maskray.jobs.cluster.api import job_logs

    return job_logs(job_id, address, follow=follow)


@cli.command("cancel")
@click.argument("job_id")
@click.option("--address", default=None, help=_JOBS_ADDRESS_HELP)
def cancel_command(job_id, address):
    """Stop a cluster job. Committed shards stay; submitting the same command resumes it.

    \b
    Example:
      maskray cancel maskray-1a2b3c4d-5e6f7a8b --address http://head:8265
    """
    from maskray.jobs.cluster.api import cancel_job

    job = cancel_job(job_id, address)
    click.echo(job.describe())
    return 0 if job.finished else 1


@cli.command("query")
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
    from maskray.models.errors import UsageError
    from maskray.pipeline.output.reader import open_output, serialize, write_file

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


@cli.command("export")
@click.argument("output")
@click.option("--coco", "coco_file", required=True, metavar="FILE", help="Write COCO results JSON to FILE (a path or s3://...).")
@click.option("--gt", "gt_file", default=None, metavar="FILE",
              help="COCO annotations whose images give the image ids (matched by 'source'/'frame', then file_name).")
@click.option("--images", "images_file", default=None, metavar="FILE",
              help="Without --gt: where the assigned images list goes (default: FILE with .images.json).")
@click.option("--min-score", type=float, default=0.0, show_default=True, help="Leave out instances scored below.")
def export_command(output, coco_file, gt_file, images_file, min_score):
    """Export instances as a COCO results file (bbox, segmentation RLE, keypoints).

    With --gt, image ids are those of the ground truth's images; instances of frames that
    match no GT image are counted and skipped. Without it, ids are assigned 1.. in
    (source, frame) order and the images list is written beside the results.

    \b
    Example:
      maskray export out/ --coco results.json --gt annotations.json
      maskray export out/ --coco results.json      # also writes results.images.json
    """
    from maskray.pipeline.coco.export import export_coco, images_path_for

    export = export_coco(output, coco_file, gt_uri=gt_file, images_uri=images_file, min_score=min_score)
    click.echo(f"wrote {len(export.results)} results on {len(export.images)} images to {coco_file}")
    if gt_file is None:
        click.echo(f"wrote the images list to {images_file or images_path_for(coco_file)}")
    elif export.unmatched_frames:
        click.echo(f"skipped {export.unmatched_instances} instances on {export.unmatched_frames} frames "
                   f"that match no image of {gt_file}", err=True)
    return 0


@cli.command("eval")
@click.argument("output")
@click.option("--gt", "gt_file", required=True, metavar="FILE", help="COCO annotations JSON (a path or s3://...).")
@click.option("--out", "metrics_file", default="metrics.json", show_default=True, metavar="FILE",
              help="Write the metrics as JSON to FILE.")
@click.option("--task", "tasks", multiple=True, type=click.Choice(["bbox", "segm", "keypoints"]),
              help="Evaluate only these (repeatable; default: all the output and GT allow).")
@click.option("--min-score", type=float, default=0.0, show_default=True, help="Leave out instances scored below.")
def eval_command(output, gt_file, metrics_file, tasks, min_score):
    """COCO AP/AR of an output against ground truth, with pycocotools' COCOeval.

    Evaluates boxes, masks and (where both sides have them) keypoints, on the GT images
    that the output's processed frames match, so a partial run is not scored as misses.

    \b
    Example:
      maskray eval out/ --gt annotations.json --out metrics.json
    """
    from maskray.pipeline.coco.evaluate import evaluate, write_metrics

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


@cli.command("render")
@click.argument("output")
@click.option("--source", required=True, metavar="PATH", help="The image or video the job read (a path or s3://...).")
@click.option("--out", "out_file", required=True, metavar="FILE", help="Picture to write: .png/.jpg/.webp, or .mp4/.mov/.mkv for a video.")
@click.option("--min-score", type=float, default=0.5, show_default=True, help="Draw instances scored at least this.")
@click.option("--frames", type=click.Choice(["all", "processed"]), default="all", show_default=True,
              help="Video: every frame (unprocessed ones shown as they are) or only processed frames.")
@click.option("--frame", type=click.IntRange(min=0), default=None, metavar="N", help="Video: render only frame N to an image.")
def render_command(output, source, out_file, min_score, frames, frame):
    """Draw masks, boxes, labels and keypoints over a source image or video.

    \b
    Example:
      maskray render out/ --source photos/street.jpg --out street-masks.png
      maskray render s3://cams/masks/ --source s3://cams/2026-11/gate.mp4 --out gate-masks.mp4
    """
    from maskray.pipeline.render.overlays import render

    summary = render(output, source, out_file, min_score=min_score, frames=frames, frame=frame)
    click.echo(f"wrote {out_file}: {summary.frames_written} frames, {summary.instances_drawn} instances "
               f"drawn on {summary.frames_annotated} of them")
    return 0


# @@train
@cli.command("train")
@click.option("--images", type=click.Path(), help="Folder of training images (COCO file_name is relative to it).")
@click.option("--annotations", type=click.Path(), help="COCO-format annotations JSON for --images.")
@click.option("--synthetic", type=int,
              help="Instead of --images/--annotations: generate N synthetic shapes images (and a held-out set).")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder for checkpoints, logs, model.pt, eval.json.")
@click.option("--val-images", type=click.Path(), help="Validation images folder (COCO AP at the end).")
@click.option("--val-annotations", type=click.Path(), help="Validation annotations JSON.")
@click.option("--model", default="demo", show_default=True, help="Registry model to train (see `maskray models`).")
@click.option("--backbone", type=click.Choice(["resnet18", "resnet50", "resnet101", "resnext101_32x8d"]),
              help="Backbone (default: the model's); resnet50/101 and resnext101_32x8d give R50/R101/X101-FPN.")
@click.option("--roi-op", type=click.Choice(["align", "pool"]), default="align", show_default=True,
              help="RoIAlign or RoIPool in the box, mask and keypoint heads.")
@click.option("--mask-loss", type=click.Choice(["sigmoid", "softmax"]), default="sigmoid", show_default=True,
              help="Per-class sigmoid BCE on the ground-truth class, or a softmax over classes per pixel.")
@click.option("--mask-head", type=click.Choice(["fcn", "mlp"]), default="fcn", show_default=True,
              help="Convolutional mask head, or fully connected layers.")
@click.option("--steps", type=int, default=1000, show_default=True, help="Optimizer steps in total (a resumed run continues to this).")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Images per step per worker.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW peak learning rate (warm-up, then cosine).")
@click.option("--warmup-steps", type=int, default=100, show_default=True, help="Steps of linear learning-rate warm-up.")
@click.option("--min-size", type=int, default=192, show_default=True, help="Shorter side the model resizes to.")
@click.option("--max-size", type=int, default=256, show_default=True, help="Longest side limit after resizing.")
@click.option("--checkpoint-every", type=int, default=200, show_default=True, help="Steps between checkpoints.")
@click.option("--log-every", type=int, default=20, show_default=True, help="Steps between lines in OUT/train_log.jsonl.")
@click.option("--workers", type=int, help="Data-parallel workers (default: one per GPU, else 1).")
@click.option("--cpu", is_flag=True, help="Train on CPUs even where there are GPUs.")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch threads per CPU worker.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (initialisation, data order).")
@click.option("--address", help="Ray cluster to join (auto, ray://HOST:10001); default: a local Ray.")
def train_command(images, annotations, synthetic, output, address, **options):
    """Train a model (or one of the paper's variants) on a COCO-format dataset with Ray Train.

    Data parallel, one worker per GPU (one CPU worker without GPUs). Checkpoints go to
    OUT/run/, losses and timings to OUT/train_log.jsonl; running the same command again
    resumes from the last checkpoint. The result, OUT/model.pt, loads with
    `maskray submit --weights OUT/model.pt`.

    \b
    Example:
      maskray train --synthetic 1600 --output out/shapes --steps 2000
      maskray train --images coco/train2017 --annotations coco/instances_train2017.json \\
          --model maskrcnn_resnet50_fpn --backbone resnet101 --roi-op pool --output out/r101
    """
    from maskray.jobs.training.train import TrainConfig, train

    if synthetic is not None:
        from maskray.jobs.training.synthetic import synthetic_dataset

        if images or annotations:
            raise click.UsageError("give --synthetic or --images/--annotations, not both")
        made = synthetic_dataset(f"{output}/data/train", images=synthetic, seed=1)
        images, annotations = str(made.images_dir), str(made.images_json)
        if not options["val_images"]:  # a held-out set from another seed
            held_out = synthetic_dataset(f"{output}/data/val", images=min(100, max(10, synthetic // 16)), seed=2)
            options["val_images"], options["val_annotations"] = str(held_out.images_dir), str(held_out.images_json)
    elif not (images and annotations):
        raise click.UsageError("give --images and --annotations (or --synthetic N)")
    config = TrainConfig(images=images, annotations=annotations, output=output, **options)
    train(config, address=address, echo=click.echo)
    return 0


# @@ablate
@cli.command("ablate")
@click.option("--switch", required=True, type=click.Choice(["roi-op", "mask-loss", "mask-head", "backbone"]),
              help="The design switch whose values are compared.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder for data, runs and ablation.json.")
@click.option("--model", default="demo", show_default=True, help="Registry model the variants are built from.")
@click.option("--steps", type=int, default=300, show_default=True, help="Training steps per variant (the shared budget).")
@click.option("--train-images", type=int, default=400, show_default=True, help="Synthetic training images.")
@click.option("--val-images", type=int, default=50, show_default=True, help="Synthetic held-out images.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Images per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW peak learning rate.")
@click.option("--min-size", type=int, default=192, show_default=True, help="Shorter side the model resizes to.")
@click.option("--max-size", type=int, default=256, show_default=True, help="Longest side limit.")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch threads per CPU worker.")
@click.option("--cpu", is_flag=True, help="Train on CPUs even where there are GPUs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed shared by all variants.")
def ablate_command(switch, output, **options):
    """Train every value of one design switch under the same budget and compare mask AP.

    Prints a table in the manner of the Mask R-CNN paper's ablations (mask AP, AP50, AP75 in
    percent, on a held-out synthetic shapes set) and saves it as OUT/ablation.json.

    \b
    Example:
      maskray ablate --switch roi-op --output out/ablate-roi --steps 300
      maskray ablate --switch mask-loss --output out/ablate-loss
    """
    from maskray.jobs.training.ablate import ablate

    ablate(switch, output, echo=click.echo, **options)
    return 0


# @@demo
@cli.command("demo")
@click.option("--workdir", default="maskray-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the data (data/), the job's output (out/) and overlay.png; reused on a re-run.")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True, help="Synthetic shapes images.")
@click.option("--video-frames", type=click.IntRange(min=0), default=24, show_default=True,
              help="Frames of the synthetic video (0: no video).")
@click.option("--weights", default="demo", show_default=True,
              help="demo (the shipped model), none (random: a dry run) or PATH to a demo-model checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic shapes.")
def demo_command(workdir, images, video_frames, weights, seed):
    """Offline tour: synthetic shapes, a real job with the demo model, AP, a query, an overlay.

    Writes a few shapes images and a short video with COCO ground truth to WORKDIR/data, runs
    a local job over them into WORKDIR/out, prints mask/box/keypoint AP against the ground
    truth and a query's rows, and draws WORKDIR/overlay.png. Exit code: the job's.

    \b
    Example:
      maskray demo
      maskray demo --workdir /tmp/demo --images 4 --video-frames 12
    """
    from maskray.jobs.demo import run_demo

    return run_demo(workdir, images=images, video_frames=video_frames, weights=weights, seed=seed,
                    echo=click.echo).exit_code



def main(argv=None) -> None:
    """Console entry point: runs the CLI and turns maskray's errors into one line."""
    try:
        # Commands return their exit code (0, or 3 when some inputs were recorded as errors).
        code = cli.main(args=argv, prog_name="maskray", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("maskray: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as error:  # bare `maskray`: the help is the answer
        error.show()
        sys.exit(error.exit_code)
    except click.ClickException as error:
        # A bad flag is a usage error like any other: one line, pointing at the command's help.
        hint = ""
        if isinstance(error, click.UsageError) and error.ctx is not None:
            hint = f" (see '{error.ctx.command_path} --help')"
        click.echo(f"maskray: error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except MaskrayError as error:
        click.echo(f"maskray: error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("maskray: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
