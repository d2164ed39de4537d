"""Small builders shared by the tests: configs, seeded models and random events."""

from __future__ import annotations

import numpy as np
from sirenrope.config import ModelConfig, synthetic_schema
from sirenrope.golden import perturbed_model
from sirenrope.model import GenerativeRecommender

T0_MS = 1767571200000


def small_config(**overrides) -> ModelConfig:
    kw = dict(d_model=32, n_heads=2, n_layers=2, d_angle=4, angle_hidden=16, window=8,
              action_hidden=16, head_hidden=16, schema=synthetic_schema())
    kw.update(overrides)
    return ModelConfig(**kw)


def seeded_model(cfg: ModelConfig, seed: int = 0) -> GenerativeRecommender:
    """A model whose parameters are all moved off their initial values (pads, LN, omega...)."""
    return perturbed_model(cfg, seed)


def random_events(n: int, seed: int = 0, user: str = "u1", t0: int = T0_MS,
                  max_gap_ms: int = 6 * 3600 * 1000) -> list[dict]:
    rng = np.random.default_rng(seed)
    topics = ["world", "sports", "tech", "unknown-topic"]
    evs, t = [], t0
    for i in range(n):
        t += int(rng.integers(1, max_gap_ms))
        click = int(rng.random() < 0.3)
        evs.append({
            "event_id": f"{user}-{i}", "user_id": user, "ts_ms": t,
            "item": {"id": f"i{int(rng.integers(500))}",
                     "features": [float(x) for x in rng.normal(size=8)]},
            "action": {"click": click, "like": int(click and rng.random() < 0.4), "share": 0,
                       "dwell_s": float(rng.random() * 50 * click)},
            "attrs": {"topic": topics[int(rng.integers(4))], "surface": "feed",
                      "publisher": f"pub{int(rng.integers(40))}"},
        })
    return evs
