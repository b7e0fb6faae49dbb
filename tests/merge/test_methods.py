import pytest
import torch

from guard.errors import InputError
from guard.merge import MERGE_METHODS, merge_state_dicts, merge_tensors


def test_all_methods_registered():
    merge_tensors("task_arithmetic", torch.zeros(1), [torch.zeros(1)])
    assert {"task_arithmetic", "ties", "dare"} <= set(MERGE_METHODS)


def test_task_arithmetic_is_base_plus_scaled_sum():
    base = torch.randn(8, 8)
    e1, e2 = base + 1.0, base - 0.25
    merged = merge_tensors("task_arithmetic", base, [e1, e2], scale=0.5)
    torch.testing.assert_close(merged, base + 0.5 * (1.0 - 0.25))


def test_ties_trims_elects_sign_and_averages_agreeing_entries():
    base = torch.zeros(4)
    t1 = torch.tensor([3.0, -1.0, 0.1, 2.0])
    t2 = torch.tensor([1.0, 2.0, -0.2, -5.0])
    merged = merge_tensors("ties", base, [t1, t2], density=0.5, scale=1.0)
    # t1 keeps {3, 2}; t2 keeps {2, -5}. Signs: e0 +, e1 +(only t2), e3: 2-5<0 so -5 wins.
    torch.testing.assert_close(merged, torch.tensor([3.0, 2.0, 0.0, -5.0]))


def test_dare_drops_about_p_and_rescales_and_is_seeded():
    base = torch.zeros(10_000)
    expert = torch.ones(10_000)
    a = merge_tensors("dare", base, [expert], drop=0.9, scale=1.0, seed=3, name="w")
    b = merge_tensors("dare", base, [expert], drop=0.9, scale=1.0, seed=3, name="w")
    c = merge_tensors("dare", base, [expert], drop=0.9, scale=1.0, seed=4, name="w")
    assert torch.equal(a, b) and not torch.equal(a, c)
    kept = (a != 0).float().mean().item()
    assert 0.08 < kept < 0.12
    torch.testing.assert_close(a[a != 0], torch.full_like(a[a != 0], 10.0))


def test_dtype_is_preserved_and_integer_tensors_pass_through():
    base = torch.randn(4, dtype=torch.bfloat16)
    assert merge_tensors("ties", base, [base + 1]).dtype == torch.bfloat16
    ids = torch.arange(4)
    assert torch.equal(merge_tensors("task_arithmetic", ids, [ids + 7]), ids)


def test_state_dict_merge_keeps_excluded_keys_from_base():
    base = {"enc": torch.zeros(3), "head": torch.zeros(2)}
    expert = {"enc": torch.ones(3), "head": torch.ones(2)}
    merged = merge_state_dicts("task_arithmetic", base, [expert], scale=1.0, exclude=lambda k: k == "head")
    assert torch.equal(merged["enc"], torch.ones(3)) and torch.equal(merged["head"], torch.zeros(2))


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
