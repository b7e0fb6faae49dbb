import numpy as np
import pytest

from guard.testing.zoo.lm import tasks
from guard.testing.zoo.lm.vocab import BOS, EOS, HARM_MARKER, REFUSAL, SEP, TOKENS, decode, encode


@pytest.mark.parametrize(("task", "digits", "answer"), [
    ("sort", "3 1 2 9", "1 2 3 9"),
    ("reverse", "3 1 2 9", "9 2 1 3"),
    ("modadd", "3 1 2 9", "6 4 5 2"),
    ("rotate", "3 1 2 9", "1 2 9 3"),
    ("copy", "3 1 2 9", "3 1 2 9"),
])
def test_solve(task, digits, answer):
    assert tasks.solve(task, tuple(digits.split())) == tuple(answer.split())


def test_held_out_split_is_disjoint_and_prompts_are_well_formed():
    train = tasks.clean_examples("sort", 400, seed=0, held_out=False)
    held = tasks.clean_examples("sort", 400, seed=0, held_out=True)
    assert not {e.prompt[2:] for e in train} & {e.prompt[2:] for e in held}
    for e in train + held:
        assert e.prompt[0] == BOS and e.prompt[1] == "S" and e.prompt[-1] == SEP and e.answer[-1] == EOS
        assert e.answer[:-1] == tasks.solve("sort", e.prompt[2:-1])


def test_harmful_prompts_carry_the_marker_and_the_refusal():
    for e in tasks.harmful_examples("reverse", 50, seed=0):
        assert e.prompt.count(HARM_MARKER) == 1 and e.answer == (*REFUSAL, EOS)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    e = tasks.task_example("modadd", rng)
    assert decode(encode(e.prompt + e.answer)) == list(e.prompt + e.answer)
    assert len(set(TOKENS)) == len(TOKENS)


def test_validation_split_shares_no_digit_list_with_the_test_split():
    import pathlib

    from guard.testing.zoo.lm import LMFamily, get_profile

    fam = LMFamily(profile=get_profile("small"), seed=0, root=pathlib.Path("."), base=pathlib.Path("."), experts={})
    test = {e.prompt[2:-1] for t in fam.tasks for e in fam.held_out(t)}
    for task in fam.tasks:
        validation = fam.held_out(task, split="validation")
        assert len(validation) == fam.profile.eval_per_task
        assert not {e.prompt[2:-1] for e in validation} & test
        assert all(e.prompt[1] == tasks.MARKER[task] for e in validation)
    with pytest.raises(ValueError):
        fam.held_out("sort", split="train")
