"""Starting a run from a trained model whose config differs only by what can start as the identity
(`--init-from`): gains resampled to new rate points, new modules that change nothing until trained.
Shared by the rate-annealing stages (train/trainer.py) and the decoder stage (train/guided_decoder.py).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import BLOCK_FIELDS, SODECConfig
from ..models.sodec import DIFFUSION_PREFIX, SODECModel, split_state


def resample_gains(gains: torch.Tensor, old: tuple[float, ...], new: tuple[float, ...]) -> torch.Tensor:
    """Gain vectors (R, M) of rate points `old` carried to rate points `new`: log-gain linear in
    log-lambda between points and extrapolated along the end segments, so a model warm-started
    with extra rate points begins near where training would take them."""
    lg = gains.detach().abs().clamp(min=1e-8).double().log()
    if len(old) == 1:
        return lg[:1].exp().repeat(len(new), 1).to(gains.dtype)
    xo = [math.log(v) for v in old]
    rows = []
    for lam in new:
        x = math.log(lam)
        i = min(max(1, sum(v < x for v in xo)), len(xo) - 1)
        t = (x - xo[i - 1]) / (xo[i] - xo[i - 1])
        rows.append(lg[i - 1] + t * (lg[i] - lg[i - 1]))
    return torch.stack(rows).exp().to(gains.dtype)


def warm_start(src: SODECModel, cfg: SODECConfig) -> SODECModel:
    """`src` as the start of training `cfg`: as is when the configs agree, else with its gain
    vectors resampled to other rate points and/or new modules that start as the identity (a
    context model, hyper gains of 1, residual blocks appended to any of the BLOCK_FIELDS, a guidance
    modulation of zero), so the new model codes
    and decodes exactly what `src` did. Anything else is refused, since weights of another shape
    cannot start a run."""
    keep: dict[str, object] = {}
    fresh_prefixes = [DIFFUSION_PREFIX]
    if cfg.hyper_gain and not src.cfg.hyper_gain:  # gains of 1: z is coded as before
        keep["hyper_gain"] = False
        fresh_prefixes.append("compression.z_gain")
    if src.cfg.context_model == "none" and cfg.context_model != "none":
        keep |= {"context_model": src.cfg.context_model, "context_channels": src.cfg.context_channels}
        fresh_prefixes.append("compression.context.")
    if cfg.guidance_channels and not src.cfg.guidance_channels:  # a modulation of zero: decodes as before
        keep["guidance_channels"] = 0
        fresh_prefixes.append("fidelity_decoder.modulation.")
    for field, prefix in BLOCK_FIELDS.items():
        old, new = getattr(src.cfg, field), getattr(cfg, field)
        if new > old:  # blocks appended after the trained ones
            keep[field] = old
            fresh_prefixes += [f"{prefix}{i}." for i in range(old, new)]
    same_shape = dataclasses.replace(src.cfg, name=cfg.name, rate_lambdas=cfg.rate_lambdas, extra=cfg.extra,
                                     default_guidance=cfg.default_guidance) == (
        dataclasses.replace(cfg, **keep))
    if not same_shape:
        raise ValueError(f"--init-from model {src.cfg.name!r} has another architecture than config {cfg.name!r}; "
                         "only the name, rate_lambdas, the default guidance, an added context model, hyper gain, "
                         "blocks or guidance modulation may differ")
    if src.cfg == cfg:
        return src
    model = SODECModel(cfg)
    state, _ = split_state(src.state_dict())
    comp = "compression."
    for key in ("gain", "inverse_gain", "z_gain"):
        # Resampled only where the rate points differ: the interpolation is not bit-exact at shared points, and a
        # model that keeps its parent's decoder (an encoder-only run) must keep its gains exactly.
        if comp + key in state and src.cfg.rate_lambdas != cfg.rate_lambdas:
            state[comp + key] = resample_gains(state[comp + key], src.cfg.rate_lambdas, cfg.rate_lambdas)
    missing, unexpected = model.load_state_dict(state, strict=False)
    fresh = [k for k in missing if not k.startswith(tuple(fresh_prefixes))]
    if fresh or unexpected:
        raise ValueError(f"--init-from weights do not fit config {cfg.name!r}: "
                         f"missing {fresh}, unexpected {unexpected}")
    model.diffusion = src.diffusion
    return model
