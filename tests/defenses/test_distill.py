"""EnchTable stage 1: genuine linearisation, and `guard safety-vector distill` end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch.func import functional_call, jvp

from guard.defenses.enchtable.distill import Linearised
from tests.helpers import assert_one_line_error, run_guard

PASSPHRASE = "distill-test"


def _moved(block, scale=0.3):
    origin = {n: p.detach().clone() for n, p in block.named_parameters()}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return origin


def test_a_linearised_mlp_is_its_first_order_taylor_model_not_the_mlp():
    from guard.testing.factory import build_model

    mlp = build_model("llama").model.layers[0].mlp
    x = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(1))
    wrapped = Linearised(mlp)
    torch.testing.assert_close(wrapped(x), mlp(x))  # at theta0 both agree
    origin = _moved(mlp)
    moved = dict(mlp.named_parameters())
    tangent = {n: moved[n].detach() - origin[n] for n in origin}
    value, change = jvp(lambda p: functional_call(mlp, p, (x,)), (origin,), (tangent,))
    torch.testing.assert_close(wrapped(x), value + change)
    assert not torch.allclose(wrapped(x), mlp(x), atol=1e-3)  # the SiLU-gated MLP is non-linear in its weights


def test_a_linearised_linear_layer_is_the_layer_itself():
    # the released code's per-Linear wrapping: a Linear is linear in its weights, so f_lin == f (notes §3.2)
    layer = torch.nn.Linear(5, 4)
    x = torch.randn(3, 5)
    wrapped = Linearised(layer)
    _moved(layer)
    torch.testing.assert_close(wrapped(x), layer(x))


@pytest.fixture(scope="module")
def harmful_set(tmp_path_factory):
    from guard.artifacts.writer import write_safetensors
    from guard.testing.factory import make_model_dir

    root = tmp_path_factory.mktemp("distill")
    surrogate = make_model_dir("llama", root / "surrogate", seed=0)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 100, (8, 10), generator=g)
    labels = ids.clone()
    labels[:, :5] = -100  # loss on the answer only
    write_safetensors(root / "harmful.safetensors", {"input_ids": ids, "labels": labels})
    key = root / "signer.key"
    assert run_guard("keygen", key, env={"GUARD_KEY_PASSPHRASE": PASSPHRASE}).returncode == 0
    return root, surrogate, root / "harmful.safetensors", key


def test_distill_writes_a_signed_vector_of_the_chosen_modules(harmful_set, tmp_path):
    from guard.artifacts import open_model_dir
    from guard.defenses.enchtable.vector import read_description, safety_delta, weights_digest

    root, surrogate, data, key = harmful_set
    out = tmp_path / "vector"
    result = run_guard("safety-vector", "distill", surrogate, "--data", data, "--out", out, "--modules", "ffn",
                       "--epochs", "2", "--lr", "1e-3", "--batch", "4", "--sign-key", key, "--json",
                       env={"GUARD_KEY_PASSPHRASE": PASSPHRASE})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 4 and summary["linearise"] == "module" and summary["norm"] > 0
    assert (out / "model.sig").is_file()
    verify = run_guard("verify", out, "--key", f"{key}.pub")
    assert verify.returncode == 0, verify.stderr
    vector, base = open_model_dir(out), open_model_dir(surrogate)
    description = read_description(vector)
    assert description["surrogate"]["weights_digest"] == weights_digest(base)
    delta = safety_delta(vector, base)
    assert delta and all(".mlp." in name for name in delta)  # only the chosen modules moved
    assert len(delta) == summary["tensors"]


def test_distill_bad_input_is_one_line_and_exit_2(harmful_set, tmp_path):
    root, surrogate, data, key = harmful_set
    both = run_guard("safety-vector", "distill", surrogate, "--data", data, "--out", tmp_path / "v", "--unsigned",
                     "--sign-key", key)
    assert_one_line_error(both, contains=("--unsigned",))
    labels_missing = tmp_path / "bad.safetensors"
    from guard.artifacts.writer import write_safetensors

    write_safetensors(labels_missing, {"input_ids": torch.zeros(2, 3, dtype=torch.long)})
    bad = run_guard("safety-vector", "distill", surrogate, "--data", labels_missing, "--out", tmp_path / "v",
                    "--unsigned")
    assert_one_line_error(bad, contains=("labels",))
    assert not (tmp_path / "v").exists()
