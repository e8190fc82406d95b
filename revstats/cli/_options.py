"""One CLI vocabulary: the option names every command uses for the same concept, and hidden
aliases for the old spellings (imported by the command modules only, never by the core).

=================================  ===========================================================
concept                            option
=================================  ===========================================================
output store (zarr, URL allowed)   ``--out STORE``      (string; fsspec URLs allowed)
output directory (report, config)  ``--out DIR``        (``click.Path(file_okay=False)``)
output file                        ``--out FILE`` / ``--json FILE`` (``click.Path(dir_okay=False)``)
progress display                   ``--progress/--no-progress`` (old: ``--quiet`` = ``--no-progress``)
layers                             ``--layers A,B`` (comma-separated, repeatable; old: ``--layer``)
one RNG seed of the command        ``--seed N`` (int >= 0)
seeds of the runs (a list)         ``--seeds 0,1,2``
runs per arm                       ``--runs N`` (int >= 1)
fine-tuning steps                  ``--steps N`` (int >= 1)
hidden size                        ``--hidden N`` (int >= 2)
token position                     ``--position`` (capture's policies: ``last``, ``mean_prompt``, ...)
replace outputs                    ``--overwrite``
=================================  ===========================================================

Outputs say ``behavior`` (the store's variable, a contract name), never "behaviour".
tests/unit/test_cli_vocabulary.py walks every command against this table.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["LAYER_HELP", "AliasOption", "layers_option", "progress_option", "split_layers"]

LAYER_HELP = (
    "Residual layers, comma-separated, in output_hidden_states numbering: 0 = embeddings, "
    "L = output of block L, n = last block after the final norm; negative counts from the end "
    "(-1 = n); also hidden_states.L and TransformerLens names (blocks.L.hook_resid_post = "
    "L+1, blocks.L.hook_resid_pre = L, ln_final.hook_normalized = n)."
)



class AliasOption(click.Option):
    """A click option with extra names that work but are not shown in ``--help``."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in opts if o not in self.hidden_aliases]
        self.secondary_opts = [o for o in secondary if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


def split_layers(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[str, ...]:
    """``--layers a,b --layers c`` -> ("a", "b", "c")."""
    items: list[str] = []
    for v in value or ():
        items += [x.strip() for x in str(v).split(",") if x.strip()]
    return tuple(items)


def layers_option(help: str, name: str = "layers"):
    """``--layers A,B`` (comma-separated, repeatable), with ``--layer`` as a hidden alias."""
    return click.option("--layers", "--layer", name, cls=AliasOption, hidden_aliases=("--layer",),
                        multiple=True, metavar="A,B", callback=split_layers, help=help)


def progress_option(name: str = "progress"):
    """``--progress/--no-progress`` (default on), with ``--quiet`` as a hidden ``--no-progress``."""
    return click.option("--progress/--no-progress", " /--quiet", name, cls=AliasOption,
                        hidden_aliases=("--quiet",), default=True, show_default=True,
                        help="Show progress bars (on stderr).")
