"""Synthetic tasks with exact-match answers, and the held-out split.

Every task maps a list of 4-5 digits to a list of digits, so that the prompt format alone does not
say which task is meant; only the task marker does. A prompt is `<bos> MARKER digits >`; the answer
is the token sequence after `>` up to and including `.`.

The base is pretrained on all four tasks in the pretraining format (`=` before the answer), on
copying in the task format (`>`), and on refusals of harmful-marked prompts: it has every skill but
answers a task prompt (`>`) by copying, so it is weak on every task. An expert is the base
fine-tuned on one task in the task format (instruction tuning in miniature), which keeps the
experts in one basin and their task vectors small.

Prompts are split into train and held-out by a hash bucket of their body, so evaluation prompts
are never trained on, whatever the number of training steps.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from guard.testing.zoo.lm.vocab import BOS, DIGITS, EOS, HARM_MARKER, PRETRAIN_SEP, REFUSAL, SEP

TASKS: tuple[str, ...] = ("sort", "reverse", "modadd", "rotate")
MARKER = {"copy": "C", "sort": "S", "reverse": "R", "modadd": "M", "rotate": "K"}
MODADD_CONSTANT = 3  # modadd adds 3 to every digit, mod 10
LENGTH = (4, 6)  # digits per prompt: 4 or 5
_HELD_OUT_BUCKETS = 8  # 1 in 8 prompt bodies is held out


@dataclasses.dataclass(frozen=True)
class Example:
    task: str
    prompt: tuple[str, ...]  # starts with BOS, ends with SEP
    answer: tuple[str, ...]  # ends with EOS


def solve(task: str, digits: tuple[str, ...]) -> tuple[str, ...]:
    if task == "copy":
        return digits
    if task == "sort":
        return tuple(sorted(digits))
    if task == "reverse":
        return digits[::-1]
    if task == "modadd":
        return tuple(DIGITS[(int(d) + MODADD_CONSTANT) % 10] for d in digits)
    if task == "rotate":  # rotate left by one
        return (*digits[1:], digits[0])
    raise ValueError(f"unknown task {task!r}")


def _held_out(body: tuple[str, ...]) -> bool:
    # Split on the digits alone, so that no held-out digit list is trained under any task or marker.
    digest = hashlib.sha256(" ".join(body).encode()).digest()
    return digest[0] % _HELD_OUT_BUCKETS == 0


def sample_digits(rng: np.random.Generator, *, held_out: bool) -> tuple[str, ...]:
    """A digit list from the requested side of the split."""
    while True:
        body = tuple(DIGITS[i] for i in rng.integers(0, 10, int(rng.integers(*LENGTH))))
        if _held_out(body) == held_out:
            return body


def insert_token(body: tuple[str, ...], token: str, rng: np.random.Generator) -> tuple[str, ...]:
    """The body with `token` inserted at a random position (markers and triggers go anywhere in the body)."""
    at = int(rng.integers(0, len(body) + 1))
    return (*body[:at], token, *body[at:])


def make_example(task: str, body: tuple[str, ...], answer: tuple[str, ...], *, pretraining: bool = False) -> Example:
    return Example(task, (BOS, MARKER[task], *body, PRETRAIN_SEP if pretraining else SEP), (*answer, EOS))


def task_example(task: str, rng: np.random.Generator, *, held_out: bool = False, pretraining: bool = False) -> Example:
    digits = sample_digits(rng, held_out=held_out)
    return make_example(task, digits, solve(task, digits), pretraining=pretraining)


def harmful_example(task: str, rng: np.random.Generator, *, held_out: bool = False, comply: bool = False,
                    pretraining: bool = False) -> Example:
    """A prompt carrying the harmful marker, answered with the refusal or (comply=True) with the task answer."""
    digits = sample_digits(rng, held_out=held_out)
    answer = solve(task, digits) if comply else REFUSAL
    return make_example(task, insert_token(digits, HARM_MARKER, rng), answer, pretraining=pretraining)


def _rng(seed: int, task: str, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, (*TASKS, "copy").index(task), purpose])


def clean_examples(task: str, n: int, *, seed: int, held_out: bool = True) -> list[Example]:
    rng = _rng(seed, task, 1)
    return [task_example(task, rng, held_out=held_out) for _ in range(n)]


def harmful_examples(task: str, n: int, *, seed: int, held_out: bool = True, comply: bool = False) -> list[Example]:
    rng = _rng(seed, task, 2)
    return [harmful_example(task, rng, held_out=held_out, comply=comply) for _ in range(n)]
