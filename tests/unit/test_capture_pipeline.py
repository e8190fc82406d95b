"""End to end: `revstats capture` over a fake multi-run Trainer layout into a store, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from revstats.capture import capture_residual, make_batches  # noqa: E402
from revstats.capture._tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402
from revstats.capture.checkpoints import load_causal_lm  # noqa: E402
from revstats.cli import main  # noqa: E402

PROBES = [
    {"id": "q0", "prompt": "tell me a story", "response": "the cat"},
    {"id": "q1", "prompt": "how big is the sun", "response": "big"},
    {"id": "q2", "prompt": "write code please", "response": "no"},
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    build_tiny_model("gpt2", root / "base", seed=0)
    build_tiny_model("gpt2", root / "aligned", seed=1)
    # run A: full checkpoints; run B: LoRA adapters on the aligned model
    for k, step in enumerate((10, 20)):
        build_tiny_model("gpt2", root / "runs" / "a-seed0" / f"checkpoint-{step}", seed=10 + k,
                         with_tokenizer=False)
    for k, step in enumerate((10, 20)):
        torch.manual_seed(100 + k)
        base = load_causal_lm(root / "aligned")
        lora = peft.get_peft_model(base, peft.LoraConfig(
            r=2, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False))
        lora.save_pretrained(str(root / "runs" / "b-seed1" / f"checkpoint-{step}"))
    (root / "probes.jsonl").write_text("\n".join(json.dumps(p) for p in PROBES) + "\n")
    return root


def _direct(path, position="last", layers=(0, 1, 2)):
    tok = build_tiny_tokenizer()
    prompts = [tok(p["prompt"])["input_ids"] for p in PROBES]
    responses = [tok(p["response"], add_special_tokens=False)["input_ids"] for p in PROBES]
    return capture_residual(load_causal_lm(path), make_batches(prompts, responses, batch_size=2),
                            layers=list(layers), position=position)


def _capture(root, out, runs_glob, *extra):
    return CliRunner().invoke(main, [
        "capture", "--witness", str(root / "base"), "--aligned", str(root / "aligned"),
        "--runs", runs_glob, "--probes", str(root / "probes.jsonl"), "--layers", "0,1,2",
        "--position", "mean_response", "--out", str(out), "--batch-size", "2", "--quiet", *extra,
    ])


def test_capture_cli_end_to_end_and_resume(experiment, tmp_path):
    from revstats.store import open_store

    root, out = experiment, tmp_path / "acts.zarr"
    # first pass sees only step 10 of each run ...
    r1 = _capture(root, out, str(root / "runs" / "*" / "checkpoint-10"))
    assert r1.exit_code == 0, r1.output
    assert "wrote 4 slab(s), skipped 0" in r1.output and "wrote witness" in r1.output
    # ... the rerun over everything only captures what is missing
    r2 = _capture(root, out, str(root / "runs" / "*"))
    assert r2.exit_code == 0, r2.output
    assert "wrote 2 slab(s), skipped 4" in r2.output and "wrote witness" not in r2.output
    r3 = _capture(root, out, str(root / "runs" / "*"))
    assert "wrote 0 slab(s), skipped 6" in r3.output

    ds = open_store(str(out))
    assert list(ds["run"].values) == ["a-seed0", "b-seed1"]
    assert list(ds["step"].values) == [0, 10, 20]
    assert list(ds["seed"].values) == [0, 1]
    assert list(ds["layer"].values) == ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
    assert list(ds["example"].values) == ["q0", "q1", "q2"]
    acts = ds["acts"].transpose("run", "step", "layer", "example", "hidden").values
    np.testing.assert_allclose(ds["witness"].values, _direct(root / "base", "mean_response"),
                               rtol=1e-5, atol=1e-6)
    aligned = _direct(root / "aligned", "mean_response")
    np.testing.assert_allclose(acts[0, 0], aligned, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts[1, 0], aligned, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        acts[0, 2], _direct(root / "runs" / "a-seed0" / "checkpoint-20", "mean_response"),
        rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        acts[1, 1], _direct(root / "runs" / "b-seed1" / "checkpoint-10", "mean_response"),
        rtol=1e-5, atol=1e-6)
    prov = json.loads(ds.attrs["provenance"])
    assert ds.attrs["source"] == "capture"
    assert prov["position"] == "mean_response" and prov["layers"][2] == "hidden_states.2"
    assert len(prov["probes_sha256"]) == 64 and len(prov["aligned"]["config_sha256"]) == 64
    assert prov["model_dtype"] == "float32" and prov["device"] == "cpu"
    assert {c["step"] for c in prov["checkpoints"]} == {10}  # from the creating pass
    assert prov["revstats_version"]


def test_resume_with_other_settings_refused(experiment, tmp_path):
    out = tmp_path / "acts.zarr"
    assert _capture(experiment, out, str(experiment / "runs" / "a-*")).exit_code == 0
    r = CliRunner().invoke(main, [
        "capture", "--witness", str(experiment / "base"), "--aligned",
        str(experiment / "aligned"), "--runs", str(experiment / "runs" / "a-*"), "--probes",
        str(experiment / "probes.jsonl"), "--layers", "0,1,2", "--position", "last",
        "--out", str(out), "--quiet"])
    assert r.exit_code == 2 and "captured with different position" in r.output


def test_manifest_with_arms_and_errors(experiment, tmp_path):
    from revstats.store import open_store

    manifest = tmp_path / "m.toml"
    manifest.write_text(
        f'witness = "{experiment / "base"}"\naligned = "{experiment / "aligned"}"\n'
        f'[[checkpoint]]\nrun = "ctrl"\narm = "control"\nseed = 3\n'
        f'path = "{experiment / "runs" / "a-seed0" / "checkpoint-20"}"\n'
    )
    out = tmp_path / "m.zarr"
    r = CliRunner().invoke(main, ["capture", "--manifest", str(manifest), "--probes",
                                  str(experiment / "probes.jsonl"), "--layers", "2",
                                  "--out", str(out), "--quiet", "--store-dtype", "float16"])
    assert r.exit_code == 0, r.output
    ds = open_store(str(out))
    assert list(ds["arm"].values) == ["control"] and list(ds["seed"].values) == [3]
    assert ds["acts"].dtype == np.float16
    r = CliRunner().invoke(main, ["capture", "--probes", str(experiment / "probes.jsonl"),
                                  "--layers", "2", "--out", str(out)])
    assert r.exit_code == 2 and "--runs 'GLOB'" in r.output
    r = CliRunner().invoke(main, ["capture", "--witness", str(experiment / "base"), "--aligned",
                                  str(experiment / "aligned"), "--runs", str(tmp_path / "none*"),
                                  "--probes", str(experiment / "probes.jsonl"), "--layers", "9",
                                  "--out", str(tmp_path / "x.zarr")])
    assert r.exit_code == 2 and "matched no run directory" in r.output


def test_help_has_examples():
    for cmd in ("capture", "ingest"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert r.exit_code == 0 and "Example:" in r.output and f"revstats {cmd}" in r.output


def test_ingest_cli(tmp_path):
    from revstats.store import open_store

    rng = np.random.default_rng(1)
    acts = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)  # (step, layer, example, hidden)
    np.savez(tmp_path / "log.npz", a=acts, w=acts[0])
    r = CliRunner().invoke(main, [
        "ingest", str(tmp_path / "log.npz"), "--out", str(tmp_path / "s.zarr"),
        "--acts-key", "a", "--acts-dims", "step,layer,example,hidden", "--witness-key", "w",
        "--runs", "solo", "--steps", "0,5,10", "--arms", "push", "--seeds", "7"])
    assert r.exit_code == 0, r.output
    ds = open_store(str(tmp_path / "s.zarr"))
    np.testing.assert_array_equal(
        ds["acts"].transpose("run", "step", "layer", "example", "hidden").values[0], acts)
    assert list(ds["arm"].values) == ["push"] and list(ds["step"].values) == [0, 5, 10]
    r = CliRunner().invoke(main, ["ingest", str(tmp_path / "log.npz"), "--out",
                                  str(tmp_path / "t.zarr"), "--acts-key", "a",
                                  "--witness-key", "w"])
    assert r.exit_code == 2 and "expects acts dims (run, step, layer, example, hidden)" in r.output
