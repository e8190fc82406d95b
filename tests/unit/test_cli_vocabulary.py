"""One CLI vocabulary (revstats/cli/_options.py): walk the option table of every command and
check each concept has one name, one type and one minimum; old spellings work but are hidden;
every visible option has help; outputs say `behavior`."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from revstats.cli import main
from revstats.cli._options import AliasOption

#: option name -> (click type class, minimum or None); options not listed are command-specific
VOCAB = {
    "--seed": (click.IntRange, 0),
    "--runs": (click.IntRange, 1),  # `capture --runs` / `ingest --runs` are run lists: below
    "--steps": (click.IntRange, 1),
    "--hidden": (click.IntRange, 2),
    "--n-resamples": (click.IntRange, 100),
    "--overwrite": (click.types.BoolParamType, None),
    "--progress": (click.types.BoolParamType, None),
}
#: commands where --runs/--steps/--seeds name lists (globs or comma lists), not counts
LISTS = {("capture", "--runs"), ("ingest", "--runs"), ("ingest", "--steps")}
STORE_OUT = {"simulate", "capture", "ingest", "organism"}
DIR_OUT = {"report", "demo", "monitor-config"}
FILE_OUT = {"calibrate"}
RETIRED = {"--quiet": "--no-progress", "--layer": "--layers"}  # hidden aliases only


def commands():
    ctx = click.Context(main)
    return [(name, main.get_command(ctx, name)) for name in main.list_commands(ctx)]


def visible_names(opt: click.Option) -> list[str]:
    hidden = set(getattr(opt, "hidden_aliases", ()))
    return [o for o in opt.opts + opt.secondary_opts if o not in hidden]


@pytest.mark.parametrize(("name", "cmd"), commands(), ids=[n for n, _ in commands()])
def test_option_table_follows_the_vocabulary(name, cmd):
    opts = [p for p in cmd.params if isinstance(p, click.Option)]
    for opt in opts:
        if opt.hidden:
            continue
        shown = visible_names(opt)
        assert opt.help, f"{name} {shown}: every visible option needs help"
        for old in RETIRED:
            assert old not in shown, f"{name}: {old} is retired (use {RETIRED[old]}); keep it only as a hidden alias"
        for o in shown:
            if o in VOCAB and (name, o) not in LISTS:
                kind, lo = VOCAB[o]
                assert isinstance(opt.type, kind), f"{name} {o}: type {type(opt.type).__name__}, want {kind.__name__}"
                if lo is not None:
                    assert opt.type.min == lo, f"{name} {o}: minimum {opt.type.min}, want {lo}"
        if "--out" in shown:
            if name in STORE_OUT:
                assert isinstance(opt.type, click.types.StringParamType) and opt.metavar == "STORE", name
            elif name in DIR_OUT:
                assert isinstance(opt.type, click.Path) and not opt.type.file_okay, name
            elif name in FILE_OUT:
                assert isinstance(opt.type, click.Path) and not opt.type.dir_okay and opt.metavar == "FILE", name
            else:
                pytest.fail(f"{name} --out: add the command to STORE_OUT / DIR_OUT / FILE_OUT")
        if "--position" in shown:
            choices = getattr(opt.type, "choices", None)
            assert choices is None or set(choices) <= {"last", "mean_prompt", "mean_response", "mean"}, name
        if "--progress" in shown:
            assert opt.secondary_opts[:1] == ["--no-progress"] and opt.default is True, name
        if "--layers" in shown and name != "ingest":
            assert "--layer" in (opt.opts + opt.secondary_opts) or name == "capture", name
    help_text = CliRunner().invoke(main, [name, "--help"]).output
    for old in RETIRED:
        assert f"{old} " not in help_text and f"{old}\n" not in help_text, f"{name} --help shows {old}"
    assert "behaviour" not in help_text.lower()


def test_old_spellings_still_work(tmp_path):
    from revstats.analysis.testing import write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "s.zarr"), runs_per_arm=2, steps=(0, 1, 5), n_examples=6,
                                  hidden=8)
    new = CliRunner().invoke(main, ["analyze", store, "--layers", "hidden_states.1", "--n-resamples", "100",
                                    "--json", str(tmp_path / "a.json")])
    old = CliRunner().invoke(main, ["analyze", store, "--layer", "hidden_states.1", "--n-resamples", "100",
                                    "--json", str(tmp_path / "b.json")])
    assert new.exit_code == 0 and old.exit_code == 0, (new.output, old.output)
    import json

    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert a["settings"]["layers"] == b["settings"]["layers"] == ["hidden_states.1"]
    both = CliRunner().invoke(main, ["analyze", store, "--layers", "hidden_states.1,hidden_states.2",
                                     "--n-resamples", "100"])
    assert both.exit_code == 0 and "behaviour" not in both.output.lower()
    q = CliRunner().invoke(main, ["calibrate", "--quick", "--only", "nulls", "--quiet"])
    assert q.exit_code == 0 and "# Calibration dashboard" in q.stdout


def test_alias_option_hides_only_the_alias():
    opt = AliasOption(["--layers", "--layer", "layers"], hidden_aliases=("--layer",), help="x")
    rec = opt.get_help_record(click.Context(click.Command("c")))
    assert rec is not None and rec[0].startswith("--layers") and "--layer " not in rec[0] + " "
    assert "--layer" in opt.opts  # still parsed
