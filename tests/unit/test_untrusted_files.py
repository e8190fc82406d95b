"""Untrusted files: nothing in the tree can unpickle, and pickle payloads never run.

The tree scan is an AST check (not a grep), so a comment or a docstring mentioning pickle does
not count and an aliased call does not escape: every `torch.load` passes `weights_only=True`,
every `np.load` leaves `allow_pickle` False, and no module calls `pickle.load(s)`, `dill`,
`cloudpickle`, `joblib.load`, `yaml.load`/`unsafe_load`, `eval` or `exec`.
"""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from revstats.errors import RevstatsError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["revstats", "sims", "analysis", "benchmarks"]
FORBIDDEN_MODULES = {"dill", "cloudpickle", "shelve", "marshal"}


def _sources():
    for pkg in PACKAGES:
        base = ROOT / pkg
        if base.is_dir():
            yield from sorted(base.rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "?")  # "?": a call result, e.g. m.to(d).eval
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(f"{where}: imports {n}")
            if isinstance(node, ast.ImportFrom) and node.module == "pickle":
                bad = [a.name for a in node.names if a.name in ("load", "loads", "Unpickler")]
                out += [f"{where}: from pickle import {b}" for b in bad]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "joblib.load",
                    "yaml.load", "yaml.unsafe_load", "eval", "exec"):
            out.append(f"{where}: calls {name}")
        if name == "torch.load" or (last == "load" and name.startswith("torch")):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                out.append(f"{where}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            ap = _kw(node, "allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                out.append(f"{where}: np.load with allow_pickle not False")
    return out


def test_no_code_path_unpickles():
    files = list(_sources())
    assert len(files) > 20
    problems = [p for f in files for p in _problems(f)]
    assert problems == [], "\n".join(problems)


def test_the_scan_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, torch, numpy as np, dill\n"
        "pickle.loads(b'')\ntorch.load('x')\ntorch.load('x', weights_only=False)\n"
        "np.load('x', allow_pickle=True)\neval('1')\n"
    )
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        found = _problems(bad)
    finally:
        ROOT = old
    assert len(found) == 6, found


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_pickle_npz_npy_and_pt_payloads_never_run(tmp_path):
    from revstats.store.ingest import ingest

    marker = tmp_path / "PAYLOAD_RAN"
    npy = tmp_path / "evil.npy"
    np.save(npy, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    npz = tmp_path / "evil.npz"
    np.savez(npz, acts=np.array([_Payload(marker)], dtype=object), base=np.zeros((1, 2, 3)))
    pt = tmp_path / "evil.pt"
    pt.write_bytes(pickle.dumps({"acts": _Payload(marker)}))
    for src in (npy, npz, pt):
        with pytest.raises(RevstatsError, match="pickled Python objects"):
            ingest(src, tmp_path / f"{src.stem}-{src.suffix[1:]}.zarr",
                   mapping={"acts": {"dims": ["example"]}, "witness": {"key": "base", "dims": ["layer", "example", "hidden"]}})
        assert not marker.exists(), f"{src.name}: the payload ran"


def test_pickle_model_checkpoint_is_refused_and_never_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from revstats.capture._tiny import build_tiny_model
    from revstats.capture.checkpoints import load_causal_lm

    marker = tmp_path / "PAYLOAD_RAN"
    model_dir = tmp_path / "model"
    build_tiny_model("gpt2", None, n_layers=1, hidden=16).config.save_pretrained(str(model_dir))
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Payload(marker)}))
    with pytest.raises(RevstatsError, match="refused to load a pickle checkpoint"):
        load_causal_lm(model_dir)
    assert not marker.exists()
