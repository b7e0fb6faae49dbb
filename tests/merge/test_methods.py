import pytest
import torch

from guard.errors import InputError
from guard.merge import merge_state_dicts, merge_tensors
from guard.merge.methods import REGISTRY

ALL = ("linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties",
       "model_stock", "slerp")


def test_registry_names_every_method_once():
    assert REGISTRY.names() == sorted(ALL)
    with pytest.raises(ValueError):
        REGISTRY.register(REGISTRY.get("ties"))


def test_task_arithmetic_is_base_plus_scaled_weighted_sum():
    base = torch.randn(8, 8)
    e1, e2 = base + 1.0, base - 0.25
    merged = merge_tensors("task_arithmetic", base, [e1, e2], scale=0.5)
    torch.testing.assert_close(merged, base + 0.5 * (1.0 - 0.25))
    weighted = merge_tensors("task_arithmetic", base, [e1, e2], weight=2.0)
    torch.testing.assert_close(weighted, base + 2.0 * 0.75)


def test_ties_trims_elects_sign_and_averages_agreeing_entries():
    base = torch.zeros(4)
    t1 = torch.tensor([3.0, -1.0, 0.1, 2.0])
    t2 = torch.tensor([1.0, 2.0, -0.2, -5.0])
    merged = merge_tensors("ties", base, [t1, t2], density=0.5)
    # t1 keeps {3, 2}; t2 keeps {2, -5}. Signs: e0 + (both agree: mean 3 / 1 model), e1 + (only t2),
    # e2 nothing kept, e3: 2 - 5 < 0 so -5 wins.
    torch.testing.assert_close(merged, torch.tensor([3.0, 2.0, 0.0, -5.0]))
    # normalize off: the agreeing entries are summed, not averaged
    both = torch.tensor([1.0, 1.0]), torch.tensor([3.0, 1.0])
    torch.testing.assert_close(merge_tensors("ties", torch.zeros(2), list(both), density=1.0, normalize=False),
                               torch.tensor([4.0, 2.0]))


def test_dare_keeps_about_density_rescales_to_the_l1_norm_and_is_seeded():
    base = torch.zeros(10_000)
    expert = torch.ones(10_000)
    a = merge_tensors("dare_linear", base, [expert], density=0.1, seed=3)
    b = merge_tensors("dare_linear", base, [expert], density=0.1, seed=3)
    c = merge_tensors("dare_linear", base, [expert], density=0.1, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    kept = (a != 0).float().mean().item()
    assert 0.08 < kept < 0.12
    torch.testing.assert_close(a.abs().sum(), expert.sum())  # rescaled to the L1 norm of the task vector


def test_breadcrumbs_drops_the_largest_and_the_smallest():
    base = torch.zeros(10)
    expert = torch.arange(1.0, 11.0)  # magnitudes 1..10
    merged = merge_tensors("breadcrumbs", base, [expert], density=0.5, gamma=0.2)
    # drop the top 20% (10, 9) and keep 50% below them (8..4)
    assert torch.equal(merged, torch.tensor([0, 0, 0, 4, 5, 6, 7, 8, 0, 0], dtype=torch.float32))


def test_linear_is_the_normalized_weighted_mean():
    a, b = torch.full((3,), 1.0), torch.full((3,), 4.0)
    torch.testing.assert_close(merge_tensors("linear", a, [a, b], weight=1.0), torch.full((3,), 2.5))


def test_slerp_interpolates_on_the_sphere():
    base = torch.tensor([1.0, 0.0])
    other = torch.tensor([0.0, 1.0])
    mid = merge_tensors("slerp", base, [other], t=0.5)
    torch.testing.assert_close(mid, torch.tensor([2 ** -0.5, 2 ** -0.5]))
    assert torch.equal(merge_tensors("slerp", base, [other], t=0.0), base)
    parallel = merge_tensors("slerp", base, [2 * base], t=0.5)  # collinear: linear interpolation
    torch.testing.assert_close(parallel, 1.5 * base)


def test_model_stock_keeps_the_base_for_opposite_task_vectors_and_averages_aligned_ones():
    base = torch.zeros(4)
    d = torch.tensor([1.0, 2.0, 3.0, 4.0])
    aligned = merge_tensors("model_stock", base, [base + d, base + d])  # cos 1: t = 1, the average
    torch.testing.assert_close(aligned, d)
    opposite = merge_tensors("model_stock", base, [base + d, base - d])  # cos -1: singular, the base
    torch.testing.assert_close(opposite, base)


@pytest.mark.parametrize("method", ALL)
def test_dtype_is_preserved_and_integer_tensors_pass_through(method):
    base = torch.randn(16, dtype=torch.bfloat16)
    experts = [base + 1, base - 0.5] if method != "slerp" else [base + 1]
    assert merge_tensors(method, base, experts, t=0.3).dtype == torch.bfloat16 if method == "slerp" else \
        merge_tensors(method, base, experts).dtype == torch.bfloat16
    ids = torch.arange(4)
    assert torch.equal(merge_tensors("task_arithmetic", ids, [ids + 7]), ids)


def test_state_dict_merge_keeps_excluded_keys_from_base():
    base = {"enc": torch.zeros(3), "head": torch.zeros(2)}
    expert = {"enc": torch.ones(3), "head": torch.ones(2)}
    merged = merge_state_dicts("task_arithmetic", base, [expert], scale=1.0, exclude=lambda k: k == "head")
    assert torch.equal(merged["enc"], torch.ones(3)) and torch.equal(merged["head"], torch.zeros(2))
    assert list(merged) == list(base)


@pytest.mark.parametrize(
    "call, rule",
    [
        (lambda: merge_tensors("nope", torch.zeros(1), [torch.zeros(1)]), "merge-method"),
        (lambda: merge_tensors("ties", torch.zeros(1), [torch.zeros(1)], density=1.5), "merge-params"),
        (lambda: merge_tensors("ties", torch.zeros(1), [torch.zeros(1)], bogus=1), "merge-params"),
        (lambda: merge_tensors("ties", torch.zeros(2), [torch.zeros(3)], name="w"), "merge-shape"),
        (lambda: merge_state_dicts("ties", {"w": torch.zeros(1)}, [{}]), "merge-missing-tensor"),
    ],
)
def test_bad_merge_input_is_an_input_error(call, rule):
    with pytest.raises(InputError) as info:
        call()
    assert info.value.rule == rule
