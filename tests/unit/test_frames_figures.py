"""Results as DataFrames/CSV, the public plotting API, and what the figures show (legend outside
the data, one labelled line and one band per null, no matplotlib legend warnings)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from revstats.analysis.figures import FIGURES, plot, render_all
from revstats.analysis.frames import Results, to_csv, to_dataframe
from revstats.analysis.pipeline import AnalysisSettings, analyze
from revstats.analysis.testing import make_synthetic_store


@pytest.fixture(scope="module")
def results():
    ds = make_synthetic_store(runs_per_arm=3, steps=(0, 1, 5, 10), noise=0.3, n_examples=8, hidden=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze(ds, settings=AnalysisSettings(n_resamples=200))


def test_dataframe_tables_hold_the_headline_numbers(results, tmp_path):
    h = results["headline"]["layers"]
    al = to_dataframe(results, "alignment")
    n_steps = len(h["hidden_states.1"]["arms"]["control"]["alignment"])
    assert len(al) == 2 * 3 * n_steps * 2  # layers x arms x steps x (plug-in, debiased)
    row = al.query("layer == 'hidden_states.2' and arm == 'push' and estimator == 'plug-in'").iloc[-1]
    want = h["hidden_states.2"]["arms"]["push"]["alignment"][-1]
    assert row["step"] == want["step"] and row["mean"] == pytest.approx(want["mean"])
    summ = to_dataframe(results, "summary")
    fa = summ.query("layer == 'hidden_states.1' and arm == 'blocked' and quantity == 'final_alignment'")
    assert fa["low"].item() == pytest.approx(h["hidden_states.1"]["arms"]["blocked"]["final_alignment"]["low"])
    nulls = to_dataframe(results, "nulls")
    assert set(nulls["null"]) >= {"isotropic", "covariance_matched"}
    eff = to_dataframe(results, "effects")
    assert {"blocked_vs_control", "push_vs_control"} <= set(eff["comparison"])
    assert "final_alignment_difference" in set(eff["effect"])
    every = Results(results).to_dataframe()
    assert set(every["table"]) == {"alignment", "summary", "nulls", "effects"}
    path = to_csv(results, tmp_path / "headline.csv")
    back = pd.read_csv(path)
    assert len(back) == len(every) and list(back.columns) == list(every.columns)
    with pytest.raises(ValueError, match="`table` must be"):
        to_dataframe(results, "everything")
    with pytest.raises(TypeError, match="`results` must be the dict"):
        to_dataframe({"a": 1})
    (tmp_path / "results.json").write_text(json.dumps(results))
    loaded = Results.load(tmp_path / "results.json")
    assert loaded.to_dataframe("alignment").equals(al)


def test_plot_on_results_path_and_store(results, tmp_path):
    import matplotlib.pyplot as plt

    (tmp_path / "results.json").write_text(json.dumps(results))
    fig = plot(tmp_path / "results.json", "ablation", layer="hidden_states.2")
    assert fig.axes and "hidden_states.2" in fig._suptitle.get_text()
    plt.close(fig)
    fig = Results(results).plot("per_run")
    plt.close(fig)
    ds = make_synthetic_store(runs_per_arm=2, steps=(0, 1, 5), n_examples=6, hidden=8, layers=("L",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot(ds, "trajectory", settings=AnalysisSettings(n_resamples=100))
    assert "layer L" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        plot(results, "heatmap")
    with pytest.raises(ValueError, match="`layer` 'nope' was not analysed"):
        plot(results, layer="nope")


def test_trajectory_legend_outside_and_one_labelled_band_per_null(results):
    import matplotlib.pyplot as plt

    fig = plot(results, "trajectory")
    fig.canvas.draw()
    main = fig.axes[0]
    leg = main.get_legend()
    box = leg.get_window_extent()
    assert box.x0 >= main.get_window_extent().x1  # the legend does not cover the data
    labels = [t.get_text() for t in leg.get_texts()]
    nulls = results["details"]["layers"]["hidden_states.1"]["arms"]["control"]["nulls"]
    for name in nulls:
        assert f"null p99: {name.replace('_', ' ')}" in labels
    panels = {ax.get_title(): ax for ax in fig.axes[1:]}
    assert set(panels) == {f"null: {n.replace('_', ' ')}" for n in nulls}
    for ax in panels.values():  # each null's band is drawn in its own panel, with a legend entry
        assert len(ax.collections) == 1 and ax.get_legend() is not None
    colors = {tuple(np.round(ax.collections[0].get_facecolor()[0][:3], 3)) for ax in panels.values()}
    assert len(colors) == len(panels)
    plt.close(fig)


def test_figures_raise_no_legend_warnings(tmp_path):
    ds = make_synthetic_store(arms=("control",), runs_per_arm=2, steps=(0, 1, 5), n_examples=6, hidden=8,
                              behavior=False, task=False, layers=("L",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyze(ds, settings=AnalysisSettings(n_resamples=100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = render_all(res, tmp_path)
    assert {f["kind"] for f in out} <= set(FIGURES) and out


def test_analyze_csv_option(tmp_path):
    from click.testing import CliRunner

    from revstats.analysis.testing import write_synthetic_store
    from revstats.cli import main

    store = write_synthetic_store(str(tmp_path / "s.zarr"), runs_per_arm=2, steps=(0, 1, 5), n_examples=6,
                                  hidden=8, layers=("L",))
    res = CliRunner().invoke(main, ["analyze", store, "--n-resamples", "100", "--csv", str(tmp_path / "h.csv"),
                                    "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "h.csv")
    want = Results.load(tmp_path / "r.json").to_dataframe()
    assert len(table) == len(want) and set(table["table"]) == set(want["table"])
