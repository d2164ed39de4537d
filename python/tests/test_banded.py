"""Banded attention (training and evaluation) is the same attention as the dense mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import random_events, seeded_model, small_config
from sirenrope.features import featurize
from sirenrope.model import make_batch


def _batch(cfg, lengths, starts, seed):
    seqs = [featurize(random_events(n, seed=seed + i, user=f"u{i}"), cfg)
            for i, n in enumerate(lengths)]
    return make_batch(seqs, starts, cfg)


@pytest.mark.parametrize("window", [1, 3, 8, 64])
@pytest.mark.parametrize("act_proj", [False, True])
def test_banded_forward_and_gradients_equal_the_dense_mask(window, act_proj):
    """Sequences of unequal length (padding), windows shorter than, equal to and longer than
    the batch, far start positions: outputs and every parameter's gradient agree."""
    cfg = small_config(window=window, act_proj=act_proj)
    batch = _batch(cfg, [17, 5, 1, 24], [0, 3, 2**31 - 7, 100], seed=window)
    grads = []
    outs = []
    for banded in (False, True):
        model = seeded_model(cfg, seed=41)
        out = model(batch, banded=banded)
        outs.append(out)
        loss = (out["logits"].masked_fill(~batch.valid.unsqueeze(-1), 0) ** 2).sum()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
    dense, band = outs
    valid = batch.valid
    for key in ("logits", "hidden"):
        assert float((dense[key][valid] - band[key][valid]).abs().max()) <= 1e-5, key
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        scale = max(1.0, float(g.abs().max()))
        assert float((g - grads[1][name]).abs().max()) <= 1e-5 * scale, name


def test_banded_needs_consecutive_positions():
    cfg = small_config(window=4)
    batch = _batch(cfg, [6], [0], seed=1)
    batch.pos[0, 3] += 5
    model = seeded_model(cfg, seed=2)
    with pytest.raises(ValueError, match="count up by one"):
        model(batch, banded=True)
    np.testing.assert_array_equal(model(batch)["logits"].shape, (1, 6, cfg.n_labels))
