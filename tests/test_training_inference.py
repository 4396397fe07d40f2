import pickle

import numpy as np
import pytest
import torch

import _toy_family  # noqa: F401  (registers the toy family)
from napari_smlm.core.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import iter_predict, predict
from napari_smlm.core.simulate import simulate
from napari_smlm.core.training import TrainConfig, iter_train

SIM = SimulationConfig(height=24, width=24, density=0.3, photons_mean=3000, photons_std=300, bg_photons=20)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "toy.pt"
    cfg = TrainConfig(steps=60, steps_per_epoch=20, batch_size=8, lr=1e-2, val_batches=2, device="cpu")
    updates = list(iter_train("toy-test", SIM, cfg, checkpoint_path=path))
    return path, updates


@pytest.mark.slow  # training-heavy: deselected by `make test-fast`
def test_iter_train_yields_typed_updates_and_learns(trained):
    path, ups = trained
    kinds = [u.kind for u in ups]
    assert kinds.count("step") == 60 and kinds.count("epoch") == 3 and kinds[-1] == "done"
    epochs = [u for u in ups if u.kind == "epoch"]
    assert epochs[-1].val_loss < epochs[0].val_loss
    assert 0 <= epochs[-1].metrics["jaccard"] <= 1
    assert path.exists()
    ck = load_checkpoint(path)
    assert ck.model == "toy-test" and ck.training["steps"] >= 20
    assert SimulationConfig.from_dict(ck.simulation) == SIM


def test_stopping_keeps_best_checkpoint(tmp_path):
    path = tmp_path / "stop.pt"
    gen = iter_train("toy-test", SIM, TrainConfig(steps=1000, steps_per_epoch=5, batch_size=4, val_batches=1), path)
    for u in gen:
        if u.kind == "epoch":
            break
    gen.close()  # what a napari worker's quit() does
    assert load_checkpoint(path).training["steps"] == 5


@pytest.mark.slow  # training-heavy: deselected by `make test-fast`
def test_fine_tune_from_checkpoint(trained, tmp_path):
    path, _ = trained
    out = tmp_path / "ft.pt"
    ups = list(iter_train("toy-test", SIM, TrainConfig(steps=10, steps_per_epoch=10, batch_size=4, val_batches=1), out, init_checkpoint=path))
    assert load_checkpoint(out).training["total_steps"] == 60 + 10
    with pytest.raises(ValueError, match="not 'deep-storm'"):
        next(iter(iter_train("deep-storm", SIM, TrainConfig(steps=1), None, init_checkpoint=path)))


def test_predict_streams_and_finds_emitters(trained):
    path, _ = trained
    frames, gt = simulate(SIM.replace(n_frames=20, seed=42))
    ups = list(iter_predict(frames, str(path), batch_size=6, per_frame_outputs=True, device="cpu"))
    batches = [u for u in ups if u.kind == "batch"]
    assert [(u.start, u.stop) for u in batches] == [(0, 6), (6, 12), (12, 18), (18, 20)]
    assert batches[0].display.shape == (6, 24, 24)
    done = ups[-1]
    assert done.kind == "done" and done.n_done == 20
    assert len(done.localizations) == sum(len(u.localizations) for u in batches)
    assert done.sr_image.shape == (24 * 8, 24 * 8)
    assert done.localizations.meta["model"] == "toy-test"
    from napari_smlm.core.metrics import evaluate

    m = evaluate(gt, done.localizations)
    ji = m["jaccard"] if isinstance(m, dict) else m.jaccard
    assert ji > 0.3  # a 2-layer toy on pixel centres; the real models are tested elsewhere


def test_cancel_keeps_partial_results(trained):
    path, _ = trained
    frames, _ = simulate(SIM.replace(n_frames=30, seed=1))
    kept = []
    gen = iter_predict(frames, str(path), batch_size=5, device="cpu")
    for u in gen:
        kept.append(u.localizations)
        if u.n_done >= 10:
            break
    gen.close()
    assert u.n_done == 10
    assert all(loc["frame"].max(initial=0) < 10 for loc in kept)
    # what was kept is exactly what a run over those 10 frames gives: image and table
    ref = predict(frames, str(path), batch_size=5, device="cpu", stop=10)
    assert ref.sr_image.sum() > 0
    np.testing.assert_allclose(u.sr_image, ref.sr_image, rtol=1e-5, atol=1e-6)
    from napari_smlm.core.localizations import Localizations

    partial = Localizations.concat(kept)
    assert len(partial) == len(ref.localizations) > 0
    np.testing.assert_allclose(partial["x_nm"], ref.localizations["x_nm"])
    np.testing.assert_array_equal(partial["frame"], ref.localizations["frame"])


def test_frame_range_and_single_frame(trained):
    path, _ = trained
    frames, _ = simulate(SIM.replace(n_frames=12, seed=3))
    done = predict(frames, str(path), start=4, stop=9, device="cpu")
    assert done.n_total == 5
    assert set(np.unique(done.localizations["frame"])) <= set(range(4, 9))
    one = predict(frames[0], str(path), device="cpu")
    assert one.n_total == 1


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/napari_smlm_pwned",))


def test_malicious_checkpoint_never_executes(tmp_path):
    import os

    bad = tmp_path / "evil.pt"
    if os.path.exists("/tmp/napari_smlm_pwned"):
        os.remove("/tmp/napari_smlm_pwned")
    torch.save({"format": "napari-smlm-checkpoint", "payload": _Evil()}, bad)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(bad)
    assert not os.path.exists("/tmp/napari_smlm_pwned")
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="raw.pt"):
        load_checkpoint(raw)
    assert not os.path.exists("/tmp/napari_smlm_pwned")


def test_foreign_and_mismatched_checkpoints_rejected(tmp_path, trained):
    path, _ = trained
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointError, match="not a napari-smlm checkpoint"):
        load_checkpoint(other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    ck = load_checkpoint(path)
    wrong = Checkpoint("toy-test", {"channels": 16, "threshold": 0.5, "scale": 200.0}, ck.state_dict)
    save_checkpoint(tmp_path / "wrong.pt", wrong)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_fine_tune_config_overrides(trained, tmp_path):
    path, _ = trained
    out = tmp_path / "ft2.pt"
    cfg = TrainConfig(steps=2, steps_per_epoch=2, batch_size=2, val_batches=1, device="cpu")
    list(iter_train("toy-test", SIM, cfg, out, init_checkpoint=path, model_config={"scale": 100.0}))
    assert load_checkpoint(out).model_config["scale"] == 100.0
    with pytest.raises(ValueError, match="changes the architecture"):
        list(iter_train("toy-test", SIM, cfg, None, init_checkpoint=path, model_config={"channels": 4}))
