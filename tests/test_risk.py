"""CVaR against its definition and its properties (the convention of gdrdd.robust.risk)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdrdd.robust.risk import CVaR, SumOverGroups, cvar, cvar_tail_weights, group_weights

losses_st = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12)


def brute_force_cvar(losses: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """min over eta of eta + 1/(1-alpha) sum w max(L - eta, 0); the minimum lies at one of the losses."""
    w = weights / weights.sum()
    objective = lambda eta: eta + (w * np.maximum(losses - eta, 0)).sum() / (1 - alpha)  # noqa: E731
    candidates = np.concatenate([losses, np.linspace(losses.min() - 1, losses.max() + 1, 2001)])
    return min(objective(eta) for eta in candidates)


@settings(max_examples=150, deadline=None)
@given(losses=losses_st, data=st.data(), alpha=st.floats(0, 0.99))
def test_cvar_equals_brute_force_minimisation(losses, data, alpha):
    weights = data.draw(st.lists(st.floats(0.01, 10), min_size=len(losses), max_size=len(losses)))
    x, w = np.array(losses), np.array(weights)
    got = float(cvar(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64), alpha))
    assert got == pytest.approx(brute_force_cvar(x, w, alpha), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(losses=losses_st, a=st.floats(0, 0.99), b=st.floats(0, 0.99))
def test_cvar_is_monotone_in_alpha(losses, a, b):
    x, w = torch.tensor(losses, dtype=torch.float64), torch.ones(len(losses), dtype=torch.float64)
    lo, hi = sorted((a, b))
    assert float(cvar(x, w, lo)) <= float(cvar(x, w, hi)) + 1e-9


@settings(max_examples=100, deadline=None)
@given(losses=losses_st, data=st.data())
def test_cvar_mean_at_zero_and_max_near_one(losses, data):
    weights = data.draw(st.lists(st.floats(0.01, 10), min_size=len(losses), max_size=len(losses)))
    x, w = torch.tensor(losses, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
    assert float(cvar(x, w, 0.0)) == pytest.approx(float((x * w).sum() / w.sum()), rel=1e-9, abs=1e-9)
    # Once the tail mass is below the smallest weight, only the worst group is left.
    alpha = 1 - 0.5 * float(w.min() / w.sum())
    assert float(cvar(x, w, alpha)) == pytest.approx(float(x.max()), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(losses=losses_st, alpha=st.floats(0, 0.99), seed=st.integers(0, 1000))
def test_cvar_is_invariant_to_group_order(losses, alpha, seed):
    x = torch.tensor(losses, dtype=torch.float64)
    w = torch.rand(len(losses), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    perm = torch.randperm(len(losses), generator=torch.Generator().manual_seed(seed + 1))
    assert float(cvar(x[perm], w[perm], alpha)) == pytest.approx(float(cvar(x, w, alpha)), rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(losses=losses_st, alpha=st.floats(0, 0.99))
def test_cvar_gradient_weights_sum_to_one_and_match_tail_weights(losses, alpha):
    x = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    w = torch.linspace(1, 2, len(losses), dtype=torch.float64)
    cvar(x, w, alpha).backward()
    assert float(x.grad.sum()) == pytest.approx(1.0, rel=1e-9)
    assert torch.all(x.grad >= 0)
    assert torch.allclose(x.grad, cvar_tail_weights(x.detach(), w, alpha))


def test_cvar_worked_example():
    # Four groups of equal mass: alpha 0.5 averages the worst two, 0.75 keeps the worst one.
    x, w = torch.tensor([1.0, 5.0, 3.0, 2.0]), torch.ones(4)
    assert float(cvar(x, w, 0.0)) == pytest.approx(2.75)
    assert float(cvar(x, w, 0.5)) == pytest.approx(4.0)
    assert float(cvar(x, w, 0.75)) == pytest.approx(5.0)
    # alpha 0.6: tail 0.4 = 0.25 of the worst + 0.15 of the second worst.
    assert float(cvar(x, w, 0.6)) == pytest.approx((0.25 * 5 + 0.15 * 3) / 0.4)


def test_weightings_and_empty_groups():
    counts = torch.tensor([3.0, 1.0, 0.0, 4.0])
    assert torch.allclose(group_weights(counts, "mass"), torch.tensor([3, 1, 0, 4]) / 8.0)
    assert torch.allclose(group_weights(counts, "uniform"), torch.tensor([1, 1, 0, 1]) / 3.0)
    # An empty group never enters the tail, however large its (meaningless) loss.
    out = CVaR(0.9, "uniform")(torch.tensor([1.0, 2.0, 100.0, 3.0]), counts)
    assert out.tail_weights[2] == 0 and float(out.value) == pytest.approx(3.0)


def test_scale_multiplies_objective_not_value():
    out = CVaR(0.5, "mass", scale=10.0)(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))
    assert float(out.value) == pytest.approx(3.0) and float(out.objective) == pytest.approx(30.0)
    plain = SumOverGroups()(torch.tensor([1.0, 3.0]), torch.tensor([5.0, 5.0]))
    assert float(plain.objective) == pytest.approx(4.0)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5])
def test_alpha_outside_range_is_refused(alpha):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        CVaR(alpha)
