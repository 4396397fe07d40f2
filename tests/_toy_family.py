"""A deliberately tiny model family to test the generic training / inference / checkpoint machinery."""

import numpy as np
import torch

from napari_smlm.core.camera import get_camera
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.models import Batch, ModelFamily, PostprocessResult, register
from napari_smlm.core.simulate import simulate


@register
class ToyFamily(ModelFamily):
    name = "toy-test"
    description = "test-only: per-pixel detection with a 2-layer CNN"
    context = 1

    @classmethod
    def default_config(cls):
        return {"channels": 8, "threshold": 0.5, "scale": 200.0}

    @classmethod
    def config_for_simulation(cls, sim):
        # input scale = background + peak pixel of a mean emitter (photons), so inputs are O(1)
        s = sim.psf_sigma_nm / sim.pixel_size_nm
        return {"scale": float(sim.bg_photons + sim.photons_mean / (2 * np.pi * s * s))}

    def build(self):
        ch = self.config["channels"]
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, ch, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(ch, 1, 3, padding=1)
        )

    def preprocess(self, photons):
        return photons / self.config["scale"]

    def simulate_batch(self, sim, batch_size, rng, device, randomize=True):
        cfg = sim.replace(n_frames=batch_size + 2, seed=int(rng.integers(0, 2**31)))
        frames, gt = simulate(cfg)
        ph = torch.from_numpy(get_camera(cfg.camera).adu_to_photons(frames))
        win = ph.unfold(0, 3, 1).permute(0, 3, 1, 2)
        tgt = torch.zeros(batch_size, 1, sim.height, sim.width)
        gt = gt.filter((gt["frame"] >= 1) & (gt["frame"] <= batch_size)).shift(dframe=-1)
        i = (gt["y_nm"] / sim.pixel_size_nm).astype(int)
        j = (gt["x_nm"] / sim.pixel_size_nm).astype(int)
        tgt[np.array(gt["frame"]), 0, i, j] = 1.0  # a copy: table columns may be read-only
        return Batch(self.preprocess(win).to(device), {"target": tgt.to(device)}, gt)

    def loss(self, output, batch):
        return torch.nn.functional.binary_cross_entropy_with_logits(
            output, batch.targets["target"], pos_weight=torch.tensor(20.0)
        )

    def postprocess(self, output, frame_indices, pixel_size_nm, threshold=None, want_images=True):
        thr = self.default_threshold() if threshold is None else threshold
        p = torch.sigmoid(output[:, 0].float())
        peak = (p == torch.nn.functional.max_pool2d(p[:, None], 3, 1, 1)[:, 0]) & (p > thr)
        b, i, j = torch.nonzero(peak, as_tuple=True)
        fr = torch.as_tensor(frame_indices)[b]
        locs = Localizations(
            {
                "frame": fr.numpy(),
                "x_nm": ((j + 0.5) * pixel_size_nm).numpy(),
                "y_nm": ((i + 0.5) * pixel_size_nm).numpy(),
                "prob": p[b, i, j].numpy(),
            }
        )
        return PostprocessResult(locs, None, p)
