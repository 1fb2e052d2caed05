"""The `--track-*` flags, made from the tracker's settings list (`pipeline/tracking/settings.py`),
shared by `submit` and `retrack`."""

from __future__ import annotations

import click

from maskray.pipeline.tracking.settings import flag_name, settings_table


def tracker_options(command):
    """Add one `--track-<name>` option per tracker setting (booleans as `--track-x/--no-track-x`)."""
    for name, kind, default, help_text in reversed(settings_table()):
        flag = flag_name(name)
        if kind is bool:
            option = click.option(f"{flag}/--no-{flag[2:]}", f"track_{name}", default=default,
                                  show_default=True, help=f"Tracker: {help_text}.")
        else:
            option = click.option(flag, f"track_{name}", type=kind, default=default, show_default=True,
                                  help=f"Tracker: {help_text}.")
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
