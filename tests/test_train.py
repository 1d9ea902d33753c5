"""Training: losses, the fit loop (frozen/trainable, seeding, best epoch), hard negatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glovefaiss.config import LossConfig
from glovefaiss.errors import ConfigError, ModelError
from glovefaiss.train import losses
from glovefaiss.train.data import PairData
from glovefaiss.train.fit import evaluate, fit, mine_hard_negatives
from glovefaiss.train.model_dir import export_towers

from .helpers import WORDS, pair_data, random_texts, scored_data, tiny_config
from .helpers import make_two_tower as make

# ---------------------------------------------------------------------------------- losses

def test_triplet_loss_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])  # cos 0.6 → distance 0.4
    n = torch.tensor([[0.8, 0.6]])  # cos 0.8 → distance 0.2
    assert losses.TripletLoss(0.3)(q, p, n).item() == pytest.approx(0.4 - 0.2 + 0.3)
    assert losses.TripletLoss(0.3)(q, n, p).item() == pytest.approx(0.2 - 0.4 + 0.3)  # margin not yet met
    assert losses.TripletLoss(0.1)(q, n, p).item() == pytest.approx(0.0)  # met: no loss


def test_in_batch_loss_hand_computed_and_false_negatives_masked():
    q = torch.eye(3)
    d = torch.eye(3)
    t = 0.5
    loss = losses.InBatchNegativesLoss(t)(q, d)
    want = -math.log(math.exp(2) / (math.exp(2) + 2))  # own positive cos 1, others cos 0, / 0.5
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # Rows 0 and 1 share their positive document: neither is the other's negative.
    keys = torch.tensor([7, 7, 9])
    masked = losses.InBatchNegativesLoss(t)(q, d, doc_keys=keys)
    rows = [-math.log(math.exp(2) / (math.exp(2) + 1))] * 2 + [want]
    assert masked.item() == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_cosine_regression_and_cosent():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines 1, 0
    assert losses.CosineRegressionLoss()(a, b, scores=torch.tensor([1.0, 0.0])).item() == 0.0
    assert losses.CosineRegressionLoss()(a, b, scores=torch.tensor([0.5, 0.5])).item() == pytest.approx(0.25)
    cosent = losses.CoSENTLoss(1.0)
    right = cosent(a, b, scores=torch.tensor([5.0, 0.0])).item()  # ordered like the gold scores
    wrong = cosent(a, b, scores=torch.tensor([0.0, 5.0])).item()
    assert right == pytest.approx(math.log(1 + math.exp(-1)))
    assert wrong == pytest.approx(math.log(1 + math.exp(1)))


def test_spread_penalty_matches_brute_force_and_adds_to_scored_losses():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    v, n = torch.cat([a, b]).tolist(), 5
    # Every two sentences of different pairs: not i with itself, not a_i with b_i.
    terms = [sum(x * y for x, y in zip(v[i], v[j])) ** 2 for i in range(2 * n) for j in range(2 * n)
             if i != j and j != (i + n) % (2 * n)]
    want = sum(terms) / len(terms)
    assert len(terms) == 2 * n * (2 * n - 2)
    assert losses.spread_penalty(a, b).item() == pytest.approx(want, rel=1e-6)
    scores = torch.rand(5, generator=g)
    for plain, spread in ((losses.CosineRegressionLoss(), losses.CosineRegressionLoss(2.0)),
                          (losses.CoSENTLoss(0.5), losses.CoSENTLoss(0.5, 2.0))):
        assert spread(a, b, scores=scores).item() == pytest.approx(plain(a, b, scores=scores).item() + 2 * want,
                                                                     rel=1e-6)


def test_spread_only_for_scored_losses():
    with pytest.raises(ConfigError, match=r"^loss\.spread applies to scored pairs \(loss\.type cosine or cosent\), "
                                          r"not triplet; set loss\.spread to 0 \(or leave out --spread\)$"):
        losses.from_config(LossConfig(type="triplet", spread=1.0))
    with pytest.raises(ConfigError, match=r"^loss\.spread must be 0 or more, got -1\.0$"):
        losses.from_config(LossConfig(type="cosine", spread=-1.0))
    assert losses.from_config(LossConfig(type="triplet", spread=0.0)).margin == 0.2
    with pytest.raises(ConfigError, match="^unknown loss type 'hinge'"):  # the type is checked first
        losses.from_config(LossConfig(type="hinge", spread=1.0))
    one = torch.tensor([[1.0, 0.0]])
    assert losses.spread_penalty(one, one).item() == 0.0  # one pair: nothing to spread


def test_unknown_loss_type():
    with pytest.raises(ConfigError, match="unknown loss type 'hinge'; valid types: triplet, contrastive, cosine, cosent"):
        losses.from_config(LossConfig(type="hinge"))


# ---------------------------------------------------------------------------------- fit

@pytest.mark.parametrize("loss_type,negatives", [("triplet", "auto"), ("contrastive", "none"), ("triplet", "hard")])
def test_loss_decreases_on_synthetic_task(tiny_vectors, loss_type, negatives):
    data = pair_data(negatives=negatives == "auto")
    model, tok, config, vectors = make(tiny_vectors, data, **{"loss.type": loss_type, "loss.temperature": 0.1})
    res = fit(model, tok, data, config, epochs=6, seed=0, negatives=negatives, hard_negatives_k=5,
              export=lambda m: export_towers(m, tok, config, vectors), progress=False)
    loss = [e.loss for e in res.history[1:]]
    assert loss[-1] < 0.6 * loss[0], loss


def test_cosine_loss_decreases_and_spearman_rises(tiny_vectors):
    data, val = scored_data(seed=0), scored_data(seed=1)
    model, tok, config, vectors = make(tiny_vectors, data, hidden_dim=8, **{"loss.type": "cosine"})
    res = fit(model, tok, data, config, epochs=8, seed=0, validation=val,
              export=lambda m: export_towers(m, tok, config, vectors), progress=False)
    loss = [e.loss for e in res.history[1:]]
    assert loss[-1] < 0.5 * loss[0], loss
    assert res.metric == "spearman"
    assert res.best.metrics["spearman"] > res.history[0].metrics["spearman"] + 10


def test_spread_pushes_sentences_of_different_pairs_apart(tiny_vectors):
    data = scored_data(seed=0)
    penalty = {}
    for spread in (0.0, 5.0):
        model, tok, config, vectors = make(tiny_vectors, data, hidden_dim=8,
                                           **{"loss.type": "cosine", "loss.spread": spread})
        fit(model, tok, data, config, epochs=6, seed=0, progress=False)
        with torch.no_grad():
            a = model.encode_query(tok.encode_texts(data.first).batch(np.arange(len(data))))
            b = model.encode_document(tok.encode_texts(data.second).batch(np.arange(len(data))))
        penalty[spread] = losses.spread_penalty(a, b).item()
    assert penalty[5.0] < 0.7 * penalty[0.0], penalty


def test_best_epoch_ties_broken_by_the_second_metric(tiny_vectors):
    data, val = pair_data(), pair_data(n=6, seed=5)  # at most 6 documents: recall@10 is always 100
    model, tok, config, vectors = make(tiny_vectors, data, **{"loss.type": "contrastive", "loss.temperature": 0.1})
    res = fit(model, tok, data, config, epochs=4, seed=0, validation=val, negatives="none",
              export=lambda m: export_towers(m, tok, config, vectors), progress=False)
    assert {e.metrics["recall@10"] for e in res.history} == {100.0}
    ndcg = [e.metrics["ndcg@10"] for e in res.history]
    assert res.best_epoch == int(np.argmax(ndcg)) > 0, ndcg  # epoch 0 would win without the tie-break


def test_frozen_rows_bit_identical_projection_learns(tiny_vectors):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data, trainable=False, hidden_dim=8)
    before = model.query_embedding.weight.detach().clone()
    proj_before = model.query_tower.projection.weight.detach().clone()
    fit(model, tok, data, config, epochs=3, seed=0, progress=False)
    assert torch.equal(model.query_embedding.weight, before)
    assert not torch.equal(model.query_tower.projection.weight, proj_before)
    # Exported rows are the GloVe rows, bit for bit.
    q, _ = export_towers(model, tok, config, vectors)
    assert np.array_equal(q.matrix, np.asarray(vectors.matrix))


def test_trainable_rows_change(tiny_vectors):
    data = pair_data()
    model, tok, config, vectors = make(tiny_vectors, data, trainable=True)
    before = model.query_embedding.weight.detach().clone()
    fit(model, tok, data, config, epochs=3, seed=0, progress=False)
    after = model.query_embedding.weight.detach()
    changed = (after != before).any(dim=1)
    assert not changed[0]  # padding stays zero
    assert changed[1:].float().mean() > 0.9  # (nearly) every training word moved
    assert torch.count_nonzero(after[0]) == 0


def test_nothing_to_train_is_an_error(tiny_vectors):
    data = pair_data()
    model, tok, config, _ = make(tiny_vectors, data, trainable=False, hidden_dim=None)
    with pytest.raises(ModelError, match="nothing to train: embedding.trainable is false and encoder.hidden_dim is null; "
                                         "pass --trainable or --hidden-dim D"):
        fit(model, tok, data, config, epochs=1, progress=False)


def test_seeded_and_reproducible(tiny_vectors):
    data = pair_data()

    def run(seed, threads=1):
        model, tok, config, _ = make(tiny_vectors, data, hidden_dim=6, dropout=0.2)
        fit(model, tok, data, config, epochs=2, seed=seed, negatives="random", progress=False, threads=threads)
        return model.state_dict()

    before = torch.get_num_threads()
    a, b, c, d = run(3), run(3), run(4), run(3, threads=2)
    assert torch.get_num_threads() == before  # restored
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], d[k]) for k in a)  # the thread count does not change the result
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_best_epoch_kept(tiny_vectors):
    data, val = pair_data(seed=0), pair_data(n=16, seed=5)
    model, tok, config, vectors = make(tiny_vectors, data, **{"optimizer.lr": 0.3})
    export = lambda m: export_towers(m, tok, config, vectors)  # noqa: E731
    res = fit(model, tok, data, config, epochs=5, seed=0, validation=val, export=export, progress=False)
    values = [(e.metrics["recall@10"], e.metrics["ndcg@10"]) for e in res.history]
    assert len(values) == 6 and res.metric == "recall@10"
    assert res.best_epoch == max(range(6), key=lambda i: (values[i], -i))  # nDCG breaks ties; then the first
    # The model holds the best epoch's weights.
    now = evaluate(export(model), val)
    assert (now["recall@10"], now["ndcg@10"]) == pytest.approx(values[res.best_epoch], abs=1e-3)


def test_loss_and_data_kind_must_match(tiny_vectors):
    data = scored_data()
    model, tok, config, _ = make(tiny_vectors, data)
    with pytest.raises(ConfigError, match="loss.type 'triplet' needs \\(query, positive\\) pairs, but the training "
                                          "data \\(synthetic-scored\\) has scored sentence pairs; use loss.type "
                                          "\\(--loss\\) cosine or cosent"):
        fit(model, tok, data, config, epochs=1, progress=False)


def test_hard_negatives_are_top_ranked_non_positives(tiny_vectors):
    data = pair_data(negatives=False)
    model, tok, config, vectors = make(tiny_vectors, data)
    q_enc, d_enc = export_towers(model, tok, config, vectors)
    k = 4
    hard = mine_hard_negatives((q_enc, d_enc), data, k)
    rel = data.relevant()
    docs = d_enc.encode(data.documents)
    for i, (q, _) in enumerate(data.pairs.tolist()):
        cands = [d for d in hard[i].tolist() if d >= 0]
        assert cands and not set(cands) & rel[q]
        scores = docs @ q_enc.encode([data.queries[q]])[0]
        order = [d for d in np.argsort(-scores, kind="stable").tolist() if d not in rel[q]]
        # the same documents as a brute-force ranking (ties may swap places at the cut)
        assert np.allclose(sorted(scores[cands]), sorted(scores[order[: len(cands)]]), atol=1e-6)


@pytest.mark.parametrize("frequencies", ["corpus", "wordfreq"])
def test_sif_initialisation_equals_the_served_sif_tower(tmp_path, tiny_vectors, frequencies):
    """pooling: sif + components, folded into rows and projection, encodes as the build's SIF tower."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from glovefaiss.tower import sif as weighting
    from glovefaiss.tower.encoder import encoder_from_config
    from glovefaiss.tower.model_dir import load_towers
    from glovefaiss.train.fit import train

    full = pair_data(negatives=False)
    rows = [(full.queries[q], full.documents[d]) for q, d in full.pairs.tolist()]
    rows = [r for r in rows if not {"boat", "river"} & set(" ".join(r).split())]
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"query": [r[0] for r in rows], "positive": [r[1] for r in rows]}), path)
    data = PairData.from_triplets(rows)
    config = tiny_config(tiny_vectors[0], **{"pooling.weighting": "sif", "pooling.frequencies": frequencies,
                                             "pooling.sif_a": 0.001, "pooling.components": 2,
                                             "encoder.hidden_dim": 8, "loss.type": "contrastive"})
    train(path, tmp_path / "m", config, epochs=0, progress=False)
    q, d, info = load_towers(tmp_path / "m")
    assert info["training"]["pooling_init"]["components"] == 2

    texts = data.queries + data.documents
    ref, _ = weighting.prepare_for_texts(encoder_from_config(config)[0], config.pooling, texts)
    probe = texts[:10] + ["boat river", "the river cat", ""]  # "boat", "river": outside the training data
    np.testing.assert_allclose(q.encode(probe), ref.encode(probe), atol=1e-5)
    np.testing.assert_allclose(d.encode(probe), ref.encode(probe), atol=1e-5)
    # Without the components the vectors differ (the test can fail).
    plain, _ = weighting.prepare_for_texts(encoder_from_config(config)[0],
                                           config.pooling.__class__(weighting="sif", frequencies=frequencies, sif_a=0.001),
                                           texts)
    assert not np.allclose(q.encode(probe[:10]), plain.encode(probe[:10]), atol=1e-3)
    if frequencies == "wordfreq":  # words outside the model keep their SIF-scaled rows
        w = ref.weights[ref.vocabulary.lookup(["river"])[0]]
        assert w < 0.9
        np.testing.assert_allclose(q.matrix[q.vocabulary.lookup(["river"])[0]],
                                   w * tiny_vectors[2][tiny_vectors[1].index("river")], rtol=1e-6)


def test_validation_metrics_match_pytrec_eval_and_scipy(tiny_vectors):
    """Validation scores what a brute-force cosine ranking scores under trec_eval, and scipy's correlations."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    texts = list(dict.fromkeys(t for t in random_texts(rng, 200, WORDS, oov_rate=0.0) if len(t.split()) >= 4))
    data = PairData.from_triplets([(texts[i], texts[i + 1]) for i in range(0, 80, 2)]
                                  + [(texts[i], texts[i + 3]) for i in range(0, 40, 4)])  # some queries: 2 relevant
    model, tok, config, vectors = make(tiny_vectors, data)
    q_enc, d_enc = export_towers(model, tok, config, vectors)
    got = evaluate((q_enc, d_enc), data)
    docs = d_enc.encode(data.documents)
    rel = data.relevant()
    run, qrels = {}, {}
    for q in sorted(rel):
        scores = docs @ q_enc.encode([data.queries[q]])[0]
        assert len(set(np.round(scores, 5))) == len(scores)  # no ties: any correct ranking is the same
        run[str(q)] = {str(d): float(s) for d, s in enumerate(scores)}
        qrels[str(q)] = {str(d): 1 for d in rel[q]}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"}).evaluate(run)
    assert got["ndcg@10"] == pytest.approx(100 * np.mean([r["ndcg_cut_10"] for r in ref.values()]), abs=1e-3)
    assert got["recall@10"] == pytest.approx(100 * np.mean([r["recall_10"] for r in ref.values()]), abs=1e-3)
    sdata = scored_data(seed=2)
    model, tok, config, vectors = make(tiny_vectors, sdata)
    q_enc, d_enc = export_towers(model, tok, config, vectors)
    got = evaluate((q_enc, d_enc), sdata)
    # Cosines in float64, as validation and eval sts take them (float32 rounding reorders near-ties).
    cos = (q_enc.encode(sdata.first).astype(np.float64) * d_enc.encode(sdata.second).astype(np.float64)).sum(axis=1)
    assert got["spearman"] == pytest.approx(100 * stats.spearmanr(cos, sdata.scores)[0], abs=1e-9)
    assert got["pearson"] == pytest.approx(100 * stats.pearsonr(cos, sdata.scores)[0], abs=1e-9)
