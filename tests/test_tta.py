"""Test-time augmentation (core/tta.py): flipped views averaged, offsets mirrored back correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import InferenceConfig, predict
from napari_smlm.core.metrics import evaluation_report
from napari_smlm.core.simulate import simulate
from napari_smlm.core.tta import FlipAverage, tta_views


def _toy_net(cout: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, cout, 5, padding=2))
    return net.eval()


def _mirror(y: torch.Tensor, dims, xc, yc) -> torch.Tensor:
    """What a flip does to an output: the maps flipped, x (y) offsets negated along a flipped x (y)."""
    y = y.flip(dims).clone()
    if -1 in dims:
        y[:, xc] = -y[:, xc]
    if -2 in dims:
        y[:, yc] = -y[:, yc]
    return y


@pytest.mark.parametrize("dims", [(-1,), (-2,), (-2, -1)])
def test_four_views_make_any_network_flip_equivariant(dims):
    """Averaged over the four symmetries, the output of a flipped frame is the flipped output, with the
    offset channels' signs turned: a wrong sign or a missing flip back breaks this."""
    fa = FlipAverage(_toy_net(), tta_views(4), x_channels=[1], y_channels=[2])
    x = torch.randn(2, 2, 12, 17)
    with torch.no_grad():
        a = fa(x.flip(dims))
        b = _mirror(fa(x), dims, [1], [2])
    assert torch.allclose(a, b, atol=1e-5)
    # the plain network is not: the check above is not trivially true
    net = fa.net
    with torch.no_grad():
        assert not torch.allclose(net(x.flip(dims)), _mirror(net(x), dims, [1], [2]), atol=1e-3)


def test_two_views_make_a_network_rotation_equivariant():
    fa = FlipAverage(_toy_net(), tta_views(2), x_channels=[1], y_channels=[2])
    x = torch.randn(1, 2, 10, 11)
    with torch.no_grad():
        assert torch.allclose(fa(x.flip(-2, -1)), _mirror(fa(x), (-2, -1), [1], [2]), atol=1e-5)


def test_views_and_config_checks():
    assert tta_views(1) == ()
    assert tta_views(2) == ((-2, -1),)
    assert set(tta_views(4)) == {(-2, -1), (-1,), (-2,)}
    # a network that averages its 180° rotation itself: no 180° view, one mirror for four
    assert tta_views(2, already_rotated=True) == ()
    assert len(tta_views(4, already_rotated=True)) == 1
    with pytest.raises(ValueError, match="tta must be one of"):
        tta_views(3)
    with pytest.raises(ValueError, match="tta must be one of"):
        InferenceConfig(tta=3)


def _movie(seed=11):
    cfg = SimulationConfig(n_frames=20, height=32, width=32, density=0.5, seed=seed)
    return simulate(cfg)


@pytest.mark.parametrize("tta", [2, 4])
def test_decode_with_flipped_views_localizes_as_well(tta):
    """decode's dx/dy mirrored back: a wrong sign would move every emitter by up to a pixel (RMSE ~50 nm)."""
    frames, gt = _movie()
    rep = {}
    for t in (1, tta):
        res = predict(frames, "decode", device="cpu", tta=t, threads=1)
        rep[t] = evaluation_report(gt, res.localizations, pixel_size_nm=100.0, psf_sigma_nm=120.0).as_dict()
        if t > 1:
            assert res.meta["tta"] == t and res.meta["tta_views_added"] == t - 1
    assert rep[tta]["jaccard"] >= rep[1]["jaccard"] - 0.05
    assert rep[tta]["rmse_lateral_nm"] <= rep[1]["rmse_lateral_nm"] + 3.0


def test_two_pass_density_model_needs_no_180_view():
    frames, _ = _movie(12)
    a = predict(frames, "deep-storm", device="cpu", threads=1)
    b = predict(frames, "deep-storm", device="cpu", tta=2, threads=1)  # deep-storm already averages 180°
    assert b.meta["tta_views_added"] == 0
    np.testing.assert_allclose(a.localizations["x_nm"], b.localizations["x_nm"])


def test_cli_tta_is_recorded(tmp_path):
    from napari_smlm.cli import main
    from napari_smlm.core.io import read_localizations

    assert main(["simulate", "-o", str(tmp_path / "sim"), "--frames", "6", "--size", "24", "24", "--seed", "2"]) == 0
    movie = next((tmp_path / "sim").glob("*.tif"))
    out = tmp_path / "locs.hdf5"
    assert main(["localize", str(movie), "-o", str(out), "--device", "cpu", "--tta", "2", "--threads", "1"]) == 0
    assert read_localizations(out).meta.get("tta") == 2
    with pytest.raises(SystemExit):
        main(["localize", str(movie), "-o", str(tmp_path / "x.hdf5"), "--tta", "3"])


@pytest.mark.parametrize("model", ["fid-storm", "decode3d"])
def test_views_of_a_one_pass_density_model_and_of_decode3d_keep_positions(model):
    """fid-storm (one pass, ×4 output grid: a flipped view is mirrored back on the ×4 grid, which must line up
    with the camera grid) and decode3d (averages its 180° rotation itself: 4 views add one mirror, whose dx is
    negated through Decode3DNet). A grid off by one super-pixel shifts every emitter (bias); a wrong offset
    sign pulls positions to pixel centres (RMSE)."""
    frames, gt = _movie()
    rep, res = {}, {}
    for t in (1, 4):
        res[t] = predict(frames, model, device="cpu", tta=t, threads=1)
        rep[t] = evaluation_report(gt, res[t].localizations, pixel_size_nm=100.0, psf_sigma_nm=120.0).as_dict()
    assert res[4].meta["tta_views_added"] == (1 if model == "decode3d" else 3)
    assert rep[4]["jaccard"] >= rep[1]["jaccard"] - 0.05
    assert rep[4]["rmse_lateral_nm"] <= rep[1]["rmse_lateral_nm"] + 3.0
    for axis in ("x", "y"):
        assert abs(rep[4][f"bias_{axis}_nm"] - rep[1][f"bias_{axis}_nm"]) < 4.0


def test_a_streamed_run_resumes_only_with_the_same_views(tmp_path):
    """``tta`` is a resume parameter only when on: a partial file of a run without views (or of a version
    before them) holds none and resumes as before; continuing it with views would mix two kinds of rows."""
    from napari_smlm.core.io.errors import SMLMFileError
    from napari_smlm.core.io.stream import read_progress
    from napari_smlm.core.io.tiff import open_movie, write_movie

    frames, _ = simulate(SimulationConfig(n_frames=24, height=24, width=24, density=0.5, seed=3))
    movie = write_movie(tmp_path / "m.tif", frames)
    out = tmp_path / "a_locs.hdf5"
    kw = {"chunk_frames": 8, "batch_size": 8, "device": "cpu", "threads": 1}
    from napari_smlm.core.runner import iter_localize_stream

    calls = []
    stop_after_one = lambda: calls.append(1) or len(calls) == 1  # noqa: E731
    ups = list(iter_localize_stream(open_movie(movie), "decode", out, should_stop=stop_after_one, **kw))
    assert ups[-1].kind == "stopped"
    assert "tta" not in read_progress(out)["run"]
    with pytest.raises(SMLMFileError, match="tta"):
        list(iter_localize_stream(open_movie(movie), "decode", out, resume=True, tta=2, **kw))
    ups = list(iter_localize_stream(open_movie(movie), "decode", out, resume=True, tta=1, **kw))
    assert ups[-1].kind == "done" and read_progress(out).complete
