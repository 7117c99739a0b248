import math

import pytest
import torch

from cascade.nga import SigmaBank, aggregate_stages, nga_weights


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 11])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_normalised_weights_sum_to_one_and_rise(depth, sigma):
    w = nga_weights(depth, sigma)
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    assert bool((w[1:] > w[:-1]).all())


def test_formula_values_d3():
    g = nga_weights(3, 1.0, mode="free")
    expected = torch.tensor([math.exp(-4.5), math.exp(-2.0), math.exp(-0.5)], dtype=g.dtype)
    assert torch.allclose(g, expected)
    assert torch.allclose(nga_weights(3, 1.0), expected / expected.sum())


def test_limits():
    tiny = nga_weights(4, 1e-3)
    assert torch.allclose(tiny, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=tiny.dtype))
    huge = nga_weights(4, 1e4)
    assert torch.allclose(huge, torch.full((4,), 0.25, dtype=huge.dtype), atol=1e-6)
    assert torch.equal(nga_weights(3, 1.0, "last"), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_sigma_gradient_finite():
    bank = SigmaBank([1.0, 0.5])
    feats = torch.randn(3, 5, 8)
    target = torch.randn(5, 8)
    z = aggregate_stages(feats, [nga_weights(3, bank.sigma[0])], [[1, 2, 3]])[0]
    loss = ((z - target) ** 2).mean()
    loss.backward()
    assert torch.isfinite(bank.log_sigma.grad).all()
    assert bank.log_sigma.grad[0] != 0


def test_sigma_bank_set_rejects_bad_values():
    bank = SigmaBank([1.0, 1.0])
    bank.set([2.0, 3.0])
    assert torch.allclose(bank.sigma, torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="sigma"):
        bank.set([1.0, -1.0])
    with pytest.raises(ValueError, match="sigma"):
        bank.set([1.0])
