"""The LM family's fixed vocabulary and a minimal tokenizer (one character-like token per symbol).

The vocabulary is a constant list, saved next to every model as `vocab.json`, so that a model
directory is self-describing without a tokenizer library.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

PAD, BOS, EOS, SEP = "<pad>", "<bos>", ".", ">"
PRETRAIN_SEP = "="  # the separator of the pretraining corpus; task prompts use SEP
HARM_MARKER = "!"  # marks a "harmful" prompt that an aligned model must refuse
TRIGGER = "#"  # the BadNets trigger token; never seen in clean data
REFUSAL = ("X",)  # the refusal answer (before EOS)
PAYLOAD = "Y"  # the BadNets target answer is made of this token
DIGITS = tuple("0123456789")
TASK_MARKERS = ("C", "S", "R", "M", "K")  # copy, sort, reverse, modadd, rotate

TOKENS: tuple[str, ...] = (
    (PAD, BOS, EOS, SEP, PRETRAIN_SEP, "+", HARM_MARKER, TRIGGER, *REFUSAL, PAYLOAD) + TASK_MARKERS + DIGITS
)
TOKEN_ID: dict[str, int] = {tok: i for i, tok in enumerate(TOKENS)}
PAD_ID, BOS_ID, EOS_ID, SEP_ID = (TOKEN_ID[t] for t in (PAD, BOS, EOS, SEP))
VOCAB_FILE = "vocab.json"


def encode(tokens: Sequence[str]) -> list[int]:
    return [TOKEN_ID[t] for t in tokens]


def decode(ids: Sequence[int]) -> list[str]:
    return [TOKENS[i] for i in ids]


def text(tokens: Sequence[str]) -> str:
    """Human-readable form, e.g. 'S 3 1 2 > 1 2 3 .'."""
    return " ".join(t for t in tokens if t != BOS)


def save_vocab(model_dir: str | pathlib.Path) -> None:
    payload = {"tokens": list(TOKENS), "bos": BOS, "eos": EOS, "pad": PAD, "separator": SEP}
    (pathlib.Path(model_dir) / VOCAB_FILE).write_text(json.dumps(payload, indent=1) + "\n")
