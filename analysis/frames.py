"""The results' headline as pandas DataFrames (and CSV): one tidy row per number.

>>> from revstats.analysis.frames import Results                      # doctest: +SKIP
>>> res = Results.load("report/results.json")               # or Results(analyze(ds))
>>> res.to_dataframe()                                      # every headline number, tidy
>>> res.to_dataframe("alignment").query("arm == 'control'")  # one table
>>> res.to_csv("headline.csv")

Tables (`table=`):

* ``"alignment"``: layer, arm, step, estimator (``plug-in`` / ``debiased``), mean, sd, low,
  high, n_runs, method, confidence;
* ``"summary"``: layer, arm, quantity (``final_alignment``, ``final_alignment_debiased``,
  ``behavior_rate``, ``task``), step, mean, sd, low, high, n_runs, method, confidence;
* ``"nulls"``: layer, arm, null, quantile, p99, n_above, n_pairs, max_adjusted_pvalue,
  n_significant_adjusted, p_adjust, method;
* ``"effects"``: layer, comparison, effect, estimate, low, high, confidence, method, pvalue;
* ``"headline"`` (default): the four stacked, with a ``table`` column (the CSV export).

Nothing is recomputed: the numbers are those of results.json (schema in docs/results-json.md).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

__all__ = ["TABLES", "Results", "to_csv", "to_dataframe"]

TABLES = ("alignment", "summary", "nulls", "effects")
_SUMMARY = ("final_alignment", "final_alignment_debiased", "behavior_rate", "task")


def _headline(results: Any) -> dict:
    if not isinstance(results, dict) or "headline" not in results or "layers" not in results["headline"]:
        raise TypeError("`results` must be the dict `revstats analyze --json` writes (with a `headline`); "
                        "load a file with Results.load(path)")
    return results["headline"]["layers"]


def _alignment(h: dict) -> pd.DataFrame:
    rows = []
    for layer, hl in h.items():
        for arm, e in hl["arms"].items():
            for est, key in (("plug-in", "alignment"), ("debiased", "alignment_debiased")):
                for r in e.get(key) or []:
                    rows.append({"layer": layer, "arm": arm, "step": r["step"], "estimator": est,
                                 **{k: r.get(k) for k in ("mean", "sd", "low", "high", "n_runs", "method", "confidence")}})
    return pd.DataFrame(rows, columns=["layer", "arm", "step", "estimator", "mean", "sd", "low", "high",
                                       "n_runs", "method", "confidence"])


def _summary(h: dict) -> pd.DataFrame:
    rows = []
    for layer, hl in h.items():
        for arm, e in hl["arms"].items():
            for q in _SUMMARY:
                r = e.get(q)
                if not r:
                    continue
                rows.append({"layer": layer, "arm": arm, "quantity": q,
                             **{k: r.get(k) for k in ("step", "mean", "sd", "low", "high", "n_runs", "method", "confidence")}})
    return pd.DataFrame(rows, columns=["layer", "arm", "quantity", "step", "mean", "sd", "low", "high", "n_runs",
                                       "method", "confidence"])


def _nulls(h: dict) -> pd.DataFrame:
    keys = ("quantile", "p99", "n_above", "n_pairs", "max_adjusted_pvalue", "n_significant_adjusted", "p_adjust", "method")
    rows = []
    for layer, hl in h.items():
        for arm, e in hl["arms"].items():
            for null, r in (e.get("null_p99") or {}).items():
                rows.append({"layer": layer, "arm": arm, "null": null, **{k: r.get(k) for k in keys}})
    return pd.DataFrame(rows, columns=["layer", "arm", "null", *keys])


def _effects(h: dict) -> pd.DataFrame:
    keys = ("estimate", "low", "high", "confidence", "method", "pvalue")
    rows = []
    for layer, hl in h.items():
        for comp, effects in (hl.get("effects") or {}).items():
            for name, r in (effects or {}).items():
                if isinstance(r, dict) and "estimate" in r:
                    rows.append({"layer": layer, "comparison": comp, "effect": name, **{k: r.get(k) for k in keys}})
    return pd.DataFrame(rows, columns=["layer", "comparison", "effect", *keys])


_BUILDERS = {"alignment": _alignment, "summary": _summary, "nulls": _nulls, "effects": _effects}


def to_dataframe(results: dict, table: str = "headline") -> pd.DataFrame:
    """One table of the headline (see the module docstring); ``"headline"`` stacks all four."""
    h = _headline(results)
    if table == "headline":
        parts = [_BUILDERS[t](h).assign(table=t) for t in TABLES]
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=["table", "layer"])
        out = pd.concat(parts, ignore_index=True, sort=False)
        return out[["table", *[c for c in out.columns if c != "table"]]]
    if table not in _BUILDERS:
        raise ValueError(f"`table` must be 'headline' or one of {TABLES}, got {table!r}")
    return _BUILDERS[table](h)


def to_csv(results: dict, path: str | os.PathLike[str], table: str = "headline") -> str:
    """Write :func:`to_dataframe` as CSV, atomically; returns the path."""
    from revstats.analysis.io import atomic_write_text

    text = to_dataframe(results, table).to_csv(index=False)
    return str(atomic_write_text(path, text))


class Results(dict):
    """The results dict with table and plot methods (it *is* the dict: JSON, keys unchanged)."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Results:
        """Read a results.json written by ``revstats analyze --json`` / ``report``."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        _headline(data)
        return cls(data)

    def to_dataframe(self, table: str = "headline") -> pd.DataFrame:
        return to_dataframe(self, table)

    def to_csv(self, path: str | os.PathLike[str], table: str = "headline") -> str:
        return to_csv(self, path, table)

    def plot(self, kind: str = "trajectory", *, layer: str | None = None):
        """A report figure (:func:`revstats.analysis.figures.plot`)."""
        from revstats.analysis.figures import plot

        return plot(self, kind, layer=layer)
