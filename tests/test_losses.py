import math

import torch

from cascade.losses import LossWeights, cascade_loss, distribution_from_labels, distribution_kl, stage_consistency


class Out:
    def __init__(self, logits, stage_logits, stage_embeddings=None):
        self.logits, self.stage_logits, self.stage_embeddings = logits, stage_logits, stage_embeddings


def test_terms_and_total():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    stages = torch.randn(3, 5, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0])
    p = torch.softmax(torch.randn(5, 4), -1)
    w = LossWeights(lambda_dist=0.7, alpha=0.3)
    terms = cascade_loss(Out(logits, stages), labels, p, w)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    q = torch.softmax(logits, -1)
    kl = (p * (p.log() - q.log())).sum(-1).mean()
    cons = torch.stack([(q * (q.log() - torch.log_softmax(s, -1))).sum(-1).mean() for s in stages]).mean()
    assert torch.allclose(terms["ce"], ce)
    assert torch.allclose(terms["dist_kl"], kl, atol=1e-6)
    assert torch.allclose(terms["consistency"], cons, atol=1e-6)
    assert torch.allclose(terms["total"], ce + 0.7 * kl + 0.3 * cons, atol=1e-6)


def test_consistency_does_not_push_fused():
    logits = torch.randn(4, 3, requires_grad=True)
    stages = torch.randn(2, 4, 3, requires_grad=True)
    stage_consistency(logits, stages).backward()
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0
    assert torch.count_nonzero(stages.grad) > 0


def test_one_hot_and_smoothed_targets():
    t = distribution_from_labels(torch.tensor([1, 0]), 3)
    assert torch.equal(t, torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    s = distribution_from_labels(torch.tensor([2]), 3, smoothing=0.3)
    assert torch.allclose(s, torch.tensor([[0.1, 0.1, 0.8]]))
    assert torch.allclose(s.sum(-1), torch.ones(1))
    # Same convention as the data package and as cross_entropy's label_smoothing.
    from cascade.data import distribution_from_label

    assert torch.allclose(s[0], torch.tensor(distribution_from_label(2, 3, 0.3), dtype=torch.float32))
    logits = torch.randn(1, 3)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([2]), label_smoothing=0.3)
    assert torch.allclose(-(s * torch.log_softmax(logits, -1)).sum(), ce)


def test_kl_zero_entries_are_finite():
    p = torch.tensor([[1.0, 0.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0, 0.0]])
    assert math.isclose(float(distribution_kl(logits, p)), math.log(3), rel_tol=1e-6)


def test_optional_terms():
    logits = torch.randn(4, 3)
    stages = torch.randn(2, 4, 3)
    emb = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    frozen = torch.randn(4, 8)
    terms = cascade_loss(Out(logits, stages, emb), torch.tensor([0, 1, 2, 0]), None,
                         LossWeights(stage_ce=0.5, distill=0.2), frozen_embedding=frozen)
    assert {"stage_ce", "distill"} <= set(terms)
    assert torch.isfinite(terms["total"])
