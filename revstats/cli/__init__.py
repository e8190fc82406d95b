"""The `revstats` command line: the composition root.

Commands live in their own modules and are imported only when invoked, so `revstats --help`
stays fast and `import revstats` never imports click (this module is not imported by the core).
To add a command, add one line to `_COMMANDS`: name -> "module:attribute".
"""

from __future__ import annotations

import importlib

import click

_COMMANDS: dict[str, str] = {
    "analyze": "revstats.cli.analysis:analyze_command",
    "calibrate": "revstats.cli.calibrate:calibrate",
    "demo": "revstats.cli.analysis:demo_command",
    "report": "revstats.cli.analysis:report_command",
    "capture": "revstats.cli.capture:capture_command",
    "info": "revstats.cli.info:info",
    "ingest": "revstats.cli.capture:ingest_command",
    "monitor-config": "revstats.cli.monitor:monitor_config",
    "organism": "revstats.cli.organism:organism_command",
    "simulate": "revstats.cli.simulate:simulate",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="revstats")
def main() -> None:
    """revstats: measure fine-tuning reversion with honest statistics.

    \b
    Example:
      revstats demo --out revstats-demo     # simulate -> analyse -> report
      revstats info my_store.zarr
    """
