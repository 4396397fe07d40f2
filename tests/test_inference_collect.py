"""InferenceConfig, the shared collect-with-cancel (PredictionCollector) and the checkpoint's camera.

A hand-set toy detector (no training) keeps these fast; see tests/test_widgets.py for the same
detector in the GUI.
"""

import numpy as np
import pytest
import torch

import _toy_family  # noqa: F401  (registers the tiny "toy-test" family)
from napari_smlm.core.camera import get_camera
from napari_smlm.core.checkpoint import DEFAULT_CAMERA, Checkpoint, checkpoint_camera
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import InferenceConfig, PredictionCollector, collect_predictions, iter_predict, predict
from napari_smlm.core.simulate import simulate

SIM = SimulationConfig(n_frames=20, height=24, width=24, density=0.5, photons_mean=3000, photons_std=300, bg_photons=20, seed=3)


def _toy_ckpt(camera=None):
    w1, b1 = torch.zeros(8, 3, 3, 3), torch.zeros(8)
    w1[0, 1] = 1.0 / 9
    b1[0] = -0.3
    w2, b2 = torch.zeros(1, 8, 3, 3), torch.tensor([-1.5])
    w2[0, 0, 1, 1] = 6.0
    sim = SIM.to_dict()
    if camera is not None:
        sim["camera"] = camera
    else:
        sim.pop("camera", None)
    return Checkpoint("toy-test", {"channels": 8, "threshold": 0.5, "scale": 200.0},
                      {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}, sim)


@pytest.fixture(scope="module")
def movie():
    frames, _ = simulate(SIM)
    return frames


def test_config_and_keyword_overrides_agree(movie):
    ck = _toy_ckpt()
    a = predict(movie, ck, InferenceConfig(batch_size=5, device="cpu", start=2, stop=17))
    b = predict(movie, ck, device="cpu", batch_size=5, start=2, stop=17)
    c = predict(movie, ck, InferenceConfig(batch_size=16, device="cpu"), batch_size=5, start=2, stop=17)
    assert len(a.localizations) > 10
    for other in (b, c):
        np.testing.assert_array_equal(other.localizations["x_nm"], a.localizations["x_nm"])
        assert other.n_done == a.n_done == 15
    with pytest.raises(TypeError, match="batchsize"):
        InferenceConfig().replace(batchsize=3)
    with pytest.raises(ValueError, match="batch_size"):
        InferenceConfig(batch_size=0)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        InferenceConfig(pixel_size_nm=-1.0)


def test_collector_keeps_everything_and_latest_is_bounded(movie):
    ups = list(iter_predict(movie, _toy_ckpt(), device="cpu", batch_size=4))
    col = PredictionCollector()
    for u in ups[:-1]:
        col.add(u)
    parts = [u.localizations for u in ups[:-1]]
    assert col.done is None and col.n_done == 20 and col.frame_range == [0, 20]
    assert len(col.localizations()) == sum(len(p) for p in parts) == col.n_found
    # latest(k): the newest rows, at most k, in order
    k = len(parts[-1]) + 3
    tail = col.latest(k)
    assert len(tail) == k
    np.testing.assert_array_equal(tail["x_nm"], col.localizations()["x_nm"][-k:])
    assert len(col.latest(10**9)) == col.n_found
    col.add(ups[-1])
    assert col.done is ups[-1] and col.localizations() is ups[-1].localizations


def test_collect_predictions_keeps_partial_result_on_ctrl_c(movie):
    gen = iter_predict(movie, _toy_ckpt(), device="cpu", batch_size=4)
    seen = []

    def on_update(u):
        seen.append(u)
        if len(seen) == 2:
            raise KeyboardInterrupt

    col = collect_predictions(gen, on_update=on_update)
    assert col.interrupted and col.done is None
    assert col.n_done == 8 and col.frame_range == [0, 8]
    assert len(col.localizations()) == sum(len(u.localizations) for u in seen) > 0
    assert col.localizations().frames.max() < 8
    assert gen.gi_frame is None  # the generator was closed (its read-ahead thread stopped)


def test_checkpoint_carries_its_camera(movie):
    assert checkpoint_camera(_toy_ckpt()) == get_camera(DEFAULT_CAMERA)
    assert checkpoint_camera(None) == get_camera(DEFAULT_CAMERA)
    cam = get_camera(DEFAULT_CAMERA).replace(baseline=321.0, em_gain=1.0)
    ck = _toy_ckpt(cam.to_dict())
    assert ck.camera == cam
    # iter_predict converts ADU with the checkpoint's camera unless told otherwise
    shifted = np.clip(movie.astype(np.int64) + 221, 0, 65535).astype(np.uint16)  # offset 100 -> 321
    base = predict(movie, _toy_ckpt(get_camera(DEFAULT_CAMERA).replace(em_gain=1.0).to_dict()), device="cpu")
    own = predict(shifted, ck, device="cpu")
    assert own.meta["camera"]["baseline"] == 321.0
    np.testing.assert_array_equal(own.localizations["x_nm"], base.localizations["x_nm"])


def test_collect_predictions_stops_when_asked(movie):
    """A stop flag (the CLI's SIGTERM) checked after each batch: same partial result as Ctrl-C."""
    gen = iter_predict(movie, _toy_ckpt(), device="cpu", batch_size=4)
    seen = []
    col = collect_predictions(gen, on_update=seen.append, should_stop=lambda: len(seen) >= 3)
    assert col.interrupted and col.done is None and col.n_done == 12
    assert len(col.localizations()) == sum(len(u.localizations) for u in seen)
    assert gen.gi_frame is None


def test_updates_carry_typed_kinds(movie):
    from napari_smlm.core.progress import UpdateKind

    kinds = [u.kind for u in iter_predict(movie, _toy_ckpt(), device="cpu", batch_size=8)]
    assert kinds == [UpdateKind.BATCH] * 3 + [UpdateKind.DONE]
    assert all(type(k) is UpdateKind for k in kinds)  # members, not bare strings
    assert kinds[0] == "batch" and f"{kinds[-1]}" == "done"  # still readable as words
