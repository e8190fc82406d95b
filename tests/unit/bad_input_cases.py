"""The bad-input catalogue: one table drives `tests/unit/test_bad_inputs.py` and
`docs/bad-inputs.md` (regenerate with `python -m tests.unit.bad_input_cases > docs/bad-inputs.md`;
a test fails when the two drift apart).

Each case feeds one bad input to the public API or the CLI and states what must happen: a
`TypeError`/`ValueError`/`SchemaError`/`RevstatsError`/`FileNotFoundError` whose message
matches `match` (for the CLI: a usage error, exit status != 0, the message printed, no
traceback), or a documented warning. Never a traceback from deep inside a library, never a
number computed from bad data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from revstats.errors import DegenerateDataWarning, RevstatsError, RevstatsWarning, SchemaError

RNG_SEED = 0
H = 8


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    bad_input: str
    run: Callable[[Path], Any]
    expect: type[BaseException] | type[Warning] | None  # None: handled, `run` checks the output
    match: str
    cli: bool = False


def _acts(n_run=2, n_step=3, n_layer=1, n_ex=5, h=H, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.normal(size=(n_run, n_step, n_layer, n_ex, h)),
        dims=("run", "step", "layer", "example", "hidden"),
        coords={"run": [f"r{i}" for i in range(n_run)], "step": list(range(n_step)),
                "layer": [f"L{i}" for i in range(n_layer)], "example": [f"e{i}" for i in range(n_ex)]},
    )


def _witness(n_layer=1, n_ex=5, h=H, seed=1):
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.normal(size=(n_layer, n_ex, h)), dims=("layer", "example", "hidden"),
                        coords={"layer": [f"L{i}" for i in range(n_layer)],
                                "example": [f"e{i}" for i in range(n_ex)]})


def _vec(values, dim="hidden"):
    return xr.DataArray(np.asarray(values, dtype=float), dims=(dim,))


def _with(a: xr.DataArray, idx: tuple, value: float) -> xr.DataArray:
    a = a.copy()
    a.values[idx] = value
    return a


def _create(path, **kw):
    from revstats.store import create_store

    args = dict(runs=["r0"], layers=["L0"], examples=["e0", "e1"], hidden=4, steps=[0],
                source="ingest", provenance={})
    args.update(kw)
    return create_store(path / "s.zarr", **args)


def _write(path, acts, **kw):
    with _create(path) as w:
        w.write_slab("r0", 0, acts, **kw)


def _store_for_cli(path: Path) -> Path:
    with _create(path) as w:
        w.write_witness(np.ones((1, 2, 4)))
        w.write_slab("r0", 0, np.zeros((1, 2, 4)))
    return path / "s.zarr"


def _cli(*args: str):
    from click.testing import CliRunner

    from revstats.cli import main

    return CliRunner().invoke(main, list(args))


def _npz(path: Path, **arrays) -> str:
    f = path / "log.npz"
    np.savez(f, **arrays)
    return str(f)


def _ingest(src, out, **mapping):
    from revstats.store.ingest import ingest

    mp = {"acts": {"key": "acts", "dims": ["run", "step", "layer", "example", "hidden"]},
          "witness": {"key": "base", "dims": ["layer", "example", "hidden"]}}
    mp.update(mapping)
    return ingest(src, out / "out.zarr", mapping=mp)


def _good_log(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"acts": rng.normal(size=(1, 2, 1, 3, 4)).astype(np.float32),
              "base": rng.normal(size=(1, 3, 4)).astype(np.float32)}
    arrays.update(over)
    return _npz(path, **arrays)


def _edit_root_attrs(store: Path, **attrs) -> None:
    for doc in [store / "zarr.json"]:
        meta = json.loads(doc.read_text())
        meta["attributes"].update(attrs)
        cm = meta.get("consolidated_metadata")
        doc.write_text(json.dumps(meta))
        del cm


def _quiet(f):
    def run(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return f(p)
    return run


def _geometry_cases() -> list[Case]:
    import revstats as rs

    acts, wit = _acts(), _witness()
    aligned = acts.isel(step=0, run=0, drop=True)
    return [
        Case("nan-activation-direction", "geometry", "NaN in witness activations",
             lambda p: rs.reversion_direction(_with(wit, (0, 1, 2), np.nan), aligned),
             DegenerateDataWarning, "contain NaN or Inf; the result is NaN"),
        Case("inf-activation-alignment", "geometry", "Inf in a drift vector",
             lambda p: rs.alignment(_vec([1.0, np.inf, 0, 0]), _vec([1.0, 0, 0, 0])),
             DegenerateDataWarning, "vectors contain NaN or Inf; the result is NaN there"),
        Case("zero-drift", "geometry", "zero drift vector (cosine undefined)",
             lambda p: rs.alignment(_vec([0.0, 0, 0, 0]), _vec([1.0, 0, 0, 0])),
             DegenerateDataWarning, "vectors have zero length and no direction"),
        Case("zero-direction", "geometry", "witness mean equals aligned mean (no direction)",
             lambda p: rs.reversion_direction(aligned, aligned),
             DegenerateDataWarning, "have zero length and no direction"),
        Case("hidden-size-mismatch", "geometry", "drift and direction with different hidden sizes",
             lambda p: rs.alignment(_vec([1.0, 2, 3]), _vec([1.0, 0, 0, 0])),
             ValueError, "same 'hidden' entries, but their sizes are 3 and 4"),
        Case("hidden-size-mismatch-direction", "geometry",
             "witness and aligned with different hidden sizes",
             lambda p: rs.reversion_direction(_witness(h=6), aligned), ValueError,
             "same 'hidden' entries, but their sizes are 6 and 8"),
        Case("empty-probe-set", "geometry", "zero probes (empty `example` dim)",
             lambda p: rs.reversion_direction(wit.isel(example=slice(0, 0)), aligned),
             ValueError, "`witness` has no entries along 'example'"),
        Case("unknown-dim", "geometry", "`dim` names a dimension the data lack",
             lambda p: rs.reversion_direction(wit, aligned, dim="probe"), ValueError,
             "`witness` has no dimension 'probe'"),
        Case("string-dtype-acts", "geometry", "activations of dtype str",
             lambda p: rs.alignment(_vec([1.0, 0]).astype(str), _vec([1.0, 0])), TypeError,
             "`drift` must hold real numbers"),
        Case("numpy-not-xarray", "geometry", "plain NumPy array where a DataArray is expected",
             lambda p: rs.alignment(np.ones(4), _vec([1.0, 0, 0, 0])), TypeError,
             "`drift` must be an xarray.DataArray"),
        Case("missing-reference-step", "geometry", "drift with a reference step the run lacks",
             lambda p: rs.drift(acts, reference_step=7), ValueError,
             "`reference_step` 7 is not a 'step' coordinate"),
    ]


def _stats_cases() -> list[Case]:
    from revstats import effects, intervals, nulls

    return [
        Case("proportion-k-gt-n", "intervals", "k > n", lambda p: intervals.proportion_ci(5, 3),
             ValueError, "`k` exceeds `n`"),
        Case("proportion-negative-n", "intervals", "n < 0",
             lambda p: intervals.proportion_ci(0, -2), ValueError, "`n` has negative counts"),
        Case("proportion-float-k", "intervals", "non-integer count k = 2.5",
             lambda p: intervals.proportion_ci(2.5, 10), ValueError, "`k` must hold whole numbers"),
        Case("proportion-nan-k", "intervals", "k = NaN",
             lambda p: intervals.proportion_ci(np.nan, 10), ValueError, "`k` contains NaN"),
        Case("unknown-method", "intervals", "unknown interval method",
             lambda p: intervals.proportion_ci(3, 10, method="wald2"), ValueError, "`method` must be one of"),
        Case("confidence-out-of-range", "intervals", "confidence = 95 (percent, not fraction)",
             lambda p: intervals.proportion_ci(3, 10, confidence=95), ValueError,
             "`confidence` must lie strictly between 0 and 1"),
        Case("mean-ci-one-value", "intervals", "t interval of a single value",
             lambda p: intervals.mean_ci([1.0]), ValueError, "`x` needs at least 2 observations"),
        Case("mean-ci-nan", "intervals", "NaN in the sample", lambda p: intervals.mean_ci([1.0, np.nan, 2]),
             ValueError, "`x` contains NaN or infinite values"),
        Case("bootstrap-empty", "intervals", "bootstrap of an empty sample",
             lambda p: intervals.bootstrap_ci([], "mean", rng=0), ValueError, "`data` is empty"),
        Case("bootstrap-bad-statistic", "intervals", "unknown statistic name",
             lambda p: intervals.bootstrap_ci([1.0, 2, 3], "meen", rng=0), ValueError,
             "`statistic` name must be one of"),
        Case("bootstrap-string-data", "intervals", "strings as bootstrap data",
             lambda p: intervals.bootstrap_ci(["a", "b", "c"], "mean", rng=0), TypeError,
             "`data` must hold real numbers, got dtype <U1: strings"),
        Case("hedges-constant-groups", "effects", "two groups with zero variance",
             lambda p: effects.hedges_g([1.0, 1, 1], [1.0, 1, 1]), ValueError,
             "both groups have zero standard deviation"),
        Case("risk-ratio-k-gt-n", "effects", "risk ratio with k1 > n1",
             lambda p: effects.risk_ratio(12, 10, 3, 10), ValueError, "`k1` exceeds `n1`"),
        Case("isotropic-d1", "nulls", "isotropic null with d = 1",
             lambda p: nulls.isotropic_cosine(1), ValueError, "`d` must be >= 2"),
        Case("isotropic-float-d", "nulls", "isotropic null with d = 10.5",
             lambda p: nulls.isotropic_cosine(10.5), TypeError,
             "`d` must be an integer dimension"),
        Case("adjust-pvalues-out-of-range", "nulls", "p-value 1.5",
             lambda p: nulls.adjust_pvalues([0.1, 1.5]), ValueError,
             "`p` must contain p-values in \\[0, 1\\]"),
        Case("adjust-unknown-method", "nulls", "unknown adjustment method",
             lambda p: nulls.adjust_pvalues([0.1, 0.5], method="sidak2"), ValueError,
             "`method` must be one of"),
        Case("exceedance-q-out-of-range", "nulls", "quantile q = 99",
             lambda p: nulls.exceedance([0.1], nulls.isotropic_cosine(10), q=99), ValueError,
             "`q` must lie strictly between 0 and 1"),
        Case("cosine-out-of-range", "nulls", "observed cosine 1.5 (not a cosine)",
             lambda p: nulls.exceedance([1.5], nulls.isotropic_cosine(10)), ValueError,
             "`observed` must hold cosines in \\[-1, 1\\]"),
    ]


def _store_cases() -> list[Case]:
    from revstats.store import create_store, open_store, open_writer

    def dup_step(p):
        with _create(p, steps=[0]) as w:
            w.write_slabs("r0", [1, 1], np.zeros((2, 1, 2, 4)))

    def missing_step_open(p):
        # a run whose step 1 never completed: visible as NaN, and the note says so
        with _create(p, runs=["r0", "r1"], steps=[0, 1]) as w:
            w.write_witness(np.ones((1, 2, 4)))
            w.write_slab("r0", 0, np.zeros((1, 2, 4)))
            w.write_slab("r1", 0, np.zeros((1, 2, 4)))
            w.write_slab("r0", 1, np.zeros((1, 2, 4)))
        ds = open_store(p / "s.zarr")
        if "incomplete slab" in ds.attrs.get("revstats_notes", ""):
            warnings.warn("store note: " + ds.attrs["revstats_notes"], RevstatsWarning, stacklevel=1)
        return ds

    def wrong_schema(p):
        _store_for_cli(p)
        _edit_root_attrs(p / "s.zarr", revstats_schema=99)
        return open_store(p / "s.zarr")

    def truncated_meta(p):
        doc = _store_for_cli(p) / "zarr.json"
        doc.write_text(doc.read_text()[:40])
        return open_store(p / "s.zarr")

    from revstats.errors import RevstatsWarning

    return [
        Case("store-nan-slab", "store", "NaN in a slab being written",
             lambda p: _write(p, np.full((1, 2, 4), np.nan)), SchemaError, "NaN or Inf"),
        Case("store-inf-slab", "store", "Inf in a slab being written",
             lambda p: _write(p, np.full((1, 2, 4), np.inf)), SchemaError, "NaN or Inf"),
        Case("store-wrong-shape", "store", "slab with the wrong hidden size",
             lambda p: _write(p, np.zeros((1, 2, 5))), ValueError, "has shape .*5\\); the store expects .*4\\)"),
        Case("store-string-dtype", "store", "slab of strings",
             lambda p: _write(p, np.array([[["a"] * 4] * 2])), TypeError, "must be numeric"),
        Case("store-complex-dtype", "store", "complex activations",
             lambda p: _write(p, np.zeros((1, 2, 4), complex)), TypeError, "must be numeric"),
        Case("store-float16-overflow", "store", "values beyond float16 into a float16 store",
             lambda p: _create(p, dtype="float16").write_slab("r0", 0, np.full((1, 2, 4), 1e6)),
             ValueError, "float16 range"),
        Case("store-int8-dtype", "store", "storage dtype int8",
             lambda p: _create(p, dtype="int8"), ValueError, "`dtype`"),
        Case("store-duplicated-steps", "store", "the same step twice in one append",
             dup_step, ValueError, "duplicated"),
        Case("store-duplicated-step-coord", "store", "duplicated steps at creation",
             lambda p: _create(p, steps=[0, 5, 5]), ValueError, "duplicated"),
        Case("store-negative-step", "store", "negative training step",
             lambda p: _create(p, steps=[-1]), ValueError, "non-negative"),
        Case("store-duplicated-run", "store", "two runs with the same id",
             lambda p: _create(p, runs=["a", "a"]), ValueError, "duplicated"),
        Case("store-empty-probes", "store", "empty probe set",
             lambda p: _create(p, examples=[]), ValueError, "`examples` is empty"),
        Case("store-int-ids", "store", "integer run ids", lambda p: _create(p, runs=[0, 1]),
             TypeError, "must hold strings"),
        Case("store-id-script", "store", "run id `<script>alert(1)</script>`",
             lambda p: _create(p, runs=["<script>alert(1)</script>"]), ValueError, "`runs` id .* forbidden character"),
        Case("store-id-traversal", "store", "layer id `../../etc/passwd`",
             lambda p: _create(p, layers=["../../etc/passwd"]), ValueError, "`layers` id .* forbidden character"),
        Case("store-id-newline", "store", "probe id with a newline",
             lambda p: _create(p, examples=["a\nb", "c"]), ValueError, "`examples` id .* forbidden character"),
        Case("store-id-too-long", "store", "run id of 10,000 characters",
             lambda p: _create(p, runs=["r" * 10_000]), ValueError, "`runs` id .* is too long"),
        Case("store-id-empty", "store", "empty-string run id",
             lambda p: _create(p, runs=[""]), ValueError, "`runs` has an empty id"),
        Case("store-wrong-schema-version", "store", "store written by a future schema version",
             wrong_schema, SchemaError, "schema version 99 is not supported"),
        Case("store-unknown-run", "store", "append to a run that is not in the store",
             lambda p: _create(p).write_slab("nope", 0, np.zeros((1, 2, 4))), ValueError,
             "not in this store"),
        Case("store-missing-step", "store", "a run with a missing (never completed) step",
             missing_step_open, RevstatsWarning, "1 incomplete slab"),
        Case("store-not-a-store", "store", "open a directory that is not a store",
             lambda p: (p / "d").mkdir() or open_store(p / "d"), SchemaError, "not a zarr v3 store"),
        Case("store-missing-path", "store", "open a path that does not exist",
             lambda p: open_store(p / "nope.zarr"), FileNotFoundError, "no store at"),
        Case("store-truncated-metadata", "store", "truncated zarr.json",
             truncated_meta, SchemaError, "root metadata document .* is truncated or corrupt"),
        Case("store-second-writer", "store", "a second writer on the same store",
             lambda p: (_create(p), open_writer(p / "s.zarr")), RevstatsError, "another writer"),
        Case("store-existing-not-clobbered", "store", "create over an existing store",
             lambda p: (_store_for_cli(p), create_store(p / "s.zarr", runs=["x"], layers=["l"],
                        examples=["e"], hidden=2, source="ingest", provenance={})),
             RevstatsError, "exists"),
    ]


def _ingest_cases() -> list[Case]:
    def pickle_npy(p):
        f = p / "obj.npy"
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        return _ingest(str(f), p, acts={"key": None, "dims": ["run", "step", "layer", "example", "hidden"]})

    def truncated_npz(p):
        f = Path(_good_log(p))
        f.write_bytes(f.read_bytes()[:100])
        return _ingest(str(f), p)

    def truncated_h5(p):
        import h5py

        f = p / "log.h5"
        with h5py.File(f, "w") as h:
            h["acts"] = np.zeros((1, 2, 1, 3, 4))
            h["base"] = np.zeros((1, 3, 4))
        f.write_bytes(f.read_bytes()[:300])
        return _ingest(str(f), p)

    def h5_object(p):
        import h5py

        f = p / "log.h5"
        with h5py.File(f, "w") as h:
            h["acts"] = np.array(["a", "b"], dtype=h5py.string_dtype())
            h["base"] = np.zeros((1, 3, 4))
        return _ingest(str(f), p, acts={"key": "acts", "dims": ["example"]})

    def pt_pickle(p):
        import pickle

        f = p / "evil.pt"

        class Boom:
            def __reduce__(self):
                return (print, ("pickle code ran",))

        f.write_bytes(pickle.dumps({"acts": Boom()}))
        return _ingest(str(f), p)

    return [
        Case("ingest-nan", "ingest", "NaN in logged activations",
             lambda p: _ingest(_good_log(p, acts=np.full((1, 2, 1, 3, 4), np.nan, np.float32)), p),
             RevstatsError, "acts contain NaN or inf: refusing"),
        Case("ingest-object-npy", "ingest", "object (pickled) array in a .npy file",
             pickle_npy, RevstatsError, "is an object array; it contains pickled"),
        Case("ingest-object-npz", "ingest", "object array inside an .npz",
             lambda p: _ingest(_npz(p, acts=np.array([1, "x"], dtype=object),
                                    base=np.zeros((1, 3, 4))), p),
             RevstatsError, "'acts' is an object array; it contains pickled"),
        Case("ingest-h5-strings", "ingest", "HDF5 dataset of strings", h5_object, RevstatsError,
             "'acts' is an object array"),
        Case("ingest-pt-pickle", "ingest", ".pt file whose unpickling would run code", pt_pickle,
             RevstatsError, "refused to load: it contains pickled Python objects"),
        Case("ingest-truncated-npz", "ingest", "truncated .npz", truncated_npz, RevstatsError,
             "cannot read it as npz: the file is truncated or corrupt"),
        Case("ingest-truncated-h5", "ingest", "truncated .h5", truncated_h5, RevstatsError,
             "cannot read it as hdf5: the file is truncated or corrupt"),
        Case("ingest-wrong-dims", "ingest", "mapping dims that do not match the array rank",
             lambda p: _ingest(_good_log(p), p, acts={"key": "acts", "dims": ["run", "step", "hidden"]}),
             RevstatsError, "has shape \\(1, 2, 1, 3, 4\\) \\(5 axes\\) but the mapping names dims"),
        Case("ingest-unknown-key", "ingest", "array name missing from the file",
             lambda p: _ingest(_good_log(p), p, acts={"key": "activations", "dims": ["run", "step", "layer", "example", "hidden"]}),
             RevstatsError, "no array 'activations' for `acts`"),
        Case("ingest-hidden-mismatch", "ingest", "witness hidden size differs from acts",
             lambda p: _ingest(_good_log(p, base=np.zeros((1, 3, 5), np.float32)), p),
             RevstatsError, "axis 'hidden' has size 5 in `witness`"),
        Case("ingest-unsupported-suffix", "ingest", "a .pkl file",
             lambda p: (p / "x.pkl").write_bytes(b"\x80\x04") and _ingest(str(p / "x.pkl"), p),
             RevstatsError, "unknown file type '.pkl'"),
    ]


def _cli_cases() -> list[Case]:
    return [
        Case("cli-info-missing", "cli", "`revstats info` on a missing path",
             lambda p: _cli("info", str(p / "nope.zarr")), SystemExit, "no store at", cli=True),
        Case("cli-simulate-bad-set", "cli", "`revstats simulate --set` without `=`",
             lambda p: _cli("simulate", "--set", "lr", "--out", str(p / "o.zarr")), SystemExit,
             "KEY=VALUE", cli=True),
        Case("cli-simulate-unknown-preset", "cli", "unknown preset",
             lambda p: _cli("simulate", "--preset", "nope", "--out", str(p / "o.zarr")), SystemExit,
             "unknown preset 'nope'", cli=True),
        Case("cli-simulate-hidden-too-small", "cli", "hidden smaller than the latent space",
             lambda p: _cli("simulate", "--hidden", "4", "--out", str(p / "o.zarr")), SystemExit,
             "`hidden` \\(4\\) must be >= `latent`", cli=True),
        Case("cli-ingest-nan", "cli", "`revstats ingest` of NaN activations",
             lambda p: _cli("ingest", _good_log(p, acts=np.full((1, 2, 1, 3, 4), np.inf, np.float32)),
                            "--out", str(p / "o.zarr"), "--acts-key", "acts", "--acts-dims",
                            "run,step,layer,example,hidden", "--witness-key", "base",
                            "--witness-dims", "layer,example,hidden"),
             SystemExit, "acts contain NaN or inf", cli=True),
        Case("cli-ingest-hostile-run-id", "cli", "`revstats ingest --runs '<script>'`",
             lambda p: _cli("ingest", _good_log(p), "--out", str(p / "o.zarr"), "--acts-key", "acts",
                            "--acts-dims", "run,step,layer,example,hidden", "--witness-key", "base",
                            "--witness-dims", "layer,example,hidden", "--runs", "<script>x</script>"),
             SystemExit, "`runs` id .* forbidden character", cli=True),
        Case("cli-ingest-bad-steps", "cli", "`--steps` that are not integers",
             lambda p: _cli("ingest", _good_log(p), "--out", str(p / "o.zarr"), "--steps", "a,b"),
             SystemExit, "expected comma-separated integers", cli=True),
        Case("cli-capture-bad-layers", "cli", "`revstats capture --layers x`",
             lambda p: (p / "pr.txt").write_text("hi\n") and _cli(
                 "capture", "--probes", str(p / "pr.txt"), "--layers", "x", "--out", str(p / "o")),
             SystemExit, "expected comma-separated integers such as 8,12,-1 or layer names", cli=True),
    ]


def _tiny_capture(p, *, layers=(0,), ids=((5, 6, 7),), position="last"):
    from revstats.capture._tiny import build_tiny_model
    from revstats.capture.hooks import capture_residual, make_batches

    model = build_tiny_model("gpt2", n_layers=1, hidden=16)
    batches = make_batches([list(i) for i in ids], [[] for _ in ids], batch_size=1)
    return capture_residual(model, batches, layers=list(layers), position=position)


def _capture_cases() -> list[Case]:
    def unknown_module(p):
        import torch

        from revstats.capture.hooks import capture_modules

        with capture_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["blocks.99.mlp"]):
            pass

    return [
        Case("capture-unknown-layer", "capture", "residual layer 99 of a 1-block model",
             lambda p: _tiny_capture(p, layers=(99,)), ValueError, "`layers` must be distinct indices in 0..1"),
        Case("capture-unknown-module", "capture", "hook on a module name the model lacks",
             unknown_module, ValueError, "are not modules of the model"),
        Case("capture-token-out-of-vocab", "capture", "probe token id beyond the vocabulary",
             lambda p: _tiny_capture(p, ids=((5, 6, 7000),)), ValueError, "token ids must lie in 0..111"),
        Case("capture-bad-position", "capture", "unknown token position policy",
             lambda p: _tiny_capture(p, position="middle"), ValueError, "`position` must be"),
        Case("capture-empty-probes", "capture", "a probe file with no probes",
             lambda p: (p / "pr.jsonl").write_text("\n") and _load_probes(p / "pr.jsonl"),
             RevstatsError, "holds no probes"),
        Case("capture-duplicate-probe-ids", "capture", "two probes with the same id",
             lambda p: (p / "pr.jsonl").write_text('{"id": "a", "prompt_ids": [1]}\n' * 2)
             and _load_probes(p / "pr.jsonl"), RevstatsError, "probe ids are not unique"),
    ]


def intervals_bootstrap(x, *, confidence, n=100):
    from revstats import intervals

    return intervals.bootstrap_ci(x, "mean", n_resamples=n, confidence=confidence, rng=0)


def _held_overwrite(p):
    from revstats.store import create_store, open_writer

    path = _store_for_cli(p)
    with open_writer(path):
        create_store(path, runs=["x"], layers=["l"], examples=["e"], hidden=2, source="ingest",
                     provenance={}, overwrite=True)


def _overwrite_non_store(p):
    from revstats.store import create_store

    (p / "d").mkdir()
    (p / "d" / "notes.txt").write_text("keep me")
    create_store(p / "d", runs=["x"], layers=["l"], examples=["e"], hidden=2, source="ingest",
                 provenance={}, overwrite=True)


def _demo_existing(p):
    (p / "demo").mkdir()
    (p / "demo" / "report.md").write_text("an earlier report")
    return _cli("demo", "--out", str(p / "demo"), "--runs", "2", "--steps", "20")


def _simulate_mismatch(p):
    _store_for_cli(p)  # a store written by something else
    return _cli("simulate", "--runs", "2", "--steps", "20", "--out", str(p / "s.zarr"))


def _h5_with(p, kind):
    import h5py

    secret = p / "secret.bin"
    secret.write_bytes(np.arange(24, dtype=np.float32).tobytes())  # stands for /etc/passwd
    f = p / "log.h5"
    with h5py.File(f, "w") as h:
        h["base"] = np.zeros((1, 3, 4), np.float32)
        if kind == "external-storage":
            h.create_dataset("acts", shape=(1, 2, 1, 3, 4), dtype="f4",
                             external=[(str(secret), 0, 96)])
        elif kind == "external-link":
            with h5py.File(p / "other.h5", "w") as o:
                o["data"] = np.zeros((1, 2, 1, 3, 4), np.float32)
            h["acts"] = h5py.ExternalLink(str(p / "other.h5"), "/data")
        else:
            with h5py.File(p / "other.h5", "w") as o:
                o["data"] = np.zeros((1, 2, 1, 3, 4), np.float32)
            layout = h5py.VirtualLayout(shape=(1, 2, 1, 3, 4), dtype="f4")
            layout[...] = h5py.VirtualSource(str(p / "other.h5"), "data", shape=(1, 2, 1, 3, 4))
            h.create_virtual_dataset("acts", layout)
    return _ingest(str(f), p)


def _bad_safetensors(p):
    f = p / "log.safetensors"
    f.write_bytes((10**12).to_bytes(8, "little") + b"{}")  # header length past the end
    return _ingest(str(f), p)


def _hostile_chunk(p, kind):
    import os

    store = _store_for_cli(p)
    chunk = next((store / "acts" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.unlink()
    if kind == "fifo":
        os.mkfifo(chunk)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", chunk)
    elif kind == "outside":
        (p / "elsewhere").mkdir()
        (p / "elsewhere" / "0").write_bytes(b"x" * 36)
        top = store / "acts" / "c" / "0"
        import shutil

        shutil.rmtree(top)
        os.symlink(p / "elsewhere", top)
    else:  # oversized
        chunk.write_bytes(b"\0" * (1 << 20))
    return store


def _hostile_open(kind):
    from revstats.store import open_store

    return lambda p: open_store(_hostile_chunk(p, kind))


MD_INJECTION = "L](javascript:alert(1)) | **b** |"


def _markdown_injection(p):
    """A legal layer id that is Markdown markup: report.md must render it as literal text."""
    from markdown_it import MarkdownIt

    from revstats.analysis.pipeline import AnalysisSettings, analyze
    from revstats.analysis.report import render_markdown
    from revstats.analysis.testing import make_synthetic_store

    ds = make_synthetic_store(layers=(MD_INJECTION,), runs_per_arm=3, steps=(0, 1, 2), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = analyze(ds, settings=AnalysisSettings(n_resamples=100, n_null_draws=100))
    html = MarkdownIt("commonmark").enable("table").render(render_markdown(results, []))
    assert 'href="javascript' not in html and "<strong>b</strong>" not in html, html
    assert "L](javascript:alert(1))" in html  # shown as the literal id
    return "escaped: " + "L](javascript:alert(1))"


def _finished_store(p: Path, *, steps=(0, 1), runs=("r0", "r1")) -> Path:
    """A small finished schema-2 store: 2 runs x 2 steps, behaviour and task, witness."""
    from revstats.store import create_store

    rng = np.random.default_rng(0)
    with create_store(p / "s.zarr", runs=list(runs), layers=["L0"], examples=["e0", "e1"],
                      hidden=4, steps=list(steps), source="ingest", provenance={},
                      task={"metric": "loss", "higher_is_better": False}) as w:
        w.write_witness(rng.normal(size=(1, 2, 4)))
        for r in runs:
            for s in steps:
                w.write_slab(r, s, rng.normal(size=(1, 2, 4)), behavior=[0.0, 1.0], task=1.0)
        w.finish()
    return p / "s.zarr"


def _zarr_edit(store: Path, name: str, index, value, *, rebind: bool = True) -> None:
    """Edit an array behind revstats' back (as an attacker would), optionally updating the
    manifest digest too, so that only the value-domain check stands in the way."""
    import zarr

    g = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    g[name][index] = value
    if rebind and name in ("behavior", "task") and "digest" in g:
        from revstats.store import _digest_index, _tail_digests

        ri, si = index[0], index[1]
        key = (ri, si, 0) if name == "behavior" else (ri, si)
        k = _digest_index(g["digest"])[(name, key[2:])]
        g["digest"][ri, si, k] = _tail_digests(str(store), g, name, [key])[0]
    zarr.consolidate_metadata(str(store))


def _edit_json(doc: Path, edit) -> None:
    meta = json.loads(doc.read_text())
    edit(meta)
    doc.write_text(json.dumps(meta))


def _copied_chunk(p, source="acts"):
    import shutil

    store = _finished_store(p)
    src = store / ("acts/c/1/1/0/0/0" if source == "acts" else "witness/c/0/0/0")
    shutil.copyfile(src, store / "acts/c/0/0/0/0/0")
    return store


def _read_acts_values(store):
    from revstats.store import open_store

    return open_store(store)["acts"].values


def _fill_zero(p):
    store = _finished_store(p)
    for doc in (store / "acts" / "zarr.json",):
        _edit_json(doc, lambda m: m.update(fill_value=0.0))
    _edit_json(store / "zarr.json", lambda m: m["consolidated_metadata"]["metadata"]["acts"].update(fill_value=0.0))
    (store / "acts/c/0/0/0/0/0").unlink()
    return _read_acts_values(store)


def _no_crc(p):
    store = _finished_store(p)

    def drop(m):
        m["codecs"] = [c for c in m["codecs"] if c["name"] != "crc32c"]
    _edit_json(store / "acts" / "zarr.json", drop)
    _edit_json(store / "zarr.json", lambda m: drop(m["consolidated_metadata"]["metadata"]["acts"]))
    return _read_acts_values(store)


def _marker_vanished(p):
    store = _finished_store(p)
    _zarr_edit(store, "complete", (0, 1), False)
    return _read_acts_values(store)


def _consolidated_disagrees(p):
    store = _finished_store(p)
    _edit_json(store / "zarr.json", lambda m: m["consolidated_metadata"]["metadata"]["task"]["attributes"].update(higher_is_better=True))
    return _read_acts_values(store)


def _domain(p, name, index, value):
    store = _finished_store(p)
    _zarr_edit(store, name, index, value)
    return _read_acts_values(store)


def _task_attr(p):
    import zarr

    store = _finished_store(p)
    zarr.open_array(str(store / "task"), mode="r+").attrs["higher_is_better"] = "no"
    zarr.consolidate_metadata(str(store))
    return _read_acts_values(store)


def _interrupted(p) -> Path:
    """A store whose writer stopped half way (as after Ctrl-C), with its resume command."""
    from revstats.store import create_store

    with create_store(p / "s.zarr", runs=["r0", "r1"], layers=["L0"], examples=["e0", "e1"],
                      hidden=4, steps=[0, 1], source="ingest",
                      provenance={"command": "revstats ingest log.npz --out s.zarr"}) as w:
        w.write_witness(np.ones((1, 2, 4)))
        w.write_slab("r0", 0, np.zeros((1, 2, 4)))
        w.write_slab("r0", 1, np.ones((1, 2, 4)))
    return p / "s.zarr"


def _interrupted_overwrite(p):
    """What `--overwrite` killed while deleting the old store leaves (zarr.json renamed to the
    clearing marker, members half deleted)."""
    import shutil

    from revstats.store import _CLEARING

    store = _finished_store(p)
    (store / "zarr.json").rename(store / _CLEARING)
    shutil.rmtree(store / "acts")
    return store


def _edited_meta(p, name, edit_text=None, edit=None):
    store = _finished_store(p)
    doc = store / name / "zarr.json" if name else store / "zarr.json"
    if edit_text is not None:
        doc.write_text(edit_text(doc.read_text()))
    else:
        _edit_json(doc, edit)
    return _read_acts_values(store)


def _huge_steps(m):
    m["shape"] = [10**12]


def _no_warning(f):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return f()


def _alignment_extreme(scale):
    import revstats as rs

    got = _no_warning(lambda: float(rs.alignment(_vec([scale, scale, 0.0]), _vec([scale, 0.0, 0.0]))))
    assert abs(got - 2**-0.5) < 1e-12, got
    return f"cos = {got:.6f}"


def _adjust_nan():
    from revstats import nulls

    got = nulls.adjust_pvalues([0.01, np.nan, 0.04], method="holm")
    assert np.isnan(got[1]) and np.allclose(got[[0, 2]], [0.02, 0.04]), got
    return "NaN stays NaN and is not counted in m (documented)"


def _tiny(path, **kw):
    from revstats.capture._tiny import build_tiny_model

    build_tiny_model("gpt2", path, **kw)
    return path


def _lora(p, base, *, seed=1):
    import peft
    import torch

    from revstats.capture.checkpoints import load_causal_lm

    torch.manual_seed(seed)
    model = peft.get_peft_model(load_causal_lm(base), peft.LoraConfig(
        r=2, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False))
    model.save_pretrained(str(p / "adapter"))
    return p / "adapter"


def _lora_wrong_base(p):
    from revstats.capture.checkpoints import load_causal_lm

    adapter = _lora(p, _tiny(p / "base_a", seed=0))
    return load_causal_lm(adapter, adapter_base=_tiny(p / "base_b", seed=5))


def _lora_other_width(p):
    from revstats.capture.checkpoints import load_causal_lm

    adapter = _lora(p, _tiny(p / "base16", hidden=16))
    return load_causal_lm(adapter, adapter_base=_tiny(p / "base32", hidden=32))


def _truncated_weights(p):
    from revstats.capture.checkpoints import load_causal_lm

    d = _tiny(p / "m")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return load_causal_lm(d)


def _remote_code_model(p):
    from revstats.capture.checkpoints import load_causal_lm

    (p / "m").mkdir()
    (p / "m" / "config.json").write_text(json.dumps({
        "model_type": "mymodel", "architectures": ["MyModel"],
        "auto_map": {"AutoConfig": "configuration_my.MyConfig",
                     "AutoModelForCausalLM": "modeling_my.MyModel"}}))
    return load_causal_lm(p / "m")


def _probe_file(p, content: bytes, name="pr.jsonl"):
    (p / name).write_bytes(content)
    return _load_probes(p / name)


def _bom_probes(p):
    ps = _probe_file(p, b"\xef\xbb\xbf" + b'{"id": "a", "prompt_ids": [1, 2]}\n')
    assert ps.ids == ["a"], ps.ids
    return "accepted: " + ps.ids[0]


def _long_probe(p):
    _tiny(p / "m", seed=0)
    _tiny(p / "runs" / "r0" / "checkpoint-1", seed=1)
    (p / "pr.jsonl").write_text(json.dumps({"id": "long", "prompt_ids": [5] * 5000}) + "\n")
    return _cli("capture", "--witness", str(p / "m"), "--aligned", str(p / "m"), "--runs",
                str(p / "runs" / "*"), "--probes", str(p / "pr.jsonl"), "--layers", "0",
                "--out", str(p / "o.zarr"), "--quiet")


def _dims_string(p):
    path = _ingest(_good_log(p), p, acts={"key": "acts", "dims": "run,step,layer,example,hidden"})
    return "accepted as " + str(__import__("revstats").open_store(path)["acts"].dims)


def _ingest_cli(p, *extra):
    return _cli("ingest", _good_log(p), "--out", str(p / "o.zarr"), "--acts-key", "acts",
                "--acts-dims", "run,step,layer,example,hidden", "--witness-key", "base",
                "--witness-dims", "layer,example,hidden", *extra)


def _hostile_cases() -> list[Case]:
    """Issue 14 (hostile stores, files and concurrent writers) and 19.1/19.3."""
    return [
        Case("report-markdown-injection", "report",
             f"layer id `{MD_INJECTION}` (Markdown link and emphasis) in report.md",
             _markdown_injection, None, "escaped: L\\]\\(javascript"),
        Case("ingest-h5-external-storage", "ingest",
             "HDF5 dataset whose raw data live in another file (`external=`, e.g. /etc/passwd)",
             lambda p: _h5_with(p, "external-storage"), RevstatsError,
             "keeps its data in external file"),
        Case("ingest-h5-external-link", "ingest", "HDF5 external link to another file",
             lambda p: _h5_with(p, "external-link"), RevstatsError, "is an external link"),
        Case("ingest-h5-virtual", "ingest", "HDF5 virtual dataset mapping another file",
             lambda p: _h5_with(p, "virtual"), RevstatsError, "is a virtual dataset"),
        Case("ingest-safetensors-bad-header", "ingest",
             ".safetensors whose header length points past the end", _bad_safetensors,
             RevstatsError, "cannot read it as safetensors: the file is truncated or corrupt"),
        Case("store-chunk-fifo", "store", "a chunk file that is a FIFO (would hang readers)",
             _hostile_open("fifo"), SchemaError, "not a regular file"),
        Case("store-chunk-dev-zero", "store", "a chunk symlinked to /dev/zero (endless read)",
             _hostile_open("dev-zero"), SchemaError, "symbolic link .* -> '/dev/zero'"),
        Case("store-symlink-outside", "store", "a chunk directory symlinked out of the store",
             _hostile_open("outside"), SchemaError, "holds a symbolic link"),
        Case("store-chunk-oversized", "store", "a chunk file larger than its metadata allows",
             _hostile_open("oversized"), SchemaError, "more than the .* bytes a chunk of `acts`"),
        Case("cli-info-check-fifo", "cli", "`revstats info --check` on a store with a FIFO chunk",
             lambda p: _cli("info", "--check", str(_hostile_chunk(p, "fifo"))), SystemExit,
             "not a regular file", cli=True),
        Case("store-chunk-copied", "store",
             "an acts chunk replaced by a copy of another slab's (valid checksum, wrong place)",
             lambda p: _read_acts_values(_copied_chunk(p)), RevstatsError,
             "run=r0 step=0 .*not the (chunk|one) written at this place"),
        Case("store-witness-chunk-as-acts", "store",
             "an acts chunk replaced by a copy of the witness chunk (same size)",
             lambda p: _read_acts_values(_copied_chunk(p, "witness")), RevstatsError,
             "run=r0 step=0 .*not the (chunk|one) written at this place"),
        Case("store-fill-value-zero", "store", "`fill_value` edited to 0 and a chunk deleted",
             _fill_zero, SchemaError, "`acts`: fill value 0.0 is not the schema's 'nan'"),
        Case("store-no-crc-codec", "store", "the crc32c codec removed from `acts`",
             _no_crc, SchemaError, "`acts`: its codecs .* have no crc32c checksum"),
        Case("store-marker-vanished", "store", "a completion marker deleted in a finished store",
             _marker_vanished, SchemaError, "run=r0 step=1: written .* completion marker vanished"),
        Case("store-consolidated-disagrees", "store",
             "consolidated metadata edited so it disagrees with the array's own zarr.json",
             _consolidated_disagrees, SchemaError,
             "`task`: the consolidated metadata .* disagree .* \\(in attributes\\)"),
        Case("store-behavior-5", "store", "`behavior` value 5 (digest updated too)",
             lambda p: _domain(p, "behavior", (0, 1, 0), 5.0), SchemaError,
             "`behavior` has 1 outcomes other than 0, 1 or NaN"),
        Case("store-behavior-half", "store", "`behavior` value 0.5 (digest updated too)",
             lambda p: _domain(p, "behavior", (1, 0, 1), 0.5), SchemaError,
             "`behavior` has 1 outcomes other than 0, 1 or NaN"),
        Case("store-task-inf", "store", "`task` value Inf (digest updated too)",
             lambda p: _domain(p, "task", (0, 0), np.inf), SchemaError, "`task` has 1 infinite"),
        Case("store-steps-unsorted", "store", "`step` coordinate edited to 1, 0",
             lambda p: _domain(p, "step", slice(None), [1, 0]), SchemaError,
             "`step` is not strictly increasing"),
        Case("store-steps-duplicated", "store", "`step` coordinate edited to 3, 3",
             lambda p: _domain(p, "step", slice(None), [3, 3]), SchemaError,
             "`step` is not strictly increasing"),
        Case("store-steps-negative", "store", "`step` coordinate edited to -5, 1",
             lambda p: _domain(p, "step", slice(None), [-5, 1]), SchemaError,
             "`step` has values outside 0"),
        Case("store-steps-huge", "store", "`step` coordinate edited to 0, 10**15",
             lambda p: _domain(p, "step", slice(None), [0, 10**15]), SchemaError,
             "`step` has values outside 0"),
        Case("store-run-ids-duplicated", "store", "`run` coordinate edited to r0, r0",
             lambda p: _domain(p, "run", slice(None), np.array(["r0", "r0"], dtype=object)),
             SchemaError, "coordinate `run` has duplicated values"),
        Case("store-higher-is-better-string", "store", "`task` attr `higher_is_better: \"no\"`",
             _task_attr, SchemaError, "`higher_is_better` must be true or false, got 'no'"),
        Case("store-write-higher-is-better-string", "store",
             "create a store with `task={'higher_is_better': 'no'}`",
             lambda p: _create(p, task={"metric": "loss", "higher_is_better": "no"}), ValueError,
             "must be True or False, got 'no'"),
        Case("store-write-unsorted-steps", "store", "create with steps 3, 1, 2",
             lambda p: _create(p, steps=[3, 1, 2]), ValueError, "increasing training order"),
        Case("store-write-huge-step", "store", "create with step 10**15",
             lambda p: _create(p, steps=[0, 10**15]), ValueError, "`steps` has a step above"),
        Case("store-append-earlier-step", "store", "append step 1 after step 5",
             lambda p: _create(p, steps=[5]).write_slab("r0", 1, np.zeros((1, 2, 4))),
             ValueError, "must come after the store's last step"),
        Case("store-write-inf-task", "store", "write a slab with task = Inf",
             lambda p: _create(p, task={"metric": "loss"}).write_slab("r0", 0, np.zeros((1, 2, 4)), task=np.inf),
             ValueError, "`task` has infinite value"),
        Case("ingest-unsorted-steps", "cli", "`revstats ingest --steps 3,1`",
             lambda p: _cli("ingest", _good_log(p), "--out", str(p / "o.zarr"), "--acts-key", "acts",
                            "--acts-dims", "run,step,layer,example,hidden", "--witness-key", "base",
                            "--witness-dims", "layer,example,hidden", "--steps", "3,1"),
             SystemExit, "increasing training order", cli=True),
        Case("ingest-inf-task", "ingest", "an Inf task value in the logged file",
             lambda p: _ingest(_good_log(p, task=np.array([[0.0, np.inf]])), p,
                               task={"key": "task", "dims": ["run", "step"]}),
             RevstatsError, "`task` in .*log.npz is inf at run 'run0' step 1: logged task values must be finite"),
        Case("cli-analyze-copied-chunk", "cli", "`revstats analyze` of a store with a misplaced chunk",
             lambda p: _cli("analyze", str(_copied_chunk(p))), SystemExit,
             "is damaged: .*not the (chunk|one) written at this place", cli=True),
        Case("cli-report-copied-chunk", "cli", "`revstats report` of a store with a misplaced chunk",
             lambda p: _cli("report", str(_copied_chunk(p)), "--out", str(p / "rep")), SystemExit,
             "is damaged: .*not the (chunk|one) written at this place", cli=True),
        Case("cli-info-incomplete", "cli", "`revstats info` of an interrupted store",
             lambda p: _cli("info", str(_interrupted(p))), SystemExit,
             "incomplete: .*2 slab\\(s\\) not written .*rerunning exactly: revstats ingest log.npz",
             cli=True),
        Case("cli-analyze-incomplete", "cli", "`revstats analyze` of an interrupted store",
             lambda p: _cli("analyze", str(_interrupted(p))), SystemExit,
             "incomplete: .*revstats ingest log.npz .*--allow-incomplete", cli=True),
        Case("alignment-huge-norms", "geometry", "alignment of vectors with norms ~1e200",
             lambda p: _alignment_extreme(1e200), None, "cos = 0.707107"),
        Case("alignment-tiny-norms", "geometry", "alignment of vectors with norms ~1e-200",
             lambda p: _alignment_extreme(1e-200), None, "cos = 0.707107"),
        Case("bootstrap-confidence-needs-resamples", "intervals",
             "99.999999% bootstrap interval from 100 resamples",
             lambda p: intervals_bootstrap([1.0, 2, 3, 4, 5], confidence=0.99999999), ValueError,
             "`confidence` 0.99999999 needs at least .* resamples"),
        Case("bootstrap-confidence-few-resamples", "intervals",
             "99% bootstrap interval from 150 resamples (about 0.8 beyond each end)",
             lambda p: intervals_bootstrap([1.0, 2, 3, 4, 5], confidence=0.99, n=300),
             DegenerateDataWarning, "its ends are unstable"),
        Case("adjust-pvalues-nan", "nulls", "a NaN among the p-values to adjust",
             lambda p: _adjust_nan(), None, "NaN stays NaN"),
        Case("store-float32-underflow", "store", "float64 value 1e-320 written to a float32 store",
             lambda p: _write(p, np.array([[[1e-320, 1.0, 1.0, 1.0]] * 2])), RevstatsWarning,
             "below float32's smallest subnormal .* become 0"),
        Case("ingest-float32-underflow", "ingest", "float64 log with values ~1e-320",
             lambda p: _ingest(_good_log(p, acts=np.full((1, 2, 1, 3, 4), 1e-320)), p),
             RevstatsWarning, "below float32's smallest subnormal"),
        Case("cli-ingest-20-digit-steps", "cli", "`revstats ingest --steps` with a 20-digit step",
             lambda p: _ingest_cli(p, "--steps", "0,12345678901234567890"), SystemExit,
             "does not fit a 64-bit integer", cli=True),
        Case("cli-ingest-huge-step", "cli", "`revstats ingest --steps 0,10**15`",
             lambda p: _ingest_cli(p, "--steps", f"0,{10**15}"), SystemExit,
             "`steps` has a step above", cli=True),
        Case("cli-ingest-huge-seeds", "cli", "`revstats ingest --seeds` beyond 64 bits",
             lambda p: _ingest_cli(p, "--seeds", str(10**30)), SystemExit,
             "does not fit a 64-bit integer", cli=True),
        Case("cli-ingest-out-is-file", "cli", "`revstats ingest --out` an existing file",
             lambda p: (p / "f.zarr").write_text("x") and _cli(
                 "ingest", _good_log(p), "--out", str(p / "f.zarr"), "--acts-key", "acts",
                 "--acts-dims", "run,step,layer,example,hidden", "--witness-key", "base",
                 "--witness-dims", "layer,example,hidden"), SystemExit,
             "exists and is not a directory", cli=True),
        Case("ingest-dims-string", "ingest", "mapping `dims = \"run,step,...\"` as one string",
             _dims_string, None, "accepted as \\('run', 'step', 'layer', 'example', 'hidden'\\)"),
        Case("capture-probes-not-utf8", "capture", "a probe file with a non-UTF-8 byte on line 2",
             lambda p: _probe_file(p, b'{"prompt_ids": [1]}\n{"prompt": "caf\xe9"}\n'),
             RevstatsError, "pr.jsonl:2: not UTF-8 text \\(byte 0xe9 at column 16\\)"),
        Case("capture-probes-bom", "capture", "a probe file starting with a UTF-8 BOM",
             _bom_probes, None, "accepted: a"),
        Case("capture-probes-array-line", "capture", "a JSONL line that is an array",
             lambda p: _probe_file(p, b"[1, 2, 3]\n"), RevstatsError,
             "pr.jsonl:1: each line must be a JSON object .* got a JSON list"),
        Case("capture-probes-deep-json", "capture", "a JSONL line nested 100,000 deep",
             lambda p: _probe_file(p, b"[" * 100_000 + b"\n"), RevstatsError,
             "pr.jsonl:1: JSON nested too deeply"),
        Case("capture-probes-bad-token-ids", "capture", "`prompt_ids` holding a nested list",
             lambda p: _probe_file(p, b'{"prompt_ids": [[1, 2]]}\n'), RevstatsError,
             "`prompt_ids` must be a list of integer token ids"),
        Case("capture-probe-longer-than-context", "cli",
             "`revstats capture` with a 5000-token probe (context 64)", _long_probe, SystemExit,
             "longer than the model's context of .* tokens: long \\(5000 tokens\\)", cli=True),
        Case("capture-lora-wrong-base", "capture",
             "a LoRA adapter applied to a base with other weights than the one it names",
             _lora_wrong_base, RevstatsError, "names .* as its base, but .* whose weights differ"),
        Case("capture-lora-other-width", "capture", "a LoRA adapter made for another width",
             _lora_other_width, RevstatsError, "another architecture|do not fit"),
        Case("capture-remote-code", "capture", "a model whose config needs its own Python code",
             _remote_code_model, RevstatsError, "needs Python code shipped with it .*never enables"),
        Case("capture-truncated-weights", "capture", "a truncated model.safetensors",
             _truncated_weights, RevstatsError, "cannot load the model .*truncated"),
        Case("cli-analyze-dev-zero", "cli", "`revstats analyze` on a chunk linked to /dev/zero",
             lambda p: _cli("analyze", str(_hostile_chunk(p, "dev-zero"))), SystemExit,
             "symbolic link", cli=True),
        Case("store-overwrite-interrupted", "store",
             "open a directory an `--overwrite` killed while deleting the old store left",
             lambda p: _read_acts_values(_interrupted_overwrite(p)), SchemaError,
             "holds no store: a writer run with --overwrite was stopped"),
        Case("store-metadata-deeply-nested", "store", "an array's zarr.json nested 100,000 deep",
             lambda p: _edited_meta(p, "acts", edit_text=lambda t: "[" * 100_000 + "]" * 100_000),
             SchemaError, "'acts/zarr.json' is nested too deeply"),
        Case("store-root-metadata-deeply-nested", "store", "the root zarr.json nested 50,000 deep",
             lambda p: _edited_meta(p, "", edit_text=lambda t: '{"a":' * 50_000 + "1" + "}" * 50_000),
             SchemaError, "'zarr.json' is nested too deeply"),
        Case("store-shape-nan", "store", "`shape` of `acts` edited to hold NaN",
             lambda p: _edited_meta(p, "acts", edit_text=lambda t: t.replace('"shape": [', '"shape": [NaN, ', 1)),
             SchemaError, "gives `acts` the shape \\[nan"),
        Case("store-steps-10-12", "store",
             "`step` coordinate's shape edited to 10**12 (a reader would allocate 8 TB)",
             lambda p: _edited_meta(p, "step", edit=_huge_steps), SchemaError,
             "coordinate `step` has 1000000000000 values .* holds 1 chunk file"),
        Case("store-dtype-edited-complex", "store",
             "`acts` data_type edited to complex64 in its zarr.json (valid JSON zarr refuses)",
             lambda p: _edited_meta(p, "acts", edit=lambda m: m.__setitem__("data_type", "complex64")),
             SchemaError, "metadata of `acts` .* is not a valid zarr v3 array"),
        Case("store-dtype-edited-string", "store", "`acts` data_type edited to string",
             lambda p: _edited_meta(p, "acts", edit=lambda m: m.__setitem__("data_type", "string")),
             SchemaError, "metadata of `acts` .* is not a valid zarr v3 array"),
        Case("store-consolidated-dtype-edited", "store",
             "the root's consolidated copy of `acts` metadata edited to data_type complex64",
             lambda p: _edited_meta(p, None, edit=lambda m: m["consolidated_metadata"]["metadata"][
                 "acts"].__setitem__("data_type", "complex64")),
             SchemaError, "metadata is not valid zarr v3 .*consolidated copy"),
        Case("store-overwrite-held", "store", "`overwrite=True` on a store another writer holds",
             _held_overwrite, RevstatsError, "open by another writer"),
        Case("store-overwrite-not-a-store", "store",
             "`overwrite=True` on a non-empty directory that is not a store",
             _overwrite_non_store, RevstatsError, "not a store .*refusing to delete"),
        Case("cli-demo-existing-out", "cli", "`revstats demo --out` a directory with a report",
             _demo_existing, SystemExit, "already holds report.md .*--overwrite", cli=True),
        Case("cli-simulate-mismatch-first", "cli",
             "`revstats simulate --out` a store written with other settings (refused before simulating)",
             _simulate_mismatch, SystemExit, "written with different settings", cli=True),
        *_non_real_cases(),
    ]


def _boot(data, statistic="mean", **kw):
    from revstats import intervals

    return intervals.bootstrap_ci(data, statistic, n_resamples=999, rng=0, **kw)


def _cluster_boot(data, statistic="mean", **kw):
    from revstats import intervals

    return intervals.cluster_bootstrap_ci(data, statistic, n_resamples=999, rng=0, **kw)


def _scale_free(fn, scale, *, invariant=False):
    """The interval of data x * scale is scale x the interval of x (to rounding); the same
    interval for a scale-invariant statistic (`invariant`)."""
    x = np.random.default_rng(3).gamma(2.0, size=30)
    ref, got = fn(x), fn(x * scale)
    k = 1.0 if invariant else scale
    ok = np.allclose([got.low / k, got.high / k], [ref.low, ref.high], rtol=1e-12)
    return f"interval scales with the data: {bool(ok)}" if ok else f"not scale-free: {got}"


def _null_scale_free(fn, scale):
    """A scale-free null answer (cosines, d_eff) is the same for inputs x scale."""
    rng = np.random.default_rng(5)
    x, v, w = rng.normal(size=(12, 20)), rng.normal(size=(2, 20)), rng.normal(size=(12, 20))
    ref, got = fn(x, v, w), fn(x * scale, v * scale, w * scale)
    return f"same at any scale: {bool(np.allclose(ref, got, rtol=1e-12))}"


def _alignment_ci_scales(scale):
    from revstats.geometry.alignment_ci import alignment_ci

    acts, wit = _acts(n_run=4, n_ex=6), _witness(n_ex=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # step 0: no drift, NaN there
        ref, got = alignment_ci(acts, wit), alignment_ci(acts * scale, wit * scale)
    ok = all(np.allclose(ref[v].values, got[v].values, rtol=1e-9, atol=1e-12, equal_nan=True)
             for v in ("estimate", "low", "high", "se"))
    ok = ok and bool(np.isfinite(ref["estimate"].values).any())
    return f"same at any scale: {ok}"


def _debiased_scales(scale):
    from revstats.geometry import debiased_alignment

    acts = _acts(n_run=3, n_ex=6)
    # a witness offset and a drift toward it, both well above the probe noise: the
    # cross-fitted squared norms are positive and the ratio defined
    shift = xr.DataArray(np.linspace(1.0, 3.0, H), dims=("hidden",))
    wit = _witness(n_ex=6) + 3.0 * shift
    acts = acts + xr.DataArray([0.0, 1.0, 2.0], dims=("step",)) * shift
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # step 0: no drift, NaN there
        ref, got = debiased_alignment(acts, wit), debiased_alignment(acts * scale, wit * scale)
    ok = all(np.allclose(ref[v].values, got[v].values, rtol=1e-9, equal_nan=True)
             for v in ("debiased", "plugin")) and bool(np.isfinite(ref["debiased"].values).any())
    return f"same at any scale: {ok}"


def _mean_sd_scales(scale):
    from revstats import intervals

    x = np.random.default_rng(4).normal(size=(3, 25))
    ref, got = intervals.mean_sd(x), intervals.mean_sd(x * scale)
    ok = np.allclose(got.sd / scale, ref.sd, rtol=1e-12) and np.allclose(got.mean / scale, ref.mean)
    return f"sd scales with the data: {bool(ok)}"


def _non_real_cases() -> list[Case]:
    from revstats import effects, intervals, nulls

    x = np.random.default_rng(0).normal(size=20)
    xc = np.random.default_rng(0).normal(size=(5, 4))
    return [
        Case("bootstrap-complex-data", "intervals", "complex bootstrap data",
             lambda p: _boot(x + 1j), TypeError, "`data` must hold real numbers, got dtype complex128"),
        Case("mean-ci-complex", "intervals", "complex values in a t interval",
             lambda p: intervals.mean_ci(x.astype(complex)), TypeError, "`x` must hold real numbers"),
        Case("mean-ci-numeric-strings", "intervals", "numbers as strings in a t interval",
             lambda p: intervals.mean_ci(["1", "2", "3"]), TypeError, "strings .*parse them"),
        Case("bootstrap-datetimes", "intervals", "datetimes as bootstrap data",
             lambda p: _boot(np.arange(5).astype("datetime64[D]")), TypeError, "datetimes"),
        Case("bootstrap-timedeltas", "intervals", "timedeltas as bootstrap data",
             lambda p: _boot(np.arange(5).astype("timedelta64[s]")), TypeError, "timedeltas"),
        Case("bootstrap-object-complex", "intervals", "an object array holding a complex number",
             lambda p: _boot(np.array([1.0, 2.0, 3j], dtype=object)), TypeError,
             "object array holding complex"),
        Case("bootstrap-ragged", "intervals", "ragged nested lists as bootstrap data",
             lambda p: _boot([[1.0, 2.0], [3.0]]), ValueError, "`data` is ragged"),
        Case("cluster-bootstrap-complex", "intervals", "complex cluster-bootstrap data",
             lambda p: _cluster_boot(xc + 1j), TypeError, "`data` must hold real numbers"),
        Case("mean-difference-complex", "effects", "complex values in a mean difference",
             lambda p: effects.mean_difference(x + 1j, x), TypeError, "`a` must hold real numbers"),
        Case("proportion-complex-counts", "intervals", "complex counts",
             lambda p: intervals.proportion_ci(3 + 0j, 10), TypeError, "`k` must hold real numbers"),
        Case("adjust-pvalues-strings", "nulls", "p-values as strings",
             lambda p: nulls.adjust_pvalues(["0.01", "0.2"]), TypeError, "`p` must hold real numbers"),
        Case("statistic-ignores-axis", "intervals",
             "a statistic that ignores `axis` (`float(np.mean(x))`)",
             lambda p: _boot(x, lambda v, axis=-1: float(np.mean(v))), ValueError,
             "must be vectorised: .*one value per row"),
        Case("statistic-no-axis", "intervals", "a statistic without an `axis` keyword",
             lambda p: _boot(x, lambda v: v.mean()), TypeError, "must accept an `axis` keyword"),
        Case("statistic-complex", "intervals", "a statistic returning complex values",
             lambda p: _boot(x, lambda v, axis=-1: v.mean(axis) + 0j), TypeError,
             "returned values of dtype complex128"),
        Case("statistic-wrong-shape", "intervals", "a statistic returning the resamples unreduced",
             lambda p: _boot(x, lambda v, axis=-1: v), ValueError, "must be vectorised"),
        Case("statistic-nan-on-data", "intervals", "a statistic that is NaN on the data",
             lambda p: _boot(x, lambda v, axis=-1: np.full(v.shape[:-1], np.nan)), ValueError,
             "NaN or infinite on the data itself"),
        Case("statistic-nan-on-resamples", "intervals",
             "a statistic NaN on some resamples (correlation of a constant resample)",
             lambda p: _boot(np.r_[np.zeros(4), 1.0], lambda v, axis=-1: v.std(axis) / v.std(axis)),
             ValueError, "NaN or infinite values on .* resamples"),
        Case("cluster-statistic-ignores-axis", "intervals",
             "a cluster-bootstrap statistic that ignores `axis`",
             lambda p: _cluster_boot(xc, lambda v, axis=-1: float(np.mean(v))), ValueError,
             "must be vectorised"),
        Case("bootstrap-var-overflow", "intervals", "the variance of values ~1e300 (overflows)",
             lambda p: _boot(x * 1e300, "var"), ValueError, "NaN or infinite on the data itself"),
        Case("bca-huge-values", "intervals", "BCa interval of values ~1e300",
             lambda p: _scale_free(lambda v: _boot(v, "median", method="bca"), 1e299), None,
             "interval scales with the data: True"),
        Case("bca-tiny-values", "intervals", "BCa interval of values ~1e-300",
             lambda p: _scale_free(lambda v: _boot(v, "median", method="bca"), 1e-300), None,
             "interval scales with the data: True"),
        Case("cluster-bca-huge-values", "intervals", "cluster BCa interval of values ~1e300",
             lambda p: _scale_free(lambda v: _cluster_boot(v.reshape(6, 5), method="bca"), 1e299),
             None, "interval scales with the data: True"),
        Case("mean-ci-huge-values", "intervals", "t interval of values ~1e300 (squares overflow)",
             lambda p: _scale_free(intervals.mean_ci, 1e299), None, "interval scales with the data: True"),
        Case("mean-ci-tiny-values", "intervals", "t interval of values ~1e-300 (squares underflow)",
             lambda p: _scale_free(intervals.mean_ci, 1e-300), None, "interval scales with the data: True"),
        Case("mean-sd-huge-values", "intervals", "mean +- sd of values ~1e300 (squares overflow)",
             lambda p: _mean_sd_scales(1e299), None, "sd scales with the data: True"),
        Case("mean-sd-tiny-values", "intervals", "mean +- sd of values ~1e-300 (false sd = 0)",
             lambda p: _mean_sd_scales(1e-300), None, "sd scales with the data: True"),
        Case("mean-sd-complex-xarray", "intervals", "mean +- sd of a complex DataArray",
             lambda p: intervals.mean_sd(xr.DataArray(xc + 1j, dims=("run", "example")), dim="run"),
             TypeError, "`x` must hold real numbers"),
        Case("effective-dimension-huge-values", "nulls", "d_eff of samples ~1e200 (Gram overflows)",
             lambda p: _null_scale_free(lambda x, v, w: nulls.effective_dimension(x), 1e200), None,
             "same at any scale: True"),
        Case("covariance-null-huge-values", "nulls", "covariance-matched null of activations ~1e200",
             lambda p: _null_scale_free(lambda x, v, w: nulls.covariance_matched_cosine(
                 x, v, n_draws=300, rng=0).quantile(0.99), 1e200), None, "same at any scale: True"),
        Case("permutation-null-tiny-values", "nulls",
             "permutation null of activations and drifts ~1e-200 (norms underflow)",
             lambda p: _null_scale_free(lambda x, v, w: nulls.permutation_cosine(
                 w, x, v, n_permutations=300, rng=0).quantile(0.99), 1e-200), None,
             "same at any scale: True"),
        *(Case(f"{name}-{size}-values", "geometry",
               f"{what} of activations ~{label} (products {flow})",
               lambda p, check=check, scale=scale: check(scale), None, "same at any scale: True")
          for name, what, check in (
              ("alignment-ci", "crossed-design alignment interval", _alignment_ci_scales),
              ("debiased-alignment", "cross-fitted alignment", _debiased_scales))
          for size, scale, label, flow in (("huge", 1e200, "1e200", "overflow"),
                                           ("tiny", 1e-200, "1e-200", "underflow"))),
        Case("mean-difference-huge-values", "effects", "Welch interval of values ~1e300",
             lambda p: _scale_free(lambda v: effects.mean_difference(v, v[::-1] * 0.5), 1e299), None,
             "interval scales with the data: True"),
        Case("mean-difference-tiny-values", "effects", "paired t interval of values ~1e-300",
             lambda p: _scale_free(lambda v: effects.mean_difference(v, v[::-1] * 0.5, paired=True),
                                   1e-300), None, "interval scales with the data: True"),
        Case("hedges-g-huge-values", "effects", "Hedges' g of values ~1e300 (scale-free)",
             lambda p: _scale_free(lambda v: effects.hedges_g(v, v[::-1] * 0.5), 1e299, invariant=True),
             None, "interval scales with the data: True"),
    ]


def _load_probes(path):
    from revstats.capture.checkpoints import load_probes

    return load_probes(path)


def all_cases() -> list[Case]:
    cases = [*_geometry_cases(), *_stats_cases(), *_store_cases(), *_ingest_cases(),
             *_capture_cases(), *_cli_cases(), *_hostile_cases()]
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "duplicated case ids"
    return cases


def _outcome(case: Case) -> str:
    if case.expect is None:
        return "accepted, rendered inert (output checked)"
    if case.cli:
        return "CLI error, exit status ≠ 0, no traceback"
    if issubclass(case.expect, Warning):
        nan = ", result NaN" if case.area == "geometry" else ""
        return f"warns `{case.expect.__name__}`{nan}"
    return f"raises `{case.expect.__name__}`"


def render_markdown() -> str:
    """The catalogue as docs/bad-inputs.md."""
    cases = all_cases()
    lines = [
        "# Bad inputs: what revstats does with them",
        "",
        "<!-- generated by `python -m tests.unit.bad_input_cases > docs/bad-inputs.md`;",
        "     tests/unit/test_bad_inputs.py runs every row and fails if this file is stale -->",
        "",
        "Every row below is a test (`tests/unit/test_bad_inputs.py`): the bad input is fed to the",
        "public API or the CLI, and the test checks the exception type (or warning) and that the",
        "message matches the pattern shown, that the error is raised by revstats itself (never a",
        "traceback from deep inside numpy, zarr, h5py or torch), and that no number comes out.",
        "",
        "Policies the catalogue pins down:",
        "",
        "- **Non-finite values** are refused where data enter the store (`create_store` writers,",
        "  `ingest`, `capture`). The lazy geometry functions never inspect values before they are",
        "  computed (they must stay lazy on dask arrays); instead NaN/Inf propagate to a NaN result",
        "  with a `DegenerateDataWarning` at compute time. Probe means use `skipna=False`, so one",
        "  bad probe is never silently dropped from a mean.",
        "- **Zero vectors** (a zero drift, a witness equal to the aligned model) have no direction:",
        "  NaN with a `DegenerateDataWarning`, never an arbitrary cosine.",
        "- **Ids** (runs, arms, layers, probes) may not be empty, longer than 256 characters, or",
        "  contain control characters (newlines, tabs, NUL…) or `<` `>`; run, arm and layer ids also",
        "  may not contain `/` or `\\` or be `.`/`..` (they may become file names). Reports escape",
        "  every user-supplied string anyway.",
        "- **Untrusted files**: nothing is unpickled. `.npy`/`.npz` are read with",
        "  `allow_pickle=False`, object arrays (in npz, npy or HDF5) are refused, `.pt` files are",
        "  read with `torch.load(weights_only=True)` only, and truncated files are reported as such.",
        "- **A run with a missing step** (a slab never completed) reads as NaN and the dataset's",
        "  `revstats_notes` attribute says how many slabs are masked; analyses see NaN, not zeros.",
        "- **Hostile stores** (issue 14; details in [reliability.md](reliability.md)): only regular",
        "  files inside the store root are read, each no larger than its metadata allows (links,",
        "  FIFOs and devices are refused by name); each chunk is bound to its place by the digest",
        "  manifest (schema 2); missing chunks of complete slabs, removed checksum codecs, edited",
        "  fill values, vanished markers and consolidated metadata that disagree with an array's own",
        "  are errors of every reader and of `info --check`; value domains are checked at open and",
        "  at write. `analyze`/`report` turn each into a usage error (exit status 2).",
        "- **Concurrent writers**: `--overwrite` takes the writer lock first; a store held by another",
        "  writer is refused (exit 2), and a non-store directory is never deleted.",
        "- **Interrupted stores** are reported incomplete with the command that resumes them;",
        "  `analyze`/`report` refuse them unless `--allow-incomplete`.",
        "- CLI rows exit with status 2 (usage error), `revstats info` with 1 (problems found or",
        "  incomplete). Rows marked *accepted* are inputs that are valid and must be handled as such",
        "  (the case checks the output).",
        "",
        f"{len(cases)} bad inputs:",
        "",
        "| # | area | bad input | outcome | message matches |",
        "|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        pattern = c.match.replace("|", "\\|")
        lines.append(f"| {i} | {c.area} | {c.bad_input} (`{c.id}`) | {_outcome(c)} | `{pattern}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_markdown())
