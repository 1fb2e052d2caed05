"""Running jobs and watching them: `submit`, `status`, `jobs`, `logs`, `cancel`."""

from __future__ import annotations

import click

from maskray.commands.tracker_options import tracker_options, tracker_settings
from maskray.jobs.spec import SUBMIT_DEFAULTS as DEFAULT
from maskray.models.choices import PRECISIONS


@click.command("submit")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--output", "-o", required=True, help="Output folder or s3:// / gs:// prefix (OUT).")
@click.option("--model", default=DEFAULT["model"], show_default=True,
              help="Model name (see `maskray models`).")
@click.option("--weights", default=DEFAULT["weights"], show_default=True,
              help="coco | none | demo | PATH, s3://, gs:// or https:// URI of a state dict (see docs/weights.md).")
@click.option("--weights-sha256", metavar="HEX", help="Refuse PATH/URI weights whose sha256 does not start with HEX.")
@click.option("--offline", is_flag=True, help="Never download weights (coco, https): fail in one line if not cached.")
@click.option("--min-size", type=int, help="Shorter side the model resizes to (default: the model's).")
@click.option("--max-size", type=int, help="Longest side limit after resizing (default: the model's).")
@click.option("--score-threshold", default=str(DEFAULT["score_threshold"]), show_default=True,
              help="Keep instances scoring at least this; per class: person=0.7,car=0.5,0.4 (the last is the default).")
@click.option("--classes", help="Keep only these categories (names or ids): person,car.")
@click.option("--mask-threshold", type=float, default=DEFAULT["mask_threshold"], show_default=True,
              help="Mask probability that counts as foreground.")
@click.option("--max-instances", type=int, default=DEFAULT["max_instances"], show_default=True,
              help="At most this many instances per frame.")
@click.option("--pre-nms-top", type=int, default=DEFAULT["pre_nms_top"], show_default=True,
              help="Best box x class candidates per image kept for NMS.")
@click.option("--batch-size", type=int, default=DEFAULT["batch_size"], show_default=True,
              help="Frames per model call.")
@click.option("--workers", type=int, help="A fixed number of model replicas (default: follow the cluster: "
              "one per GPU / --gpus-per-worker, or one per CPU node, as nodes join and leave).")
@click.option("--max-workers", type=int, help="At most N replicas as the pool follows the cluster; while shards "
              "wait, asks the autoscaler for that many.")
@click.option("--gpus-per-worker", type=float, default=DEFAULT["gpus_per_worker"], show_default=True,
              help="GPUs per replica; fractions share a GPU.")
@click.option("--cpu", is_flag=True, help="Run on CPUs even where there are GPUs.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=DEFAULT["precision"],
              show_default=True,
              help="Inference precision (fp16/bf16 need CUDA).")
@click.option("--every", type=int, help="Video: every N-th frame (0, N, 2N, ...).")
@click.option("--fps", type=float, help="Video: about F frames per second.")
@click.option("--keyframes", is_flag=True, help="Video: keyframes only.")
@click.option("--segment-seconds", type=float, help="Video: shard length in seconds (default: automatic).")
@click.option("--track/--no-track", default=DEFAULT["track"], show_default=True,
              help="Video: give instances a track_id, stable across segments (costs well under 1% of a worker's time).")
@tracker_options
@click.option("--embeddings", is_flag=True, help="Also store each instance's appearance vector (the model's "
              "box-head feature, unit length) as column `embedding`: a fixed-size list of float16.")
@click.option("--compact/--no-compact", default=DEFAULT["compact"], show_default=True,
              help="When the job ends, merge its parts into a few large files (as `maskray compact`), so a "
              "query opens a few files, not two per shard; --no-compact keeps the parts as committed.")
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
    from maskray.jobs.launch import run_job

    return run_job(submit_spec(sources, output, options), address, overwrite=overwrite, wait=wait)


def submit_spec(sources, output, options: dict):
    """The JobSpec of `submit`'s parsed options (the `--track-*` flags become `tracker`)."""
    from maskray.jobs.spec import JobSpec

    options = dict(options)
    options["tracker"] = tracker_settings(options)  # only what was changed
    return JobSpec(sources=list(sources), output=output, **options)


# @@status
@click.command("status")
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

    from maskray.pipeline.output.arrow_import import import_dataset_module

    import_dataset_module()
    from maskray.pipeline.output.status import format_status, output_status
    from maskray.pipeline.storage import canonical

    status = output_status(canonical(target))
    click.echo(json.dumps(status.to_dict(), indent=2) if as_json else format_status(status))
    return 0


_JOBS_ADDRESS_HELP = (
    "Ray Jobs API address, e.g. http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS,"
    " $RAY_ADDRESS, else http://127.0.0.1:8265)."
)


@click.command("jobs")
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


@click.command("logs")
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


@click.command("cancel")
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
