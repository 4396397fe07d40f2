"""The DECODE-like network: output heads, the plain U-Net and :class:`DecodeNet`.

The model family that builds, trains and post-processes it is :mod:`.decode` (its module
docstring describes the network, the heads' channels and units, and frame sharing).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CONTEXT", "DecodeNet", "HEADS", "UNet", "output_channels"]

#: Frames either side of the central one that the network sees (``DecodeFamily.context``).
CONTEXT = 1

_SIGMA_MAX_PX = 3.0
_SIGMA_MIN_PX = 0.01


# --------------------------------------------------------------------------- heads
def _head_p(x, cfg):
    return torch.sigmoid(x)


def _head_xy(x, cfg):
    return torch.tanh(x)


def _head_photons(x, cfg):
    return torch.sigmoid(x) * cfg["photon_scale"]


def _head_sigma_xy(x, cfg):
    return torch.sigmoid(x) * _SIGMA_MAX_PX + _SIGMA_MIN_PX


def _head_sigma_photons(x, cfg):
    return (torch.sigmoid(x) + 1e-3) * cfg["photon_scale"]


def _head_bg(x, cfg):
    return F.softplus(x) * cfg["bg_scale"]


#: Available heads: name -> (output channel names, activation(raw, config), initial bias).
#: A future ``z`` head adds an entry here (e.g. ``("z",)``, tanh·z_range) and to ``config["heads"]``.
HEADS: dict[str, tuple[tuple[str, ...], Callable[[torch.Tensor, dict], torch.Tensor], float]] = {
    "p": (("p",), _head_p, -4.0),  # prior p ≈ 0.02 per pixel: a few emitters per crop at start
    "xy": (("dx", "dy"), _head_xy, 0.0),
    "photons": (("photons",), _head_photons, -1.0),
    "sigma_xy": (("sigma_x", "sigma_y"), _head_sigma_xy, -2.0),
    "sigma_photons": (("sigma_photons",), _head_sigma_photons, -2.0),
    "bg": (("bg",), _head_bg, 0.5),
}


def output_channels(heads) -> list[str]:
    """Channel names of the network output, in order, for a list of head names."""
    return [c for h in heads for c in HEADS[h][0]]


# --------------------------------------------------------------------------- network
def _act(name: str) -> nn.Module:
    try:
        return {"elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU}[name](inplace=True)
    except KeyError:
        raise ValueError(f"activation must be elu, relu or silu, not {name!r}") from None


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, act: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1), _act(act), nn.Conv2d(cout, cout, 3, padding=1), _act(act)
        )


class UNet(nn.Module):
    """Plain U-Net: two 3×3 convs per level, max-pool down, nearest-upsample + 1×1 conv up.

    Parameters
    ----------
    in_channels : int
    features : list of int
        Channels per level, finest first; ``len(features)`` levels (``2**(len-1)``
        must divide the input size; :class:`DecodeNet` pads to ensure it).
    act : {"elu", "relu", "silu"}
    """

    def __init__(self, in_channels: int, features: list[int], act: str = "elu"):
        super().__init__()
        feats = [int(f) for f in features]
        self.down = nn.ModuleList()
        cin = in_channels
        for f in feats:
            self.down.append(_Block(cin, f, act))
            cin = f
        self.up_proj = nn.ModuleList()
        self.up = nn.ModuleList()
        for lvl in range(len(feats) - 1, 0, -1):
            self.up_proj.append(nn.Conv2d(feats[lvl], feats[lvl - 1], 1))
            self.up.append(_Block(2 * feats[lvl - 1], feats[lvl - 1], act))
        self.out_channels = feats[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, blk in enumerate(self.down):
            if k:
                x = F.max_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        skips.pop()
        for proj, blk in zip(self.up_proj, self.up):
            x = F.interpolate(proj(x), scale_factor=2.0, mode="nearest")
            x = blk(torch.cat([x, skips.pop()], dim=1))
        return x


class DecodeNet(nn.Module):
    """Frame-analysis U-Net (shared over the 3 frames) → temporal-context U-Net → heads.

    Parameters
    ----------
    config : dict
        A :class:`DecodeFamily` configuration (``frame_features``, ``context_features``,
        ``head_features``, ``activation``, ``heads``, ``photon_scale``, ``bg_scale``).

    Notes
    -----
    Input ``(B, 3, H, W)`` preprocessed frames ``t-1, t, t+1``; output ``(B, C, H, W)`` with
    the channels of :func:`output_channels` in physical units (see the module docstring).
    Any ``H, W`` works: the input is padded (replicate) to a multiple of the coarsest
    level's stride and the output cropped back.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.cfg = {k: config[k] for k in ("photon_scale", "bg_scale")}
        self.heads_order = list(config["heads"])
        self.n_frames = 2 * CONTEXT + 1
        act = config["activation"]
        self.frame_net = UNet(1, config["frame_features"], act)
        self.context_net = UNet(self.n_frames * self.frame_net.out_channels, config["context_features"], act)
        hf = int(config["head_features"])
        self.trunk = nn.Sequential(nn.Conv2d(self.context_net.out_channels, hf, 3, padding=1), _act(act))
        self.heads = nn.ModuleDict()
        for h in self.heads_order:
            names, _, bias = HEADS[h]
            conv = nn.Conv2d(hf, len(names), 1)
            nn.init.constant_(conv.bias, bias)
            self.heads[h] = conv
        self._init_weights(act)
        self.stride = 2 ** (max(len(config["frame_features"]), len(config["context_features"])) - 1)
        self.frame_sharing = True
        self.channels = output_channels(self.heads_order)

    def _init_weights(self, act: str) -> None:
        # He initialisation keeps the activation scale through the ~20 stacked convolutions
        # (PyTorch's default shrinks it by ~2.5x per ReLU layer), which speeds early training.
        heads = {id(m) for m in self.heads.values()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in heads:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if act == "relu" else "leaky_relu")
                nn.init.zeros_(m.bias)

    def _frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3·F, H, W) features of the three frames of every window."""
        B, T, H, W = x.shape
        if (
            not self.training
            and self.frame_sharing
            and B > 1
            and T == 3
            and torch.equal(x[1:, 0], x[:-1, 1])
            and torch.equal(x[1:, 1], x[:-1, 2])
        ):
            # Consecutive windows of one movie: B + 2 distinct frames instead of 3·B.
            frames = torch.cat([x[:, 0], x[-1:, 1], x[-1:, 2]], dim=0)[:, None]
            f = self.frame_net(frames)
            return torch.cat([f[0:B], f[1 : B + 1], f[2 : B + 2]], dim=1)
        f = self.frame_net(x.reshape(B * T, 1, H, W))
        return f.reshape(B, T * f.shape[1], H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        s = self.stride
        ph, pw = (-H) % s, (-W) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        feats = self.context_net(self._frame_features(x))
        t = self.trunk(feats)
        outs = [HEADS[h][1](self.heads[h](t), self.cfg) for h in self.heads_order]
        out = torch.cat(outs, dim=1)
        if ph or pw:
            out = out[..., :H, :W]
        return out
