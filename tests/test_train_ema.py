"""Weight averaging during training (``fit(ema=...)`` / ``optimizer.ema``): what is averaged and what is kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glovefaiss.errors import ConfigError
from glovefaiss.train.fit import ema_decay, evaluate, fit
from glovefaiss.train.model_dir import export_towers

from .helpers import make_two_tower as make
from .helpers import scored_data


def _scored_model(tiny_vectors, data, **over):
    return make(tiny_vectors, data, hidden_dim=8, dropout=0.1, **{"loss.type": "cosine", **over})


def _params(model):
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def test_default_is_no_averaging(tiny_vectors):
    data = scored_data(seed=0)
    runs = []
    for kw in ({}, {"ema": 0.0}):
        model, tok, config, _ = _scored_model(tiny_vectors, data)
        fit(model, tok, data, config, epochs=2, seed=0, progress=False, **kw)
        runs.append(model.state_dict())
    assert ema_decay(config) == 0.0  # the config has no optimizer.ema: off
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_kept_weights_are_the_moving_average_of_the_trajectory(tiny_vectors):
    """Without validation the model ends with avg = d * avg + (1 - d) * weights after every step.

    The reference trajectory comes from a run without averaging (recorded after each optimizer
    step): averaging must neither change the trajectory nor average anything else.
    """
    data = scored_data(seed=0)
    decay = 0.8
    model, tok, config, _ = _scored_model(tiny_vectors, data)
    avg = _params(model)
    steps = 0

    def record(opt, args, kwargs):
        nonlocal steps
        steps += 1
        for a, p in zip(avg, (p for g in opt.param_groups for p in g["params"])):
            a.mul_(decay).add_(p.detach(), alpha=1 - decay)

    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(record)
    try:
        fit(model, tok, data, config, epochs=3, seed=0, progress=False)
    finally:
        handle.remove()
    last = _params(model)
    assert steps == 3 * 8  # 64 pairs, batch 8

    model, tok, config, _ = _scored_model(tiny_vectors, data)
    fit(model, tok, data, config, epochs=3, seed=0, progress=False, ema=decay)
    got = _params(model)
    for g, a, last_w in zip(got, avg, last):
        torch.testing.assert_close(g, a, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(g, last_w, atol=1e-4)  # the average, not the last weights


@pytest.mark.parametrize("lr", [0.05, 0.5])
def test_validation_scores_and_keeps_the_average(tiny_vectors, lr):
    """The kept model scores what its epoch scored, also when the best epoch is the last one."""
    data, val = scored_data(seed=0), scored_data(seed=1)
    model, tok, config, vectors = _scored_model(tiny_vectors, data, **{"optimizer.lr": lr})
    export = lambda m: export_towers(m, tok, config, vectors)  # noqa: E731
    res = fit(model, tok, data, config, epochs=4, seed=0, validation=val, export=export, progress=False, ema=0.7)
    values = [e.metrics["spearman"] for e in res.history]
    assert res.best_epoch == int(np.argmax(values))
    assert evaluate(export(model), val)["spearman"] == pytest.approx(values[res.best_epoch], abs=1e-3)
    # The exported numpy tower serves the averaged torch tower.
    texts = val.first[:10]
    q, _ = export(model)
    with torch.no_grad():
        want = model.encode_query(tok.encode_texts(texts).batch(np.arange(len(texts)))).numpy()
    np.testing.assert_allclose(q.encode(list(texts)), want, atol=1e-5)


def test_train_records_the_decay_and_cpu_time(tmp_path, tiny_vectors):
    from glovefaiss.tower.model_dir import load_towers
    from glovefaiss.train.fit import train

    data = scored_data(seed=0)
    path = tmp_path / "pairs.csv"
    path.write_text("".join(f"{a},{b},{s:.3f}\n" for a, b, s in zip(data.first, data.second, data.scores)))
    config = make(tiny_vectors, data, hidden_dim=8, **{"loss.type": "cosine"})[2]
    train(path, tmp_path / "m", config, epochs=2, progress=False, ema=0.9)
    info = load_towers(tmp_path / "m")[2]["training"]
    assert info["ema"] == 0.9
    assert info["cpu_seconds_per_epoch"] > 0
    assert all(e["cpu_seconds"] > 0 for e in info["history"][1:])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_decay_out_of_range(tiny_vectors, bad):
    data = scored_data(seed=0)
    model, tok, config, _ = _scored_model(tiny_vectors, data)
    with pytest.raises(ConfigError, match=r"optimizer.ema must be in \[0, 1\)"):
        fit(model, tok, data, config, epochs=1, progress=False, ema=bad)
