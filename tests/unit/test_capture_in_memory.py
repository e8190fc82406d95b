"""In-memory capture (run_with_cache style), layer aliases (negative, TransformerLens names),
and a rejected layer that leaves no store behind."""

from __future__ import annotations

import numpy as np
import pytest

from revstats._layers import parse_layer_list, resolve_layers


def test_layer_aliases_resolve():
    n = 4
    spec = parse_layer_list("0,2,-1,-2,hidden_states.3,blocks.0.hook_resid_post,blocks.2.hook_resid_pre")
    assert resolve_layers(spec[:3], n) == [0, 2, 4]
    assert resolve_layers([-2, "hidden_states.3"][:1], n) == [3]
    assert resolve_layers(["blocks.0.hook_resid_post", "blocks.2.hook_resid_pre"], n) == [1, 2]
    assert resolve_layers(["ln_final.hook_normalized", "blocks.0.hook_resid_pre"], n) == [4, 0]
    with pytest.raises(ValueError, match="before the final norm"):
        resolve_layers(["blocks.3.hook_resid_post"], n)
    with pytest.raises(ValueError, match="out of range for this 4-block model"):
        resolve_layers([7], n)
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers([-6], n)
    with pytest.raises(ValueError, match="twice"):
        resolve_layers([-1, "ln_final.hook_normalized"], n)
    with pytest.raises(ValueError, match="got 'blocks.x'"):
        parse_layer_list("1,blocks.x")


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_in_memory_capture_matches_output_hidden_states(kind):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from revstats.capture import capture
    from revstats.capture._tiny import build_tiny_model, build_tiny_tokenizer
    from revstats.store.schema import validate_dataset

    model = build_tiny_model(kind, seed=0, hidden=32, n_layers=3)
    witness = build_tiny_model(kind, seed=1, hidden=32, n_layers=3)
    tok = build_tiny_tokenizer()
    prompts = ["the cat is big", "how do i make a story", "red"]
    ds = capture(model, prompts, tokenizer=tok, witness=witness, batch_size=2,
                 layers="blocks.0.hook_resid_post,ln_final.hook_normalized,-2,0")
    assert ds["acts"].dims == ("run", "step", "layer", "example", "hidden")
    assert list(ds["layer"].values) == ["hidden_states.1", "hidden_states.3", "hidden_states.2", "hidden_states.0"]
    assert validate_dataset(ds) == []
    for i, p in enumerate(prompts):  # each prompt alone, no padding: HF's own numbers
        ids = torch.tensor([tok(p)["input_ids"]])
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
            hw = witness(input_ids=ids, output_hidden_states=True).hidden_states
        for name in ds["layer"].values:
            L = int(str(name).split(".")[1])
            np.testing.assert_allclose(ds["acts"].sel(layer=name).values[0, 0, i], hs[L][0, -1].numpy(), atol=1e-5)
            np.testing.assert_allclose(ds["witness"].sel(layer=name).values[i], hw[L][0, -1].numpy(), atol=1e-5)
    import revstats as rs

    v = rs.reversion_direction(ds["witness"], ds["acts"].isel(run=0, step=0))
    assert v.dims == ("layer", "hidden")
    with pytest.raises(ValueError, match="pass `tokenizer=`"):
        capture(model, prompts, layers=[1])
    with pytest.raises(ValueError, match="out of range"):
        capture(model, [[5, 6, 7]], layers=[9])


def test_rejected_layer_creates_no_store(tmp_path):
    pytest.importorskip("transformers")
    from click.testing import CliRunner

    from revstats.capture._tiny import build_tiny_model
    from revstats.cli import main

    build_tiny_model("gpt2", tmp_path / "w", n_layers=2, hidden=16)
    build_tiny_model("gpt2", tmp_path / "a", n_layers=2, hidden=16, seed=1)
    (tmp_path / "runs" / "r0").mkdir(parents=True)
    build_tiny_model("gpt2", tmp_path / "runs" / "r0" / "checkpoint-1", n_layers=2, hidden=16, seed=2)
    (tmp_path / "p.txt").write_text("the cat\nthe dog\n")
    args = ["capture", "--witness", str(tmp_path / "w"), "--aligned", str(tmp_path / "a"),
            "--runs", str(tmp_path / "runs" / "*"), "--probes", str(tmp_path / "p.txt"),
            "--out", str(tmp_path / "s.zarr"), "--no-progress"]
    bad = CliRunner().invoke(main, [*args, "--layers", "7"])
    assert bad.exit_code == 2 and "out of range for this 2-block model" in bad.output, bad.output
    assert not (tmp_path / "s.zarr").exists()
    ok = CliRunner().invoke(main, [*args, "--layers", "1,-1"])  # the corrected rerun needs no --overwrite
    assert ok.exit_code == 0, ok.output
    from revstats.store import open_store

    assert list(open_store(tmp_path / "s.zarr")["layer"].values) == ["hidden_states.1", "hidden_states.2"]
