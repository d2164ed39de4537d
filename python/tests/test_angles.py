from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
import torch

from helpers import small_config
from sirenrope.angles import RotaryAngleNet, SineLayer, rope_frequencies, rotate
from sirenrope.features import featurize, time_features
from helpers import random_events


def _inputs(cfg, n=6, start=0, seed=0):
    ev = featurize(random_events(n, seed=seed), cfg)
    tf = torch.from_numpy(time_features(ev.ts_ms, cfg))
    return tf, torch.from_numpy(ev.cat), torch.arange(start, start + n, dtype=torch.int64)


def test_siren_initialisation_follows_the_paper():
    torch.manual_seed(0)
    first = SineLayer(13, 64, 10.0, first=True)
    later = SineLayer(64, 64, 10.0, first=False)
    assert first.linear.weight.abs().max() <= 1 / 13
    assert first.linear.weight.abs().max() > 0.9 / 13  # uses the whole range
    assert later.linear.weight.abs().max() <= math.sqrt(6 / 64) / 10
    assert later.linear.bias.abs().max() <= 1 / math.sqrt(64)
    net = RotaryAngleNet(small_config())
    assert torch.equal(net.omega.detach(), torch.full((4,), math.pi))
    assert float(net.lam.detach()) == 1.0
    assert net.sine_out.weight.abs().max() <= math.sqrt(6 / 16) / 10
    x = torch.randn(3, 13)
    assert torch.allclose(first(x), torch.sin(10.0 * first.linear(x)))


def test_siren_angles_match_the_formula_in_float64():
    cfg = small_config(angle_hidden=8)
    torch.manual_seed(1)
    net = RotaryAngleNet(cfg)
    with torch.no_grad():
        net.omega.copy_(torch.tensor([0.3, -1.2, 2.0, 0.7]))
        net.lam.fill_(1.37)
    tf, cat, pos = _inputs(cfg, start=1000)
    got = net(tf, cat, pos).double()
    x = net.net_input(tf, cat, None)
    f = (net.learned(x) * net.omega).double()  # [n, d_angle]
    P, g = cfg.n_pairs, cfg.n_pairs // cfg.d_angle
    lam = float(net.lam.detach().double())  # the float32 value of 1.37
    theta = [cfg.rope_base ** (-2.0 * j / cfg.d_head) for j in range(P)]
    for i in range(len(pos)):
        for j in range(P):
            want = (int(pos[i]) * theta[j] * lam) % (2 * math.pi) + float(f[i, j // g])
            assert abs(float(got[i, j]) - want) < 2e-6


def test_learned_part_is_the_sum_of_both_branches_and_ablations_drop_one():
    cfg = small_config()
    both = RotaryAngleNet(cfg)
    assert hasattr(both, "sine") and hasattr(both, "dnn")
    sine = RotaryAngleNet(small_config(variant="siren_sine_only"))
    dnn = RotaryAngleNet(small_config(variant="siren_dnn_only"))
    assert hasattr(sine, "sine") and not hasattr(sine, "dnn")
    assert hasattr(dnn, "dnn") and not hasattr(dnn, "sine")
    x = torch.randn(5, cfg.angle_in_dim)
    h = x
    for layer in both.sine:
        h = layer(h)
    assert torch.allclose(both.learned(x), both.sine_out(h) + both.dnn(x), atol=1e-6)


def test_plain_variants():
    for variant, expect in [("none", lambda p, th: 0.0 * p * th),
                            ("ordinal", lambda p, th: np.mod(p * th, 2 * np.pi))]:
        cfg = small_config(variant=variant)
        net = RotaryAngleNet(cfg)
        assert not list(net.parameters())
        tf, cat, pos = _inputs(cfg, start=77)
        got = net(tf, cat, pos).numpy()
        th = rope_frequencies(cfg).numpy()
        assert np.allclose(got, expect(pos.numpy()[:, None].astype(np.float64), th), atol=1e-6)


def test_time_linear_is_p_plus_c_dt_times_theta():
    cfg = small_config(variant="time_linear")
    net = RotaryAngleNet(cfg)
    with torch.no_grad():
        net.c.fill_(0.25)
    tf, cat, pos = _inputs(cfg, start=3)
    dt = torch.tensor([0.0, 1.5, 10.0, 100.25, 1e4, 2e5], dtype=torch.float64)
    got = net(tf, cat, pos, dt=dt).detach().double().numpy()
    th = rope_frequencies(cfg).numpy()
    want = np.mod((pos.numpy()[:, None] + 0.25 * dt.numpy()[:, None]) * th, 2 * np.pi)
    assert np.allclose(got, want, atol=2e-6)


def _exact_ordinal(p: int, theta: float, lam: float) -> float:
    """p * theta * lam mod 2pi with 50 significant digits (theta, lam exact binary floats)."""
    getcontext().prec = 50
    two_pi = 2 * Decimal("3.14159265358979323846264338327950288419716939937510")
    v = Decimal(p) * Decimal(theta) * Decimal(lam)
    return float(v - two_pi * (v / two_pi).to_integral_value(rounding="ROUND_FLOOR"))


@pytest.mark.parametrize("p", [0, 1, 12345, 2**24 + 1, 2**31 - 1000, 2**31 - 1])
def test_angles_accurate_to_1e_6_for_positions_below_2_pow_31(p):
    cfg = small_config()
    net = RotaryAngleNet(cfg)
    with torch.no_grad():
        net.lam.fill_(1.37)
        net.omega.zero_()  # isolate the ordinal term
    tf, cat, _ = _inputs(cfg, n=1)
    got = net(tf, cat, torch.tensor([p], dtype=torch.int64))[0].detach().double().numpy()
    lam = float(net.lam.detach().double())
    for j, th in enumerate(rope_frequencies(cfg).tolist()):
        want = _exact_ordinal(p, th, lam)
        diff = abs(got[j] - want)
        diff = min(diff, 2 * math.pi - diff)  # angles are circular
        assert diff < 1e-6, (j, got[j], want)


def test_float32_positions_would_not_be_accurate():
    """Guards the test above: the naive float32 computation misses by far more than 1e-6."""
    p, theta = 2**31 - 1000, 1.0
    naive = float(np.mod(np.float32(p) * np.float32(theta) * np.float32(1.37), np.float32(2 * np.pi)))
    assert abs(naive - _exact_ordinal(p, theta, float(np.float32(1.37)))) > 1e-3


def test_rotation_is_adjacent_pairs_and_preserves_relative_angles():
    torch.manual_seed(2)
    d, heads = 8, 2
    x = torch.randn(3, d)
    ang = torch.randn(3, d // heads // 2)
    y = rotate(x, ang, heads)
    # explicit (a, b) -> (a cos - b sin, a sin + b cos) on dims (2j, 2j+1) of each head
    for r in range(3):
        for h in range(heads):
            for j in range(d // heads // 2):
                a, b = x[r, h * 4 + 2 * j], x[r, h * 4 + 2 * j + 1]
                c, s = math.cos(ang[r, j]), math.sin(ang[r, j])
                assert abs(float(y[r, h * 4 + 2 * j]) - float(a * c - b * s)) < 1e-6
                assert abs(float(y[r, h * 4 + 2 * j + 1]) - float(a * s + b * c)) < 1e-6
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    # relative property: adding the same angle to query and key leaves q.k unchanged
    q, k = torch.randn(1, d), torch.randn(1, d)
    aq, ak, extra = torch.randn(1, 2), torch.randn(1, 2), torch.randn(1, 2)
    dot = (rotate(q, aq, heads) * rotate(k, ak, heads)).sum()
    dot2 = (rotate(q, aq + extra, heads) * rotate(k, ak + extra, heads)).sum()
    assert abs(float(dot - dot2)) < 1e-5
