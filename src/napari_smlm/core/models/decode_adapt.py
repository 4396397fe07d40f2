"""Input normalisation of the DECODE-like family, with the out-of-range adaptation.

:class:`DecodeInputAdaptation` holds :class:`~.decode.DecodeFamily`'s ``preprocess`` (a fixed
affine map of photons to O(1) inputs) and the adaptation of out-of-range movies to the training
background and noise at equal SNR ("Input normalisation" in the :mod:`.decode` module docstring).
"""

from __future__ import annotations

import logging
import math

import torch

__all__ = ["DecodeInputAdaptation"]

log = logging.getLogger(__name__)


def _camera_noise_photons(camera, bg_photons: float) -> float:
    """Noise σ (photons/px) of ``camera`` at a background of ``bg_photons``: shot noise with the
    EM excess factor plus read noise, referred to the input."""
    from ..camera import get_camera

    return get_camera(camera).noise_photons(bg_photons)



#: Pixels at or below this quantile of the central frames are taken as background by the noise trigger.
_BACKGROUND_QUANTILE = 0.25
#: Median |x₁ − x₂| of two independent N(0, σ²) values that both lie at or below the 25 % quantile, in units
#: of σ (numerically, 8·10⁶ pairs): the scale of :meth:`DecodeInputAdaptation._background_noise`.
_LOWER_QUARTILE_MAD = 0.4083


class DecodeInputAdaptation:
    """``preprocess`` and the out-of-range input adaptation of :class:`~.decode.DecodeFamily`
    (a mixin: uses the family's ``config``; :meth:`~.decode.DecodeFamily.postprocess` maps the
    photometry back)."""

    def _adaptation(self, photons: torch.Tensor, per_sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Background ``b̂`` and noise ratio ``k = σ̂/σ0`` (≥ ``adapt_min_gain``) of the central frames.

        One value for the whole batch, or (``per_sample``) one per sample; (B, 1, 1, 1) tensors.
        """
        c = self.config
        b0 = float(c["input_offset"])
        centre = photons[:, photons.shape[1] // 2]
        z = 0.6744897501960817 * math.sqrt(2.0)  # median |difference| of two N(0, σ²) = z·σ
        if per_sample:
            d = (centre[..., :, 1:] - centre[..., :, :-1]).abs()
            b_hat = centre.flatten(1).median(1).values
            s_hat = d.flatten(1).median(1).values / z
        else:
            # every k-th image row, ~65k pixels: the medians of a big batch at a fraction of the cost
            rows = centre.reshape(-1, centre.shape[-1])
            rows = rows[:: max(1, rows.numel() // 65536)]
            b_hat = rows.median().reshape(1).expand(photons.shape[0])
            s_hat = ((rows[:, 1:] - rows[:, :-1]).abs().median() / z).reshape(1).expand(photons.shape[0])
        s0 = float(c["input_noise"]) if c.get("input_noise") else math.sqrt(2.0 * max(b0, 0.0) / 0.9)
        self._noise = float(s_hat.flatten()[0])  # the (first sample's) measured noise, photons/px
        k = (s_hat / max(s0, 1e-12)).clamp_min(float(c.get("adapt_min_gain") or 0.0))
        k = torch.where(k > 0, k, torch.ones_like(k))
        return b_hat.reshape(-1, 1, 1, 1), k.reshape(-1, 1, 1, 1)

    def _auto_adaptation_per_sample(self, photons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_adapt="auto"``'s rule applied to each sample on its own (training, ``train_adapt="auto"``).

        Returns (B, 1, 1, 1) ``b̂`` and ``k`` with ``b̂ = input_offset``, ``k = 1`` (no change) for the
        samples whose background and noise :meth:`preprocess` would leave untouched, so that
        ``input_offset + (photons − b̂) / k`` maps only the out-of-range ones.
        """
        c = self.config
        b0 = float(c["input_offset"])
        b_hat, k = self._adaptation(photons, per_sample=True)
        centre = photons[:, photons.shape[1] // 2]
        z = 0.6744897501960817 * math.sqrt(2.0)
        s_hat = (centre[..., :, 1:] - centre[..., :, :-1]).abs().flatten(1).median(1).values / z
        # the trigger reads each sample's background-pixel noise, as preprocess reads a batch's
        # (_background_noise; the all-pairs s_hat above is its fallback for too few pairs)
        s_plain, s_bg = s_hat, []
        for i in range(photons.shape[0]):
            self._noise = float(s_plain[i])
            s_bg.append(self._background_noise(photons[i : i + 1], 0.0))
        self._noise = float(s_plain[0]) if len(s_plain) else self._noise
        s_hat = torch.tensor(s_bg, dtype=s_plain.dtype, device=s_plain.device)
        b = b_hat.flatten()
        lo, hi = b0 * float(c["bg_range"][0]) / 2.0, b0 * float(c["bg_range"][1]) * 2.0
        adapt = (b < lo) | (b > hi)
        tol = c.get("adapt_noise_tolerance")
        if tol:
            s0 = float(c["input_noise"]) if c.get("input_noise") else math.sqrt(2.0 * max(b0, 0.0) / 0.9)
            s_exp = s0 * torch.sqrt(b.clamp_min(1e-6) / max(b0, 1e-6))
            adapt = adapt | (s_hat < s_exp / float(tol)) | (s_hat > s_exp * float(tol))
        adapt = adapt.reshape(-1, 1, 1, 1)
        return torch.where(adapt, b_hat, torch.full_like(b_hat, b0)), torch.where(adapt, k, torch.ones_like(k))

    def _background_noise(self, photons: torch.Tensor, b_med: float) -> float:
        """Noise σ (photons/px) of the batch's background pixels, for the noise trigger of ``"auto"``.

        The median |difference| of horizontally adjacent pixels of the central frames counting only the
        pairs whose two pixels both lie at or below the frames' lower quartile, scaled for pure noise
        (:data:`_LOWER_QUARTILE_MAD`). The plain estimate (all pairs, ``self._noise``) is inflated by the
        emitters' spots on dense movies: on the training microscope's own movies at 4–10 /µm² it read
        1.6–2.5× the camera's noise, so the trigger adapted (compressed) movies the network was trained
        on and cost 4–6 JI points at 4–6 /µm² (docs/weights.md, session 8); the pixels below the median
        still hold spot tails there, those below the lower quartile hardly. ``b_med`` is unused (kept
        for the signature). When fewer than 100 pairs qualify (a few small frames) the vertical pairs count too,
        and it falls back to ``self._noise`` below 30.
        """
        centre = photons[:, photons.shape[1] // 2]
        rows = centre.reshape(-1, centre.shape[-1])
        rows = rows[:: max(1, rows.numel() // 65536)]
        a, b = rows[:, 1:], rows[:, :-1]
        q = float(torch.quantile(rows.flatten().float(), _BACKGROUND_QUANTILE))
        keep = (a <= q) & (b <= q)
        if int(keep.sum()) < 100:
            # a few small frames (a 24x24 frame has ~35 such pairs): the vertical pairs too; the all-pairs
            # fallback reads the spots of a dense frame as noise and compressed it, unlike the same frames
            # in a bigger batch
            va, vb = centre[..., 1:, :], centre[..., :-1, :]
            vkeep = (va <= q) & (vb <= q)
            d = torch.cat([(a - b).abs()[keep], (va - vb).abs()[vkeep]])
            if d.numel() < 30:
                return float(self._noise)
            return float(d.median()) / _LOWER_QUARTILE_MAD
        return float((a - b).abs()[keep].median()) / _LOWER_QUARTILE_MAD

    def preprocess(self, photons: torch.Tensor) -> torch.Tensor:
        """``(photons − input_offset) / input_scale`` for (B, 3, H, W) frames in photons.

        With ``input_adapt`` ("auto": only for a batch whose background is far outside the
        trained range; "always": every batch) the frames are first mapped to the training
        background and noise at the same SNR (module docstring); :meth:`postprocess` maps the
        photometry back.
        """
        c = self.config
        b0 = float(c["input_offset"])
        self._photometry = None
        mode = str(c.get("input_adapt", "off"))
        if mode != "off" and photons.numel():
            lo, hi = b0 * float(c["bg_range"][0]) / 2.0, b0 * float(c["bg_range"][1]) * 2.0
            b_hat, k = self._adaptation(photons, per_sample=False)
            b_med = float(b_hat.flatten()[0])
            adapt = mode == "always" or not lo <= b_med <= hi
            tol = c.get("adapt_noise_tolerance")
            if not adapt and tol:
                # noise of the training camera at this background (shot noise scales as √b)
                s0 = float(c["input_noise"]) if c.get("input_noise") else math.sqrt(2.0 * max(b0, 0.0) / 0.9)
                s_exp = s0 * math.sqrt(max(b_med, 1e-6) / max(b0, 1e-6))
                s_hat = self._background_noise(photons, b_med)
                adapt = not s_exp / float(tol) <= s_hat <= s_exp * float(tol)
            if adapt:
                photons = b0 + (photons - b_hat) / k
                self._photometry = (float(b_hat.flatten()[0]), float(k.flatten()[0]))
                log.debug("decode: batch background %.4g photons/px (trained %.4g-%.4g): adapted at equal SNR "
                          "(noise ratio %.4g)", b_med, lo, hi, self._photometry[1])
        return (photons - b0) / float(c["input_scale"])
