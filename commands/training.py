"""Training and the offline tour: `train`, `ablate`, `demo`."""

from __future__ import annotations

import click

from maskray.models.choices import BACKBONES, MASK_HEADS, MASK_LOSSES, ROI_OPS


@click.command("train")
@click.option("--images", type=click.Path(), help="Folder of training images (COCO file_name is relative to it).")
@click.option("--annotations", type=click.Path(), help="COCO-format annotations JSON for --images.")
@click.option("--synthetic", type=int,
              help="Instead of --images/--annotations: generate N synthetic shapes images (and a held-out set).")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder for checkpoints, logs, model.pt, eval.json.")
@click.option("--cityscapes", type=click.Path(), metavar="ROOT",
              help="Instead: a Cityscapes root; train on its train split, official AP on val at the end.")
@click.option("--val-images", type=click.Path(), help="Validation images folder (COCO AP at the end).")
@click.option("--val-annotations", type=click.Path(), help="Validation annotations JSON.")
@click.option("--model", default="demo", show_default=True, help="Registry model to train (see `maskray models`).")
@click.option("--backbone", type=click.Choice(BACKBONES),
              help="Backbone (default: the model's); resnet50/101 and resnext101_32x8d give R50/R101/X101-FPN.")
@click.option("--roi-op", type=click.Choice(ROI_OPS), default="align", show_default=True,
              help="RoIAlign or RoIPool in the box, mask and keypoint heads.")
@click.option("--mask-loss", type=click.Choice(MASK_LOSSES), default="sigmoid", show_default=True,
              help="Per-class sigmoid BCE on the ground-truth class, or a softmax over classes per pixel.")
@click.option("--mask-head", type=click.Choice(MASK_HEADS), default="fcn", show_default=True,
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
def train_command(images, annotations, synthetic, cityscapes, output, address, **options):
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
      maskray train --cityscapes ~/data/cityscapes --model maskrcnn_resnet50_fpn --min-size 1024 \\
          --max-size 2048 --output out/city
    """
    from maskray.jobs.training.train import TrainConfig, train

    if cityscapes:
        if images or annotations or synthetic is not None or options["val_images"]:
            raise click.UsageError("--cityscapes brings its own data: leave out --images/--annotations/--synthetic/--val-*")
        options.update(images=None, annotations=None, cityscapes=cityscapes)
    elif synthetic is not None:
        from maskray.jobs.training.synthetic import synthetic_training_data

        if images or annotations:
            raise click.UsageError("give --synthetic or --images/--annotations, not both")
        options.update(synthetic_training_data(output, images=synthetic, validation=not options["val_images"]))
    elif not (images and annotations):
        raise click.UsageError("give --images and --annotations (or --synthetic N)")
    else:
        options.update(images=images, annotations=annotations)
    config = TrainConfig(output=output, **options)
    train(config, address=address, echo=click.echo)
    return 0


@click.command("ablate")
@click.option("--switch", "switches", required=True, multiple=True,
              type=click.Choice(["roi-op", "mask-loss", "mask-head", "backbone", "all"]),
              help="A design switch whose values are compared; repeat it, or `all` for the four.")
@click.option("--output", "-o", required=True, type=click.Path(),
              help="Folder for data, runs and <switch>.json; re-run it to resume.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per variant (initialisation and data order); the table shows mean ± std.")
@click.option("--seed", "first_seed", type=int, default=0, show_default=True, help="The first seed.")
@click.option("--model", default="demo", show_default=True, help="Registry model the variants are built from.")
@click.option("--steps", type=int, default=300, show_default=True, help="Training steps per run (the shared budget).")
@click.option("--train-images", type=int, default=400, show_default=True, help="Synthetic training images.")
@click.option("--val-images", type=int, default=50, show_default=True, help="Synthetic held-out images.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Images per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW peak learning rate.")
@click.option("--min-size", type=int, default=192, show_default=True, help="Shorter side the model resizes to.")
@click.option("--max-size", type=int, default=256, show_default=True, help="Longest side limit.")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch threads per CPU worker.")
@click.option("--cpu", is_flag=True, help="Train on CPUs even where there are GPUs.")
def ablate_command(switches, output, **options):
    """Train every value of the paper's design switches under one budget, per seed, and compare.

    Prints, per switch, a table in the manner of the Mask R-CNN paper's table 2 (mask AP,
    AP50, AP75 and box AP in percent on a held-out synthetic shapes set, mean ± std over the
    seeds, the min-max range, the paper's AP beside) and whether the paper's direction
    reproduced beyond the spread; saves every run in OUT/<switch>.json. The baseline's runs
    are shared by all switches, and finished runs are kept, so a re-run resumes.

    \b
    Example:
      maskray ablate --switch all --output out/ablations --steps 250 --val-images 40
      maskray ablate --switch roi-op --switch mask-loss --output out/ablations --seeds 5
    """
    from maskray.jobs.training.ablate import SWITCHES, ablate

    chosen = list(SWITCHES) if "all" in switches else list(switches)
    ablate(chosen, output, echo=click.echo, **options)
    return 0


@click.command("demo")
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
