"""Checkpoint discovery (glob, manifests), probe files and LoRA adapter loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from revstats.capture import capture_residual, make_batches  # noqa: E402
from revstats.capture._tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402
from revstats.capture.checkpoints import (  # noqa: E402
    discover_checkpoints,
    load_causal_lm,
    load_probes,
    model_fingerprint,
    read_manifest,
)
from revstats.errors import RevstatsError  # noqa: E402


def _trainer_layout(root: Path) -> Path:
    runs = root / "runs"
    for run, steps in {"ctrl-seed0": [5, 10, 20], "block-seed1": [10, 20]}.items():
        for s in steps:
            (runs / run / f"checkpoint-{s}").mkdir(parents=True)
        (runs / run / "logs").mkdir()
        (runs / run / "checkpoint-final").mkdir()
        (runs / run / "trainer_state.json").write_text("{}")
    (runs / "notes.txt").write_text("not a run")
    return runs


def test_discover_multi_run_trainer_layout(tmp_path):
    runs = _trainer_layout(tmp_path)
    m = discover_checkpoints(str(runs / "*"))
    assert m.runs == ["block-seed1", "ctrl-seed0"]
    assert [(c.run, c.step) for c in m.checkpoints] == [
        ("block-seed1", 10), ("block-seed1", 20),
        ("ctrl-seed0", 5), ("ctrl-seed0", 10), ("ctrl-seed0", 20),
    ]
    assert m.steps == [5, 10, 20]
    assert m.run_attr("seed") == [1, 0]
    assert m.run_attr("arm") is None
    assert all(Path(c.path).name == f"checkpoint-{c.step}" for c in m.checkpoints)
    # a glob straight at checkpoint folders groups them by their run directory
    direct = discover_checkpoints(str(runs / "ctrl-*" / "checkpoint-*"))
    assert [(c.run, c.step) for c in direct.checkpoints] == [
        ("ctrl-seed0", 5), ("ctrl-seed0", 10), ("ctrl-seed0", 20)]


def test_discover_name_collisions_and_errors(tmp_path):
    for exp in ("a", "b"):
        (tmp_path / exp / "run" / "checkpoint-3").mkdir(parents=True)
    m = discover_checkpoints([str(tmp_path / "a" / "*"), str(tmp_path / "b" / "*")])
    assert m.runs == ["a/run", "b/run"]
    assert m.run_attr("seed") is None
    with pytest.raises(RevstatsError, match="matched no run directory"):
        discover_checkpoints(str(tmp_path / "nothing*"))
    with pytest.raises(ValueError, match="`patterns` is empty"):
        discover_checkpoints([])
    (tmp_path / "z" / "r" / "checkpoint-0").mkdir(parents=True)
    with pytest.raises(RevstatsError, match="step 0 is reserved"):
        discover_checkpoints(str(tmp_path / "z" / "*"))


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_manifest(tmp_path, fmt):
    runs = _trainer_layout(tmp_path)
    entries = [
        {"run": "c0", "arm": "control", "seed": 0, "path": "runs/ctrl-seed0/checkpoint-10"},
        {"run": "c0", "arm": "control", "seed": 0, "step": 20, "path": str(runs / "ctrl-seed0" / "checkpoint-20")},
        {"run": "b1", "arm": "blocked", "seed": 1, "path": "runs/block-seed1/checkpoint-10"},
    ]
    if fmt == "json":
        path = tmp_path / "m.json"
        path.write_text(json.dumps({"witness": "models/base", "aligned": "models/al",
                                    "checkpoints": entries}))
    else:
        path = tmp_path / "m.toml"
        lines = ['witness = "models/base"', 'aligned = "models/al"']
        for e in entries:
            lines.append("[[checkpoint]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in e.items()]
        path.write_text("\n".join(lines))
    m = read_manifest(path)
    assert m.runs == ["c0", "b1"]
    assert [(c.run, c.step) for c in m.checkpoints] == [("c0", 10), ("c0", 20), ("b1", 10)]
    assert m.run_attr("arm") == ["control", "blocked"] and m.run_attr("seed") == [0, 1]
    assert m.witness == str(tmp_path / "models/base")
    assert Path(m.checkpoints[0].path) == tmp_path / "runs/ctrl-seed0/checkpoint-10"


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"checkpoints": [{"run": "a", "path": "x/ck"}]}))
    with pytest.raises(RevstatsError, match="has no `step` and its path is not checkpoint-N"):
        read_manifest(bad)
    bad.write_text(json.dumps({"checkpoints": [
        {"run": "a", "arm": "control", "path": "checkpoint-1"},
        {"run": "a", "arm": "push", "path": "checkpoint-2"}]}))
    with pytest.raises(RevstatsError, match="different arm/seed"):
        read_manifest(bad)
    bad.write_text(json.dumps({"checkpoints": [{"run": "a", "path": "checkpoint-1"},
                                               {"run": "a", "path": "x/checkpoint-1"}]}))
    with pytest.raises(RevstatsError, match="listed twice"):
        read_manifest(bad)
    bad.write_text(json.dumps({"runs": []}))
    with pytest.raises(RevstatsError, match="needs a non-empty list `checkpoints`"):
        read_manifest(bad)
    with pytest.raises(FileNotFoundError, match="`manifest`"):
        read_manifest(tmp_path / "missing.toml")


def test_probes_jsonl_text_pretokenised_and_chat(tmp_path):
    tok = build_tiny_tokenizer()
    jl = tmp_path / "p.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "prompt": "tell me a story", "response": "the cat"},
        {"id": "b", "prompt": "write code"},
    ]))
    ps = load_probes(jl, tokenizer=tok)
    assert ps.ids == ["a", "b"]
    assert ps.prompt_ids[0] == tok("tell me a story")["input_ids"]
    assert ps.response_ids == [tok("the cat", add_special_tokens=False)["input_ids"], []]
    assert len(ps.sha256) == 64
    chat = load_probes(jl, tokenizer=tok, chat_template=True)
    vocab = tok.get_vocab()
    assert chat.prompt_ids[0][0] == vocab["<user>"] and chat.prompt_ids[0][-1] == vocab["<assistant>"]
    txt = tmp_path / "p.txt"
    txt.write_text("what is the sun\n\nhow big is the moon\n")
    assert load_probes(txt, tokenizer=tok).ids == ["p00000", "p00001"]
    pre = tmp_path / "pre.jsonl"
    pre.write_text(json.dumps({"prompt_ids": [3, 4], "response_ids": [5]}) + "\n")
    got = load_probes(pre)
    assert got.prompt_ids == [[3, 4]] and got.response_ids == [[5]]
    with pytest.raises(RevstatsError, match="need a tokenizer"):
        load_probes(jl)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps({"id": "x", "prompt_ids": [1]}) + "\n" +
                   json.dumps({"id": "x", "prompt_ids": [2]}) + "\n")
    with pytest.raises(RevstatsError, match="not unique"):
        load_probes(dup)


def test_lora_adapter_matches_merged_model(tmp_path):
    peft = pytest.importorskip("peft")
    aligned_dir = tmp_path / "aligned"
    build_tiny_model("gpt2", aligned_dir, seed=1)
    base = load_causal_lm(aligned_dir)  # as a Trainer run would: the base knows its path
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"],
                          fan_in_fan_out=True, init_lora_weights=False)
    lora = peft.get_peft_model(base, cfg)
    adapter_dir = tmp_path / "run" / "checkpoint-7"
    lora.save_pretrained(str(adapter_dir))
    assert json.loads((adapter_dir / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(aligned_dir)

    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    batches = make_batches(prompts, batch_size=2, padding_side="left")
    ours = capture_residual(load_causal_lm(adapter_dir), batches, layers=[0, 1, 2],
                            position="mean_prompt")
    # independent reference: the unmerged PEFT model's own output_hidden_states
    lora.eval()
    with torch.no_grad():
        ref = np.stack([
            torch.stack(lora(input_ids=torch.tensor([p]), output_hidden_states=True)
                        .hidden_states)[:, 0].mean(1).numpy() for p in prompts], axis=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    # capturing from the unmerged PEFT model directly agrees too
    np.testing.assert_allclose(
        capture_residual(lora, batches, layers=[0, 1, 2], position="mean_prompt"), ours,
        rtol=1e-4, atol=1e-5)
    # and a merged, saved full checkpoint round-trips to the same activations
    merged_dir = tmp_path / "merged"
    lora.merge_and_unload().save_pretrained(str(merged_dir))
    np.testing.assert_allclose(
        capture_residual(load_causal_lm(merged_dir), batches, layers=[0, 1, 2],
                         position="mean_prompt"), ours, rtol=1e-4, atol=1e-5)
    # the adapter did something
    plain = capture_residual(load_causal_lm(aligned_dir), batches, layers=[2], position="last")
    assert not np.allclose(plain[0], capture_residual(load_causal_lm(adapter_dir), batches,
                                                      layers=[2], position="last")[0])
    fp = model_fingerprint(adapter_dir)
    assert fp["adapter_base"] == str(aligned_dir) and len(fp["adapter_config_sha256"]) == 64


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RevstatsError, match="neither config.json nor adapter_config.json"):
        load_causal_lm(tmp_path / "empty")
    ad = tmp_path / "ad"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/hub-id"}))
    with pytest.raises(RevstatsError, match="--adapter-base"):
        load_causal_lm(ad)
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        load_causal_lm(ad, dtype="int8")
