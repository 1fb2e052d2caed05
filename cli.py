"""maskray's command line: the `maskray` group and its entry point.

The commands live in `commands/` (one module per family), each a thin call of one function
of `jobs/` or `pipeline/`. Here a `MaskrayError` becomes one line on stderr and its exit
code; click's own usage errors exit 2. Imports of the heavy layers happen inside the
commands so `maskray --help` stays instant.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from maskray.commands import models, results, retrack, run, training, view
from maskray.errors import MaskrayError


STOPPED = "maskray: stopped; run the same command to resume"


class _Group(click.Group):
    """Lists commands in the order they are declared, which follows a user's day."""

    def list_commands(self, ctx):
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maskray")
@click.option("--debug", is_flag=True, help="On an error, print its traceback too (or set MASKRAY_DEBUG=1).")
def cli(debug):
    """maskray: Mask R-CNN instance segmentation over large image and video collections.

    \b
    Example:
      maskray demo
      maskray submit ./videos/ --output out/ --weights coco --every 5
      maskray query out/ "SELECT category, count(*) FROM instances GROUP BY 1"
    """
    if debug:
        os.environ["MASKRAY_DEBUG"] = "1"


# In the order a user's day meets them (`maskray --help` lists them so).
for _command in (models.models_command,
                 run.submit_command, run.status_command, run.jobs_command, run.logs_command, run.cancel_command,
                 results.query_command, results.export_command, results.eval_command, results.render_command,
                 results.compact_command, results.verify_command, retrack.retrack_command, view.view_command,
                 training.train_command, training.ablate_command, training.demo_command):
    cli.add_command(_command)


def main(argv=None) -> None:
    """Console entry point: runs the CLI and turns maskray's errors into one line."""
    try:
        # Commands return their exit code (0, or 3 when some inputs were recorded as errors).
        code = cli.main(args=argv, prog_name="maskray", standalone_mode=False)
    except click.exceptions.Abort:  # click's word for Ctrl-C: what a job committed stays
        click.echo(STOPPED, err=True)
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
        if os.environ.get("MASKRAY_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        click.echo(f"maskray: error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo(STOPPED, err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
