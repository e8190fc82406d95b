"""The bad-input catalogue (`bad_input_cases.py`, published as docs/bad-inputs.md): every bad
input gets a clear error from revstats itself, or a documented warning and a NaN, never a
library traceback and never a number."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.unit.bad_input_cases import all_cases, render_markdown

CASES = all_cases()
OURS = ("/revstats/", "/sims/")


def _needs(case):
    if case.area == "report":
        pytest.importorskip("markdown_it")
    if case.id.startswith("capture-lora"):
        pytest.importorskip("peft")
    if (case.area == "capture" and not case.id.startswith("capture-probes")
            and case.id not in ("capture-empty-probes", "capture-duplicate-probe-ids")) or \
            case.id == "capture-probe-longer-than-context":
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    if case.id in ("ingest-truncated-h5", "ingest-h5-strings") or case.id.startswith("ingest-h5-"):
        pytest.importorskip("h5py")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path):
    _needs(case)
    if case.expect is None:  # handled: the case checks its own output and describes it
        assert re.search(case.match, str(case.run(tmp_path)))
    elif case.cli:
        res = case.run(tmp_path)
        out = " ".join(res.output.split())
        # usage errors exit 2; `info` reports a bad store's problems with status 1
        assert res.exit_code == (1 if case.id.startswith("cli-info") else 2), (res.exit_code, out)
        assert isinstance(res.exception, SystemExit), repr(res.exception)  # not a traceback
        assert "Traceback" not in res.output
        assert re.search(case.match, out), out
    elif issubclass(case.expect, Warning):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            with pytest.warns(case.expect, match=case.match):
                result = case.run(tmp_path)
        if isinstance(result, xr.DataArray):  # the documented outcome: NaN, not a number
            assert np.isnan(result.values).all(), result.values
    else:
        with pytest.raises(case.expect, match=case.match) as info:
            case.run(tmp_path)
        frames = [str(e.path) for e in info.traceback]
        raiser = next((f for f in reversed(frames) if any(o in f for o in OURS)), None)
        assert raiser is not None, f"raised outside revstats: {frames[-3:]}"
        # the error is raised by revstats itself, not deep inside a library
        assert any(o in frames[-1] for o in OURS), f"raised from {frames[-1]}"


def test_catalogue_size_and_doc_in_sync():
    assert len(CASES) >= 40
    doc = Path(__file__).resolve().parents[2] / "docs" / "bad-inputs.md"
    assert doc.read_text(encoding="utf-8") == render_markdown(), (
        "docs/bad-inputs.md is stale: run `python -m tests.unit.bad_input_cases > docs/bad-inputs.md`"
    )
