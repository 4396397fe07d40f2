"""Density models whose checkpoint says ``symmetrize: false`` run one forward pass (issue 16.3).

The 180° test-time average (``DensityNet.symmetrize``) doubles the network's arithmetic; the shipped
checkpoints that do not need it (their single pass has no position bias beyond 3 nm and the same
validation JI / RMSE within 0.5 point / 0.5 nm: ``scripts/density_one_pass.py eval``, figures in
``docs/weights.md``) turn it off. Their bias is checked by ``tests/test_model_bias.py``, which runs
the shipped configuration. deep-storm ran one pass from session 6 to 9 (weights re-picked in session 8 on
whole 64×64 tuning movies with ``density_one_pass.py finetune`` + ``select`` + ``adopt``); since session 10 it
ships its two-pass original again, which reaches ×3 of the filing speed with both passes (docs/weights.md).
The threshold-by-filtering shortcut ``select`` relies on is tested below. Nothing here is timed (speed: ``benchmarks/speed.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_smlm.core import inference
from napari_smlm.core.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint, shipped_models
from napari_smlm.core.models.density_fast import _Fast
from napari_smlm.core.models.density_nets import FIDSTORMNet, SRCNNNet, project_rotation_equivariant

#: Shipped density models that run one pass (the others keep the 180° average).
ONE_PASS = ["u-storm", "drl-storm", "fid-storm"]  # deep-storm: two passes again since session 10; fid-storm: one
# pass since session 12; srcnn: two passes (in bf16) again since session 12 (docs/weights.md)
SHIPPED = set(shipped_models())


def _count_network_passes(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Forward passes of the density network inside ``net`` for one call (fast form or reference)."""
    calls = []
    target = net if isinstance(net, _Fast) else None
    if target is not None and hasattr(target, "_blocks") and target._use_blocks(x):
        # SRCNN's CPU blocks compute n_nets networks side by side (2: the two passes as one computation)
        orig = target._blocks
        target._blocks = lambda t, n_nets: (calls.extend([1] * n_nets), orig(t, n_nets))[1]
        try:
            with torch.inference_mode():
                net(x)
        finally:
            del target._blocks
    elif target is not None:
        orig = target._fast
        target._fast = lambda t: (calls.append(1), orig(t))[1]
        try:
            with torch.inference_mode():
                net(x)
        finally:
            del target._fast
    else:
        orig = net._forward
        net._forward = lambda t: (calls.append(1), orig(t))[1]
        try:
            with torch.inference_mode():
                net(x)
        finally:
            del net._forward
    return len(calls)


@pytest.mark.parametrize("model", ONE_PASS)
def test_shipped_one_pass_models_run_one_forward_pass(model):
    if model not in SHIPPED:
        pytest.skip(f"no shipped {model}")
    ck = resolve_checkpoint(model)
    assert ck.model_config["symmetrize"] is False
    assert ck.build().symmetrize is False
    net = inference._inference_network(ck, torch.device("cpu"))  # what predict() runs
    x = torch.randn(2, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    assert _count_network_passes(net, x) == 1


@pytest.mark.parametrize("model", ["skip-storm", "deep-storm", "srcnn"])
def test_symmetrized_models_still_run_two_passes(model):
    """The switch is per checkpoint: a model whose config keeps the average still runs both passes."""
    if model not in SHIPPED:
        pytest.skip(f"no shipped {model}")
    ck = resolve_checkpoint(model)
    assert ck.model_config.get("symmetrize", True) is True
    net = inference._inference_network(ck, torch.device("cpu"))
    assert _count_network_passes(net, torch.randn(1, 1, 16, 16)) == 2


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "density_one_pass.py"
    spec = importlib.util.spec_from_file_location("density_one_pass", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_pass_rewrite_keeps_the_weights_and_records_why(tmp_path):
    if "skip-storm" not in SHIPPED:
        pytest.skip("no shipped skip-storm")
    src = tmp_path / "m.pt"
    save_checkpoint(src, resolve_checkpoint("skip-storm"))  # a shipped model that runs two passes
    out = tmp_path / "m_1pass.pt"
    assert _script().main(["one-pass", str(src), "--note", "measured", "-o", str(out)]) == 0
    a, b = load_checkpoint(src), load_checkpoint(out)
    assert a.model_config.get("symmetrize", True) is True and b.model_config["symmetrize"] is False
    assert b.training["one_pass"]["note"] == "measured"
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    # one pass of the rewritten checkpoint = the first of the original's two passes
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ya = a.build()._forward(x)
        yb = b.build()(x)
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_select_thresholds_by_filtering_one_low_threshold_run():
    """``select`` runs each candidate once at its lowest threshold and filters by window mass; that must be
    what ``predict`` returns at the higher threshold, or the chosen threshold would not be the one measured."""
    if "deep-storm" not in SHIPPED:
        pytest.skip("no shipped deep-storm")
    from napari_smlm.core.inference import predict

    mod = _script()
    frames, gt, cfg = mod.tuning_movie(2.0, "smlm2016_emccd", 4, seed_base=8000)
    ck = resolve_checkpoint("deep-storm")
    low = predict(frames, ck, camera=cfg.camera, pixel_size_nm=cfg.pixel_size_nm, device="cpu", threads=1,
                  threshold=0.45).localizations
    for t in (0.5, 0.575, 0.65):
        direct = predict(frames, ck, camera=cfg.camera, pixel_size_nm=cfg.pixel_size_nm, device="cpu", threads=1,
                         threshold=t).localizations
        filtered = low.filter(low["count"] > t)
        assert len(direct) == len(filtered) > 0
        np.testing.assert_allclose(np.sort(direct["x_nm"]), np.sort(filtered["x_nm"]), atol=1e-3)
    assert mod._movie_scores(ck, [(frames, gt, cfg)], [0.5, 0.65], 0.45)[0][0][0] > 0


@pytest.mark.parametrize("seed_base", [1000, 995, 1041])
def test_select_refuses_the_test_movies_seeds(seed_base):
    """Any --seed-base whose movies would use one of the test seeds 1001–1060 (not only 1000 itself)."""
    with pytest.raises(SystemExit, match="test movies"):
        _script().main(["select", "deep-storm", "--teacher", "deep-storm", "--candidates", "deep-storm",
                        "--seed-base", str(seed_base)])


def test_tuning_seeds_of_the_default_base_are_not_test_seeds():
    mod = _script()
    assert mod.tuning_seeds(8000) == [8001, 8005, 8010, 8020, 8040, 8060]
    mod.refuse_test_seeds(mod.tuning_seeds(8000), "x")  # no exception
    assert mod.tuning_seeds(1000) == [1001, 1005, 1010, 1020, 1040, 1060]  # the test movies' seeds


def test_adopt_writes_only_selects_pick_with_its_threshold(tmp_path):
    import json

    if "srcnn" not in SHIPPED:
        pytest.skip("no shipped srcnn")
    state = tmp_path / "srcnn_step00080.pt"
    save_checkpoint(state, resolve_checkpoint("srcnn"))
    pick = {"candidate": str(state), "threshold": 0.6, "within": 12, "shortfall": 0.0, "sparse_precision_lb": 0.94,
            "dji": [0.1], "drmse": [-0.2]}
    sel = tmp_path / "select.json"
    seeds = _script().tuning_seeds(8000)
    sel.write_text(json.dumps({"pick": pick, "labels": ["emccd 0.1"], "teacher": [[80.0, 22.0]], "results": [pick],
                               "seed_base": 8000, "tuning_seeds": seeds}))
    out = tmp_path / "adopted.pt"
    with pytest.raises(SystemExit, match="not the pick"):
        _script().main(["adopt", str(state), "--threshold", "0.55", "--select-json", str(sel), "-o", str(out)])
    assert not out.exists()
    assert _script().main(["adopt", str(state), "--threshold", "0.6", "--select-json", str(sel), "-o", str(out)]) == 0
    a, b = load_checkpoint(state), load_checkpoint(out)
    assert b.model_config["threshold"] == 0.6 and b.model_config["symmetrize"] is False
    assert b.training["whole_frame_selection"]["pick"]["within"] == 12
    assert b.training["whole_frame_selection"]["tuning_seeds"] == seeds
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_adopt_refuses_a_selection_made_on_the_test_movies(tmp_path):
    """adopt re-checks the seeds the selection was made on: a pick from the test movies (or from a record that does
    not say its seeds, or whose seeds contradict its seed base) is not written."""
    import json

    if "srcnn" not in SHIPPED:
        pytest.skip("no shipped srcnn")
    mod = _script()
    state = tmp_path / "srcnn_step00080.pt"
    save_checkpoint(state, resolve_checkpoint("srcnn"))
    pick = {"candidate": str(state), "threshold": 0.6, "within": 12, "shortfall": 0.0, "sparse_precision_lb": 0.94,
            "dji": [0.1], "drmse": [-0.2]}
    base = {"pick": pick, "labels": ["emccd 0.1"], "teacher": [[80.0, 22.0]], "results": [pick]}
    out = tmp_path / "adopted.pt"
    cases = {
        "test.json": ({**base, "seed_base": 1000, "tuning_seeds": mod.tuning_seeds(1000)}, "test movies"),
        "none.json": (base, "does not record the movie seeds"),
        "forged.json": ({**base, "seed_base": 1000, "tuning_seeds": mod.tuning_seeds(8000)}, "do not follow"),
    }
    for name, (record, message) in cases.items():
        sel = tmp_path / name
        sel.write_text(json.dumps(record))
        with pytest.raises(SystemExit, match=message):
            mod.main(["adopt", str(state), "--threshold", "0.6", "--select-json", str(sel), "-o", str(out)])
        assert not out.exists()


def test_movies_defaults_are_the_test_design_the_rules_name(monkeypatch):
    """A bare ``movies`` runs the twelve 100-frame test movies of docs/weights.md (it once ran a 4-movie, 50-frame subset)."""
    mod = _script()
    seen = {}
    monkeypatch.setattr(mod, "cmd_movies", lambda a: seen.update(vars(a)) or 0)
    assert mod.main(["movies", "fid-storm"]) == 0
    assert [float(d) for d in seen["densities"].split(",")] == [0.1, 0.5, 1, 2, 4, 6]
    assert seen["cameras"].split(",") == ["smlm2016_emccd", "generic_scmos"]
    assert seen["frames"] == 100


def test_paired_jackknife_se_is_zero_for_identical_runs_and_grows_with_a_local_difference():
    """The standard errors ``movies`` prints next to ΔJI / ΔRMSE (block jackknife over frames)."""
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.metrics import match_localizations

    mod = _script()
    rng = np.random.default_rng(3)
    n_frames, per = 40, 5
    f = np.repeat(np.arange(n_frames), per)
    gt = Localizations({"frame": f, "x_nm": rng.uniform(0, 6000, f.size), "y_nm": rng.uniform(0, 6000, f.size)})
    noisy = lambda s: Localizations({"frame": f, "x_nm": gt["x_nm"] + rng.normal(0, s, f.size),  # noqa: E731
                                     "y_nm": gt["y_nm"] + rng.normal(0, s, f.size)})
    a = noisy(20.0)
    m_a = match_localizations(gt, a)
    assert mod.paired_jackknife_se(m_a, m_a, gt.frames, a.frames, a.frames, n_frames) == (0.0, 0.0)
    # "now" misses every emitter of the first 4 frames (one block) and is a little worse elsewhere
    b_df = noisy(20.0)
    keep = b_df.frames >= 4
    b = Localizations({k: b_df[k][keep] for k in ("frame", "x_nm", "y_nm")})
    se_ji, se_rmse = mod.paired_jackknife_se(m_a, match_localizations(gt, b), gt.frames, a.frames, b.frames, n_frames)
    assert se_ji > 0.5 and se_rmse > 0  # a JI loss concentrated in one block: not a chance-free difference


def test_paired_jackknife_se_equals_rematching_with_each_block_left_out():
    """The SE from one matching equals the textbook delete-a-block jackknife done the slow way.

    37 frames in 10 blocks (not divisible), misses and false positives in both runs: every block's
    subset is cut from both tables, matched again and scored with LocalizationMetrics.
    """
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.metrics import LocalizationMetrics, match_localizations

    mod = _script()
    rng = np.random.default_rng(5)
    n_frames, k = 37, 10
    f = np.sort(rng.integers(0, n_frames, 300))
    gt = Localizations({"frame": f, "x_nm": rng.uniform(0, 6000, f.size), "y_nm": rng.uniform(0, 6000, f.size)})

    def run(sigma, miss):
        keep = rng.random(f.size) > miss
        n_fp = 20
        return Localizations({"frame": np.r_[f[keep], rng.integers(0, n_frames, n_fp)],
                              "x_nm": np.r_[gt["x_nm"][keep] + rng.normal(0, sigma, keep.sum()), rng.uniform(0, 6000, n_fp)],
                              "y_nm": np.r_[gt["y_nm"][keep] + rng.normal(0, sigma, keep.sum()), rng.uniform(0, 6000, n_fp)]})

    a, b = run(20.0, 0.1), run(30.0, 0.25)
    block = lambda t: (np.asarray(t.frames) * k) // n_frames  # noqa: E731
    d = []
    for j in range(k):
        cut = lambda t: Localizations({c: np.asarray(t[c])[block(t) != j] for c in ("frame", "x_nm", "y_nm")})  # noqa: E731,B023
        ma = LocalizationMetrics.from_matching(match_localizations(cut(gt), cut(a)))
        mb = LocalizationMetrics.from_matching(match_localizations(cut(gt), cut(b)))
        d.append((100 * (mb.jaccard - ma.jaccard), mb.rmse_lateral_nm - ma.rmse_lateral_nm))
    d = np.array(d)
    expected = np.sqrt((k - 1) / k * ((d - d.mean(axis=0)) ** 2).sum(axis=0))
    got = mod.paired_jackknife_se(match_localizations(gt, a), match_localizations(gt, b), gt.frames, a.frames, b.frames,
                                  n_frames, k)
    assert got == pytest.approx(tuple(expected), rel=1e-9)
    assert min(got) > 0


def test_paired_jackknife_se_of_rmse_is_unknown_when_a_run_matches_nothing():
    """No match at all: ΔRMSE has no jackknife (NaN, never a reassuring 0); ΔJI still has one."""
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.metrics import match_localizations

    mod = _script()
    rng = np.random.default_rng(8)
    n_frames = 20
    f = np.repeat(np.arange(n_frames), 4)
    gt = Localizations({"frame": f, "x_nm": rng.uniform(0, 6000, f.size), "y_nm": rng.uniform(0, 6000, f.size)})
    good = Localizations({"frame": f, "x_nm": gt["x_nm"] + 10.0, "y_nm": gt["y_nm"]})
    far = Localizations({"frame": f, "x_nm": gt["x_nm"] + 5000.0, "y_nm": gt["y_nm"] + 5000.0})
    m_far = match_localizations(gt, far)
    assert m_far.tp == 0
    se_ji, se_rmse = mod.paired_jackknife_se(match_localizations(gt, good), m_far, gt.frames, good.frames, far.frames, n_frames)
    assert np.isnan(se_rmse) and np.isfinite(se_ji)


@pytest.mark.parametrize(
    "make",
    [lambda: SRCNNNet(4, 0.25, (9, 1, 5)), lambda: FIDSTORMNet(4, 0.25, n_blocks=2), lambda: FIDSTORMNet(3, 0.25, n_blocks=1)],
    ids=["srcnn", "fid-storm-u4", "fid-storm-u3"],
)
def test_rotation_equivariant_projection_makes_one_pass_equal_its_two(make):
    """After the projection a single pass commutes with the 180° rotation, so it equals the two-pass average.

    Before it (random weights) the two differ by far more than rounding: the test can fail.
    """
    torch.manual_seed(3)
    net = make().eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # biases and batch-norm statistics too, so that nothing is trivially symmetric
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    x = torch.rand(2, 1, 10, 14, generator=g)

    def gap(model):
        with torch.inference_mode():
            model.symmetrize = False
            one = model(x)
            model.symmetrize = True
            two = model(x)
        return float((one - two).abs().max()), float(two.abs().max())

    before, scale = gap(net)
    assert before > 1e-3 * scale
    project_rotation_equivariant(net)
    after, scale = gap(net)
    assert after <= 1e-5 * max(1.0, scale)
    # the projection is idempotent: projecting again changes nothing
    w0 = [p.detach().clone() for p in net.parameters()]
    project_rotation_equivariant(net)
    for a, b in zip(w0, net.parameters()):
        torch.testing.assert_close(a, b.detach())


def test_movies_long_design_uses_other_seeds_and_longer_sparse_movies(monkeypatch):
    """``movies --design long --seed-base B``: seeds B + 10·density, frames from LONG_TEST_FRAMES; tuning seeds refused."""
    mod = _script()
    monkeypatch.syspath_prepend(str(Path(mod.__file__).resolve().parent.parent / "benchmarks"))
    import precision_guard

    seen = []

    class _Stop(Exception):
        pass

    def fake_movie(d, cam, structure, n_frames, seed_base=1000):
        seen.append((d, n_frames, seed_base + int(d * 10)))
        raise _Stop

    monkeypatch.setattr(precision_guard, "accuracy_movie", fake_movie)
    with pytest.raises(_Stop):
        mod.main(["movies", "srcnn", "--design", "long", "--seed-base", "4000", "--densities", "0.1"])
    assert seen == [(0.1, mod.LONG_TEST_FRAMES[0.1], 4001)]
    assert mod.LONG_TEST_FRAMES[0.1] >= 1000
    with pytest.raises(SystemExit, match="tuning/calibration seeds"):
        mod.main(["movies", "srcnn", "--seed-base", "8000"])
    seen.clear()
    with pytest.raises(_Stop):  # the default stays the accuracy benchmark's 100-frame test movies
        mod.main(["movies", "srcnn", "--densities", "0.5"])
    assert seen == [(0.5, 100, 1005)]


def test_worst_margin_is_the_closest_approach_to_either_bound():
    """select --rank margin: the candidate whose worst movie is farthest inside ΔJI ≥ −0.5 and ΔRMSE ≤ +0.5."""
    mod = _script()
    assert mod.worst_margin([0.3, -0.2], [0.1, 0.2]) == pytest.approx(0.3)  # second movie: 0.5 − 0.2 and −0.2 + 0.5
    assert mod.worst_margin([0.0, 0.0], [0.52, -1.0]) == pytest.approx(-0.02)  # outside on RMSE
    assert mod.worst_margin([-0.7, 0.0], [0.0, 0.0]) == pytest.approx(-0.2)  # outside on JI


@pytest.mark.parametrize("seed_base", [4000, 5000, 4055, 4995])
def test_select_refuses_the_session12_fresh_test_seeds(seed_base):
    """Session 12 tested on fresh seeds 4001–4060 (long test) and 5001–5060 (the margin pick's test,
    docs/weights.md): once seen, they are test seeds like 1001–1060, and select may not tune on them."""
    with pytest.raises(SystemExit, match="test movies"):
        _script().main(["select", "deep-storm", "--teacher", "deep-storm", "--candidates", "deep-storm",
                        "--seed-base", str(seed_base)])


def _adopt_case(tmp_path, **record):
    import json

    state = tmp_path / "srcnn_step00080.pt"
    save_checkpoint(state, resolve_checkpoint("srcnn"))
    pick = {"candidate": str(state), "threshold": 0.6, "within": 12, "shortfall": 0.0, "sparse_precision_lb": 0.94,
            "dji": [0.1], "drmse": [-0.2], **record.pop("pick", {})}
    sel = tmp_path / "select.json"
    sel.write_text(json.dumps({"pick": pick, "labels": ["emccd 0.1"], "teacher": [[80.0, 22.0]], "results": [pick],
                               **record}))
    return ["adopt", str(state), "--threshold", "0.6", "--select-json", str(sel), "-o", str(tmp_path / "adopted.pt")]


@pytest.mark.parametrize("seed_base", [4000, 5000])
def test_adopt_refuses_a_selection_made_on_the_session12_test_seeds(tmp_path, seed_base):
    if "srcnn" not in SHIPPED:
        pytest.skip("no shipped srcnn")
    mod = _script()
    argv = _adopt_case(tmp_path, seed_base=seed_base, tuning_seeds=mod.tuning_seeds(seed_base))
    with pytest.raises(SystemExit, match="test movies"):
        mod.main(argv)
    assert not (tmp_path / "adopted.pt").exists()


def test_adopt_refuses_a_margin_pick_outside_the_bounds(tmp_path):
    """Session 12's rule: a margin pick is tested (so adopted) only when its worst-movie margin is positive."""
    if "srcnn" not in SHIPPED:
        pytest.skip("no shipped srcnn")
    mod = _script()
    for margin in (-0.02, 0.0):
        argv = _adopt_case(tmp_path, seed_base=8000, tuning_seeds=mod.tuning_seeds(8000), rank="margin",
                           pick={"margin": margin})
        with pytest.raises(SystemExit, match="margin"):
            mod.main(argv)
        assert not (tmp_path / "adopted.pt").exists()
    argv = _adopt_case(tmp_path, seed_base=8000, tuning_seeds=mod.tuning_seeds(8000), rank="margin",
                       pick={"margin": 0.12})
    assert mod.main(argv) == 0
    assert load_checkpoint(tmp_path / "adopted.pt").training["whole_frame_selection"]["pick"]["margin"] == 0.12
