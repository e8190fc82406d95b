"""Reversion monitor: alpha spending, config round trip (no pickle), store appends, logging,
alarms on a reverting run and silence on orthogonal drift, torch readers, the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from revstats import nulls
from revstats.errors import DegenerateDataWarning, RevstatsWarning
from revstats.monitor import (
    MonitorConfig,
    ReversionAlarm,
    ReversionMonitor,
    build_config,
    look_level,
)


def toy(hidden: int = 32, n: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    aligned = rng.normal(size=(n, hidden))
    shift = rng.normal(size=hidden)
    witness = aligned + shift + 0.1 * rng.normal(size=(n, hidden))
    return {"L": witness}, {"L": aligned}, shift


# --------------------------------------------------------------------------- spending
@pytest.mark.parametrize(("spending", "rho"), [("bonferroni", 2.0), ("power", 3.0), ("power", 1.0)])
def test_spending_sums_to_alpha_over_planned_looks(spending, rho):
    levels = [look_level(0.05, k, n_looks=12, spending=spending, rho=rho) for k in range(1, 20)]
    assert sum(levels) == pytest.approx(0.05)
    assert all(lev == 0 for lev in levels[12:])
    if spending == "bonferroni" or rho == 1.0:
        assert levels[0] == pytest.approx(0.05 / 12)
    else:
        assert levels[0] == pytest.approx(0.05 / 12**3) and levels[0] < levels[11]


def test_harmonic_spending_is_anytime():
    levels = [look_level(0.1, k, spending="harmonic") for k in range(1, 10001)]
    assert levels[0] == pytest.approx(0.05)
    assert sum(levels) == pytest.approx(0.1 * (1 - 1 / 10001))


def test_spending_validation():
    with pytest.raises(ValueError, match="`n_looks` must be the planned number"):
        look_level(0.05, 1, spending="bonferroni")
    with pytest.raises(ValueError, match="`alpha` must lie in"):
        look_level(1.5, 1, n_looks=3)
    with pytest.raises(ValueError, match="`spending` must be one of"):
        look_level(0.05, 1, n_looks=3, spending="pocock")
    with pytest.raises(ValueError, match="`k` .* must be an integer"):
        look_level(0.05, 0, n_looks=3)


# --------------------------------------------------------------------------- config
def test_build_config_and_round_trip(tmp_path):
    w, a, shift = toy()
    cfg = build_config(w, a, alpha=0.01, n_looks=5, every=3, probes={"input": np.ones((10, 4), np.float32)})
    v = cfg.directions["L"]
    expected = (w["L"].mean(0) - a["L"].mean(0))
    np.testing.assert_allclose(v, expected / np.linalg.norm(expected))
    assert cfg.level(1) == pytest.approx(0.01 / 5)
    assert cfg.threshold(1, "L") == pytest.approx(float(nulls.isotropic_cosine(32).isf(0.002)))
    cfg.save(tmp_path / "cfg")
    back = MonitorConfig.load(tmp_path / "cfg")
    assert back.layers == cfg.layers and back.every == 3 and back.alpha == 0.01
    np.testing.assert_allclose(back.directions["L"], v)
    np.testing.assert_allclose(back.probes["input"], 1.0)
    with np.load(tmp_path / "cfg" / "monitor.npz", allow_pickle=False) as z:  # no object arrays
        assert all(z[k].dtype != object for k in z.files)
    eff = build_config(w, a, null="effective")
    assert 1 < eff.null_dim["L"] < 32


def test_build_config_validation(tmp_path):
    w, a, _ = toy()
    with pytest.raises(ValueError, match="must name the same layers"):
        build_config(w, {"M": a["L"]})
    with pytest.raises(ValueError, match="same hidden size"):
        build_config(w, {"L": a["L"][:, :5]})
    with pytest.raises(ValueError, match="`every` must be a positive"):
        build_config(w, a, every=0)
    with pytest.raises(ValueError, match="v_rev is undefined"), pytest.warns(DegenerateDataWarning):
        build_config(a, a)
    with pytest.raises(FileNotFoundError, match="revstats monitor-config"):
        MonitorConfig.load(tmp_path)


# --------------------------------------------------------------------------- the monitor
class FakeWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_monitor_fires_on_reverting_run_and_writes_store(tmp_path):
    w, a, shift = toy()
    cfg = build_config(w, a, n_looks=10)
    writer, events = FakeWriter(), []
    mon = ReversionMonitor(cfg, store=tmp_path / "s.zarr", writer=writer, on_alarm=events.append, run="r1")
    rng = np.random.default_rng(1)
    with pytest.warns(ReversionAlarm, match="reversion detected at step 20"):
        for k in range(1, 6):
            frac = 0.1 * (k - 1)  # step 10: pure noise; later: drifting toward the witness
            acts = a["L"] + frac * shift + 0.05 * rng.normal(size=a["L"].shape)
            mon.check(10 * k, {"L": acts})
    assert mon.alarmed and mon.first_alarm.step == 20 and len(events) == 1
    assert not mon.history[0].alarm
    assert mon.history[1].alignment["L"] > 0.9
    assert any(t == "revstats/alignment/L" for t, _, _ in writer.scalars)
    from revstats.store import open_store

    ds = open_store(tmp_path / "s.zarr")
    assert [int(s) for s in ds["step"].values] == [0, 10, 20, 30, 40, 50]
    np.testing.assert_allclose(ds["acts"].sel(run="r1", step=0, layer="L").values, a["L"], rtol=1e-6)
    assert mon.summary()["alarm_step"] == 20


def test_monitor_silent_on_orthogonal_drift():
    w, a, shift = toy()
    cfg = build_config(w, a, n_looks=5)
    v = cfg.directions["L"]
    rng = np.random.default_rng(2)
    u = rng.normal(size=32)
    u -= (u @ v) * v
    mon = ReversionMonitor(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReversionAlarm)
        for k in range(1, 6):
            mon.check(k, {"L": a["L"] + k * u})
    assert not mon.alarmed
    assert max(abs(c.alignment["L"]) for c in mon.history) < 1e-8


def test_monitor_warns_when_looks_exhausted():
    w, a, _ = toy()
    mon = ReversionMonitor(build_config(w, a, n_looks=1), warn=False)
    mon.check(1, {"L": a["L"] + 1e-3})
    with pytest.warns(RevstatsWarning, match="past the 1 planned looks"):
        mon.check(2, {"L": a["L"] + 1e-3})


def test_monitor_validation():
    w, a, _ = toy()
    mon = ReversionMonitor(build_config(w, a))
    with pytest.raises(ValueError, match="`acts` must map every monitored layer"):
        mon.check(1, {"M": a["L"]})
    with pytest.raises(ValueError, match="has shape"):
        mon.check(1, {"L": a["L"][:3]})
    with pytest.raises(ValueError, match="`step` must be a non-negative"):
        mon.check(-1, {"L": a["L"]})
    with pytest.raises(TypeError, match="`writer` must have an add_scalar"):
        ReversionMonitor(build_config(w, a), writer=object())
    with pytest.raises(TypeError, match="`config` must be a MonitorConfig"):
        ReversionMonitor({})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- torch
def test_torch_monitor_fires_on_reverting_mlp_and_gpt2_reader():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from revstats.capture.probes import read_layers
    from revstats.training.monitor import TorchMonitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    x = torch.randn(12, 4)
    h0 = read_layers(model, x, ["2"])["2"].numpy()
    shift = np.random.default_rng(0).normal(size=16)
    cfg = build_config({"2": h0 + shift}, {"2": h0}, every=2, n_looks=10, probes={"input": x.numpy()})
    mon = TorchMonitor(model, cfg, warn=False)
    v = torch.as_tensor(cfg.directions["2"], dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    for step in range(1, 11):
        loss = -(model[:3](x).mean(0) @ v)  # training that drifts toward the witness
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(step)
    assert mon.alarmed and mon.monitor.first_alarm.step == 2
    assert len(mon.monitor.history) == 5

    cfg2 = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    gpt = transformers.GPT2LMHeadModel(cfg2).eval()
    ids = torch.randint(0, 40, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    got = read_layers(gpt, {"input_ids": ids, "attention_mask": mask}, ["hidden_states.1", "transformer.h.0"])
    with torch.no_grad():
        hs = gpt(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(got["hidden_states.1"], hs[[0, 1, 2], [4, 2, 4]])
    torch.testing.assert_close(got["transformer.h.0"], got["hidden_states.1"])


# --------------------------------------------------------------------------- CLI
def test_cli_monitor_config(tmp_path):
    from revstats.cli import main
    from revstats.store import create_store

    w, a, _ = toy(hidden=8, n=4)
    with create_store(tmp_path / "s.zarr", runs=["r0"], layers=["L"], examples=[f"e{i}" for i in range(4)],
                      hidden=8, behavior=False, source="capture", provenance={}) as wr:
        wr.write_witness(w["L"][None])
        wr.write_slab("r0", 0, a["L"][None])
    np.savez(tmp_path / "probes.npz", input=np.zeros((4, 3), np.float32))
    res = CliRunner().invoke(main, ["monitor-config", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "cfg"),
                                    "--probes", str(tmp_path / "probes.npz"), "--looks", "4", "--every", "5"])
    assert res.exit_code == 0, res.output
    cfg = MonitorConfig.load(tmp_path / "cfg")
    assert cfg.n_looks == 4 and cfg.every == 5 and cfg.examples == ("e0", "e1", "e2", "e3")
    d = w["L"].mean(0) - a["L"].mean(0)
    np.testing.assert_allclose(cfg.directions["L"], d / np.linalg.norm(d), rtol=1e-5)
    bad = CliRunner().invoke(main, ["monitor-config", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "c2"), "--layer", "X"])
    assert bad.exit_code == 2 and "not in STORE" in bad.output


# --------------------------------------------------------------------------- near zero drift
def test_untrained_model_with_rounding_noise_does_not_alarm():
    """A model that never moved differs from the config by float rounding only (~1e-7); that
    noise need not be isotropic -- here it points along v_rev, the worst case -- and must not
    alarm (the plug-in test alarmed at every look)."""
    w, a, _ = toy()
    a32 = {"L": a["L"].astype(np.float32)}
    cfg = build_config(w, a32, n_looks=5)
    noise = 2e-7 * np.linalg.norm(a32["L"], axis=1).mean() * cfg.directions["L"]
    mon = ReversionMonitor(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReversionAlarm)
        for k in range(1, 6):
            chk = mon.check(k, {"L": a32["L"] + noise})
            assert chk.alignment["L"] > 0.99 and chk.pvalue["L"] == 1.0 and chk.below_floor == ("L",)
    assert not mon.alarmed
    plain = ReversionMonitor(cfg, noise_floor=0, warn=False)
    assert plain.check(1, {"L": a32["L"] + noise}).alarm  # what the floor prevents


def test_noise_robust_cosine_bounds_the_clean_cosine():
    from revstats.monitor import noise_robust_cosine

    rng = np.random.default_rng(5)
    for _ in range(2000):
        d = int(rng.integers(2, 40))
        v = rng.normal(size=d)
        v /= np.linalg.norm(v)
        x = rng.normal(size=d) * rng.exponential()
        b = rng.normal(size=d)
        beta = rng.exponential()
        b *= beta * rng.uniform() / np.linalg.norm(b)
        if rng.uniform() < 0.3:  # adversarial: the noise along v
            b = beta * rng.uniform() * v
        lower = noise_robust_cosine(x + b, v, beta)
        assert lower <= x @ v / np.linalg.norm(x) + 1e-12
    assert noise_robust_cosine(np.zeros(3), np.eye(3)[0], 0.0) == -np.inf
    assert noise_robust_cosine(np.array([2.0, 0, 0]), np.eye(3)[0], 0.0) == 1.0


@pytest.mark.parametrize(("regime", "n"), [("never trained", 40), ("warm-up", 60), ("frozen layer", 30)])
def test_false_alarm_rate_near_zero_drift(regime, n):
    """Fast version of the slow study (tests/calibration): at most alpha false alarms when the
    drift is at the rounding-noise level; without the floor nearly every run alarms."""
    from scipy import stats

    from revstats.calibration import monitor_noise_false_alarms

    k = monitor_noise_false_alarms(regime, n, seed=7)
    assert stats.binomtest(k, n, 0.05, alternative="greater").pvalue > 0.001, (regime, k, n)
    if regime == "warm-up":
        k0 = monitor_noise_false_alarms(regime, n, seed=7, noise_floor=0.0)
        assert stats.binomtest(k0, n, 0.05, alternative="greater").pvalue < 1e-6, k0


def test_noise_floor_estimate_and_validation():
    w, a, _ = toy()
    cfg = build_config(w, a)
    mon = ReversionMonitor(cfg)
    scale = np.sqrt(np.mean(np.sum(a["L"] ** 2, axis=1)))
    assert mon.noise_floor["L"] == pytest.approx(4 * np.finfo(np.float32).eps * scale)
    off = {"L": a["L"] + 1e-4 * scale / np.sqrt(32)}
    floor = mon.estimate_noise_floor([off, {"L": a["L"]}])
    assert floor["L"] == pytest.approx(4 * 1e-4 * scale, rel=1e-6)
    assert mon.noise_report["L"]["spread"] == pytest.approx(1e-4 * scale, rel=1e-6)
    far = ReversionMonitor(cfg)
    with pytest.warns(RevstatsWarning, match="not the aligned model the config was built from"):
        floor = far.estimate_noise_floor([{"L": a["L"] + 0.5}])
    assert floor["L"] < 1e-4  # a real offset is not taken for noise
    assert ReversionMonitor(cfg, noise_floor={"L": 0.5}).noise_floor == {"L": 0.5}
    with pytest.raises(ValueError, match="`noise_floor` for layer 'L' must be a finite number"):
        ReversionMonitor(cfg, noise_floor=-1)
    with pytest.raises(ValueError, match="`noise_floor` must be 'auto'"):
        ReversionMonitor(cfg, noise_floor="big")
    f16 = build_config(w, {"L": a["L"].astype(np.float16)})
    assert f16.aligned_dtype == "float16"
    f16_scale = np.sqrt(np.mean(np.sum(a["L"].astype(np.float16).astype(np.float64) ** 2, axis=1)))
    assert ReversionMonitor(f16).noise_floor["L"] == pytest.approx(4 * np.finfo(np.float16).eps * f16_scale)


def test_alarm_is_shown_once_per_run_not_once_per_process():
    w, a, shift = toy()
    cfg = build_config(w, a, n_looks=3)
    shown = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")  # Python's default: once per location and message
        for _ in range(2):  # two runs in one process, identical data and message
            before = len(rec)
            mon = ReversionMonitor(cfg)
            for k in range(1, 4):
                mon.check(k, {"L": a["L"] + k * shift})
            shown.append(sum(issubclass(r.category, ReversionAlarm) for r in rec[before:]))
    assert shown == [1, 1]


@pytest.mark.parametrize(("kind", "config_dtype", "side"), [("llama", np.float32, "left"), ("gpt2", np.float16, "right")])
def test_lora_at_init_does_not_alarm_and_floor_bounds_the_noise(kind, config_dtype, side):
    """The researcher's case: config from a capture (batches of 4, trunk only), then the monitor
    on the freshly wrapped LoRA model (B = 0: the aligned model). The start estimate must bound
    the real numerical discrepancy, and nothing may alarm; training then moves it above the floor."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from revstats.capture import capture_residual, make_batches
    from revstats.capture._tiny import build_tiny_model
    from revstats.training.monitor import TorchMonitor

    aligned = build_tiny_model(kind, seed=0, hidden=32, n_layers=2)
    witness = build_tiny_model(kind, seed=1, hidden=32, n_layers=2)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(6, 100, size=int(rng.integers(3, 9)))) for _ in range(10)]
    acts = {}
    for name, model in (("aligned", aligned), ("witness", witness)):
        batches = make_batches(prompts, batch_size=4, padding_side="left")
        acts[name] = capture_residual(model, batches, layers=[1, 2]).astype(config_dtype)
    layers = ["hidden_states.1", "hidden_states.2"]
    # (GPT-2 called as given numbers positions 0..n-1 whatever the mask: right padding there)
    (full,) = make_batches(prompts, batch_size=10, padding_side=side)
    probes = {"input_ids": full.input_ids.numpy(), "attention_mask": full.attention_mask.numpy()}
    cfg = build_config({n: acts["witness"][i] for i, n in enumerate(layers)},
                       {n: acts["aligned"][i] for i, n in enumerate(layers)}, probes=probes, every=1, n_looks=20)
    target = ["q_proj", "v_proj"] if kind == "llama" else ["c_attn"]
    lora = peft.get_peft_model(aligned, peft.LoraConfig(r=4, target_modules=target, init_lora_weights=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReversionAlarm)
        mon = TorchMonitor(lora, cfg)
        for step in (1, 2, 3):
            chk = mon.check(step)
            assert not chk.alarm and set(chk.below_floor) == set(layers), chk
    for n in layers:  # the floor bounds the real discrepancy with room to spare
        assert mon.monitor.noise_report[n]["offset"] * 4 <= mon.monitor.noise_floor[n] * (1 + 1e-9)
    # training moves the model well above the floor (the floor does not mute the monitor)
    v = torch.as_tensor(cfg.directions["hidden_states.1"], dtype=torch.float32)
    opt = torch.optim.Adam([p for p in lora.parameters() if p.requires_grad], lr=0.05)
    ids, mask = torch.as_tensor(probes["input_ids"]), torch.as_tensor(probes["attention_mask"])
    for _ in range(3):
        h = lora(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1][:, -1]
        loss = -(h.mean(0) @ v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    chk = mon.check(4)
    assert chk.drift_norm["hidden_states.1"] > 10 * chk.noise_floor["hidden_states.1"]


def test_cli_monitor_config_from_model_folders_and_probes_jsonl(tmp_path):
    """Before the first fine-tune: witness + aligned folders + the probes.jsonl of `capture`."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import json

    from revstats.capture._tiny import build_tiny_model
    from revstats.cli import main
    from revstats.training.monitor import TorchMonitor

    build_tiny_model("llama", tmp_path / "base", seed=1, hidden=32, n_layers=2)
    aligned = build_tiny_model("llama", tmp_path / "aligned", seed=0, hidden=32, n_layers=2)
    with open(tmp_path / "probes.jsonl", "w") as f:
        for i, p in enumerate(["the cat is big", "how do i make a story", "red", "tell me a poem please"]):
            f.write(json.dumps({"id": f"q{i}", "prompt": p}) + "\n")
    res = CliRunner().invoke(main, ["monitor-config", "--witness", str(tmp_path / "base"), "--aligned",
                                    str(tmp_path / "aligned"), "--probes", str(tmp_path / "probes.jsonl"),
                                    "--layers", "blocks.0.hook_resid_post,-1", "--out", str(tmp_path / "cfg"),
                                    "--looks", "5", "--every", "2"])
    assert res.exit_code == 0, res.output
    cfg = MonitorConfig.load(tmp_path / "cfg")
    assert cfg.layers == ("hidden_states.1", "hidden_states.2") and cfg.examples == ("q0", "q1", "q2", "q3")
    assert set(cfg.probes) == {"input_ids", "attention_mask"} and cfg.n_looks == 5
    # the config's aligned activations are HF's hidden states of the aligned model on each probe
    ids = torch.as_tensor(cfg.probes["input_ids"])
    mask = torch.as_tensor(cfg.probes["attention_mask"])
    with torch.no_grad():
        hs = aligned(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    last = mask.sum(1) - 1
    np.testing.assert_allclose(cfg.aligned["hidden_states.2"], hs[2][torch.arange(4), last].numpy(), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReversionAlarm)
        warnings.simplefilter("error", RevstatsWarning)
        mon = TorchMonitor.from_config(tmp_path / "cfg", aligned)
        chk = mon.check(2)
    assert not chk.alarm and all(p == 1.0 for p in chk.pvalue.values())
    bad = CliRunner().invoke(main, ["monitor-config", "--witness", str(tmp_path / "base"), "--out", str(tmp_path / "c3")])
    assert bad.exit_code == 2 and "--witness DIR --aligned DIR --probes" in bad.output
