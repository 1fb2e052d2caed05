"""The `--track-*` flags, made from the tracker's settings list (`pipeline/tracking/settings.py`),
shared by `submit` and `retrack`."""

from __future__ import annotations

import click

from maskray.pipeline.tracking.settings import flag_name, settings_table


def tracker_options(command=None, *, keep_current: bool = False):
    """Add one `--track-<name>` option per tracker setting (booleans as `--track-x/--no-track-x`).

    keep_current (`retrack`): a flag not given keeps the value that made the current tracks, so
    the help names the default instead of showing it as what an absent flag means."""
    if command is None:
        return lambda decorated: tracker_options(decorated, keep_current=keep_current)
    for name, kind, default, help_text in reversed(settings_table()):
        flag = flag_name(name)
        shown = dict(show_default=False, help=f"Tracker: {help_text} (default: as the current tracks; {default} in a"
                     " new job).") if keep_current else dict(show_default=True, help=f"Tracker: {help_text}.")
        if kind is bool:
            option = click.option(f"{flag}/--no-{flag[2:]}", f"track_{name}", default=default, **shown)
        else:
            option = click.option(flag, f"track_{name}", type=kind, default=default, **shown)
        command = option(command)
    return command


def tracker_settings(options: dict) -> dict:
    """Pop the `track_<name>` options from `options`; return those that differ from the defaults."""
    changed = {}
    for name, _kind, default, _help in settings_table():
        value = options.pop(f"track_{name}", default)
        if value != default:
            changed[name] = value
    return changed
