"""SIREN-RoPE rotation angles and the adjacent-pair rotation (DESIGN section 1).

For pair j of token i (P = d_head/2 pairs, d_angle learned components, g = P/d_angle):

    Theta_ij = f(x_i)[j // g] * omega[j // g] + (p_i * theta_j * lambda mod 2pi)
    theta_j  = base^(-2j/d_head)
    f(x)     = f_sin(x) + f_dnn(x)

The ordinal term is formed and reduced modulo 2pi in float64 before it meets float32, so
angles stay exact to ~1e-7 rad for positions up to 2^31 and beyond. Variants (one switch):

    none             Theta = 0 (no rotation)
    ordinal          Theta = p * theta                      (plain RoPE)
    time_linear      Theta = (p + c * dt) * theta           (TO-RoPE baseline, c learned)
    siren            Theta = (f_sin + f_dnn)(x) * omega + p * theta * lambda
    siren_sine_only  as siren with f = f_sin
    siren_dnn_only   as siren with f = f_dnn
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import SIREN_VARIANTS, ModelConfig

TWO_PI = 2.0 * math.pi


class SineLayer(nn.Module):
    """sin(w0 * (W x + b)) with the SIREN initialisation (Sitzmann et al. 2020)."""

    def __init__(self, d_in: int, d_out: int, w0: float, first: bool):
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(d_in, d_out)
        bound = 1.0 / d_in if first else math.sqrt(6.0 / d_in) / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-1.0 / math.sqrt(d_in), 1.0 / math.sqrt(d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


def rope_frequencies(cfg: ModelConfig) -> torch.Tensor:
    """theta_j = base^(-2j/d_head) for j < P, float64."""
    j = torch.arange(cfg.n_pairs, dtype=torch.float64)
    return torch.pow(torch.tensor(cfg.rope_base, dtype=torch.float64), -2.0 * j / cfg.d_head)


class RotaryAngleNet(nn.Module):
    """Maps an event's time features, categorical attributes and position to P angles.

    Inputs per token: ``time_feats`` [..., 5] float32 (see features.time_features),
    ``cat`` [..., n_cat] int64 table rows, ``pos`` [...] int64 absolute positions,
    ``dt`` [...] float64 (time_linear only), ``rev`` [...] float32 (reverse-order ablation
    only). Output: [..., P] float32 angles. Every term depends on the token alone, which is
    what makes rotated keys cacheable.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.variant = cfg.variant
        self.n_pairs = cfg.n_pairs
        self.group = cfg.n_pairs // cfg.d_angle
        self.reverse_order = cfg.reverse_order
        self.time_inputs = cfg.angle_time_inputs
        self.register_buffer("theta", rope_frequencies(cfg), persistent=False)
        if cfg.variant == "time_linear":
            self.c = nn.Parameter(torch.ones(1))
        if cfg.variant in SIREN_VARIANTS:
            d_in, h, w0 = cfg.angle_in_dim, cfg.angle_hidden, cfg.w0
            self.cat = nn.ModuleDict(
                {c.name: nn.Embedding(c.rows, c.dim) for c in cfg.schema.categorical})
            if cfg.variant != "siren_dnn_only":
                self.sine = nn.ModuleList([SineLayer(d_in, h, w0, True),
                                           SineLayer(h, h, w0, False),
                                           SineLayer(h, h, w0, False)])
                self.sine_out = nn.Linear(h, cfg.d_angle)
                bound = math.sqrt(6.0 / h) / w0
                with torch.no_grad():
                    self.sine_out.weight.uniform_(-bound, bound)
                    self.sine_out.bias.uniform_(-1.0 / math.sqrt(h), 1.0 / math.sqrt(h))
            if cfg.variant != "siren_sine_only":
                self.dnn = nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                         nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.d_angle))
            self.omega = nn.Parameter(torch.full((cfg.d_angle,), math.pi))
            self.lam = nn.Parameter(torch.ones(1))
        self._cat_names = [c.name for c in cfg.schema.categorical]

    def net_input(self, time_feats: torch.Tensor, cat: torch.Tensor,
                  rev: torch.Tensor | None) -> torch.Tensor:
        # "offset": T~ alone, the last time feature (no daily or weekly cycle).
        parts = [time_feats if self.time_inputs == "all" else time_feats[..., -1:]]
        if self.reverse_order:
            assert rev is not None, "reverse_order needs the reverse-order feature"
            parts.append(rev.unsqueeze(-1))
        for k, name in enumerate(self._cat_names):
            parts.append(self.cat[name](cat[..., k]))
        return torch.cat(parts, dim=-1)

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): [..., d_angle]."""
        out = 0
        if hasattr(self, "sine"):
            h = x
            for layer in self.sine:
                h = layer(h)
            out = out + self.sine_out(h)
        if hasattr(self, "dnn"):
            out = out + self.dnn(x)
        return out

    def forward(self, time_feats: torch.Tensor, cat: torch.Tensor, pos: torch.Tensor,
                dt: torch.Tensor | None = None, rev: torch.Tensor | None = None) -> torch.Tensor:
        p = pos.to(torch.float64).unsqueeze(-1)
        if self.variant == "none":
            return torch.zeros(*pos.shape, self.n_pairs, dtype=torch.float32, device=pos.device)
        if self.variant == "ordinal":
            return torch.remainder(p * self.theta, TWO_PI).to(torch.float32)
        if self.variant == "time_linear":
            assert dt is not None, "time_linear needs dt"
            steps = p + self.c.to(torch.float64) * dt.to(torch.float64).unsqueeze(-1)
            return torch.remainder(steps * self.theta, TWO_PI).to(torch.float32)
        ordinal = torch.remainder(p * self.theta * self.lam.to(torch.float64), TWO_PI)
        f = self.learned(self.net_input(time_feats, cat, rev)) * self.omega
        f = torch.repeat_interleave(f, self.group, dim=-1)
        return ordinal.to(torch.float32) + f


def rotate(x: torch.Tensor, angles: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rotate adjacent pairs (2j, 2j+1) of every head by angles[..., j] (GPT-J style).

    x: [..., n_heads * d_head]; angles: [..., d_head/2], shared by all heads.
    """
    shape = x.shape
    xh = x.reshape(*shape[:-1], n_heads, -1, 2)
    a, b = xh[..., 0], xh[..., 1]
    # cos/sin in x's precision: float32 serving as before, and a float64 reference (golden
    # files) that does not depend on a torch version's float32 vector sin/cos.
    angles = angles.to(x.dtype)
    cos = torch.cos(angles).unsqueeze(-2)
    sin = torch.sin(angles).unsqueeze(-2)
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return out.reshape(shape)
