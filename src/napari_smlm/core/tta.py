"""Test-time augmentation: a network's output averaged over flipped views of its input.

The localization networks are not exactly equivariant to flips: trained on finite data they
learn small direction-dependent habits (a pull of overlapping spots one way, a bias along x).
Averaging the output of the frame with that of its mirrored copies — each mirrored back, with
the sub-pixel offsets of a DECODE-like output negated along the flipped axis — cancels the odd
part of those habits and averages the network's noise over views. It costs one network pass
per view.

Views (``tta`` in :class:`~napari_smlm.core.inference.InferenceConfig`, ``--tta`` on the command
line): ``1`` the frame alone (default), ``2`` also the 180°-rotated frame, ``4`` also the
left-right and the up-down mirror (the four symmetries of the rectangle). A network that already
averages itself with its 180°-rotated copy (two-pass density models, ``decode3d``) needs no 180°
view: ``2`` adds nothing there and ``4`` adds one mirror.

Measured (decode, tuning movies, ``benchmarks/tta.py`` and docs/benchmarks.md, "Session 13"):
about one point of efficiency at 1–6 emitters/µm², RMSE 1–2 nm lower, for 2× or 4× the network
time.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TTA_CHOICES", "FlipAverage", "mirror_back", "tta_views"]

#: Allowed numbers of views.
TTA_CHOICES = (1, 2, 4)

#: Flipped axes of the extra views: -1 = columns (x), -2 = rows (y).
_VIEWS = {1: (), 2: ((-2, -1),), 4: ((-2, -1), (-1,), (-2,))}


def tta_views(n: int, already_rotated: bool = False) -> tuple[tuple[int, ...], ...]:
    """Flipped axes of the extra views for ``n`` views in all.

    Parameters
    ----------
    n : {1, 2, 4}
    already_rotated : bool
        The network averages itself with its 180°-rotated copy: that view is left out, and of the
        two mirrors only one is needed (the other is its 180° rotation).
    """
    if int(n) not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES} views, not {n!r}")
    views = _VIEWS[int(n)]
    if already_rotated:
        views = tuple(v for v in views if v != (-2, -1))[:1]
    return views


def mirror_back(out: torch.Tensor, dims, x_channels=(), y_channels=()) -> torch.Tensor:
    """The output of a flipped view in the frame's own orientation: the maps flipped back along ``dims``, the x
    (y) offset channels negated when x (y) was flipped. The one home of this rule (also :class:`Decode3DNet`'s
    own 180° average)."""
    o = out.flip(dims)
    if -1 in dims and len(x_channels):
        o[:, list(x_channels)] = -o[:, list(x_channels)]
    if -2 in dims and len(y_channels):
        o[:, list(y_channels)] = -o[:, list(y_channels)]
    return o


class FlipAverage(nn.Module):
    """``net``'s output averaged over the frame and its flipped views (inference only).

    Parameters
    ----------
    net : nn.Module
        Maps (B, C_in, H, W) to (B, C, H·u, W·u) (any upsampling ``u``).
    views : tuple of tuple of int
        Flipped axes of each extra view (:func:`tta_views`).
    x_channels, y_channels : sequence of int
        Output channels that are x (y) offsets: negated after an x (y) flip is undone.
    """

    def __init__(self, net: nn.Module, views, x_channels=(), y_channels=()):
        super().__init__()
        self.net = net
        self.views = tuple(tuple(v) for v in views)
        self.x_channels = list(x_channels)
        self.y_channels = list(y_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if not self.views:
            return out
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else None
        acc = out.float()
        for dims in self.views:
            xv = x.flip(dims)
            if fmt is not None:
                xv = xv.contiguous(memory_format=fmt)
            acc = acc + mirror_back(self.net(xv).float(), dims, self.x_channels, self.y_channels)
        return (acc / (1 + len(self.views))).to(out.dtype)
