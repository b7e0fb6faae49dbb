"""Canonicalisation against the reference: guard.lock's own transforms (whose exact inverse is the
fine-tune that was protected) on tiny factory models, for every layout family the lock knows."""

from __future__ import annotations

import pytest
import torch

from guard.artifacts import open_model_dir
from guard.lock.keys import LockKey
from guard.lock.plan import plan_lock
from guard.lock.protect import protect_model, transformers_config
from guard.probes.canonical import canonicalise_attention, canonicalise_mlp, moved_unit_share
from guard.probes.inputs import ScanInputs
from guard.probes.settings import ProbeSettings
from guard.probes.weights import weight_pass
from tests.lock.conftest import build, synthetic_fine_tune
from tests.probes.conftest import save_state

KEY = LockKey(bytes(range(32)))
FAMILIES = ("llama", "qwen2", "gpt2", "gpt_neox", "phi3", "bert", "vit")


def _distance(a: dict, b: dict, names) -> float:
    return sum(float((a[n].double() - b[n].double()).norm() ** 2) for n in names) ** 0.5


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    """family -> (base state, fine-tune state, protected state, config)."""
    out = {}
    for family in FAMILIES:
        root = tmp_path_factory.mktemp(f"canon-{family}")
        base_state = build(family).state_dict()
        save_state(family, base_state, root / "base")
        src = save_state(family, synthetic_fine_tune(base_state, scale=0.03, seed=5), root / "ft")
        # The per-head and MLP transforms only: these tests check the canonicalisation of exactly those, which
        # does not undo the residual-stream transform (on by default since issue 16; see the test below).
        protect_model(src, root / "locked", key=KEY, residual="none")
        # As stored on disk (checkpoint names, which transformers may rename in memory).
        base, tuned, locked = (dict(open_model_dir(root / d).iter_tensors()) for d in ("base", "ft", "locked"))
        out[family] = (base, tuned, locked, transformers_config(open_model_dir(root / "locked").config))
    return out


def _fits(candidate: dict, base: dict, config):
    """(block, its tensor names by role, canonical weights, fit) for every attention block."""
    plan = plan_lock(candidate.keys(), config)
    for block, parts in plan.blocks.items():
        split = lambda state: plan.layout.split({rk: state[n] for rk, n in parts.items()}, plan.geometry)  # noqa: E731
        canonical, fit = canonicalise_attention(split(candidate), split(base), plan.geometry, block=block)
        yield block, parts, plan.layout.join(canonical, plan.geometry), fit


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_canonicalisation_undoes_the_lock(protected, family):
    base, tuned, locked, config = protected[family]
    for block, parts, joined, fit in _fits(locked, base, config):
        names = list(parts.values())
        restored = {parts[rk]: t for rk, t in joined.items()}
        fine_tune = _distance(tuned, base, names)
        assert _distance(locked, tuned, names) > 10 * fine_tune  # the lock moved it far
        # Back to within a fine-tune's distance of the truth (the fit absorbs tau's row-space share).
        assert _distance(restored, tuned, names) < 0.9 * fine_tune
        assert fit.kept < 0.1 and fit.raw_distance > 0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_a_plain_fine_tune_is_not_transformed(protected, family):
    base, tuned, _, config = protected[family]
    for block, _, _, fit in _fits(tuned, base, config):
        assert fit.kept > 0.5, (block, fit)


@pytest.mark.parametrize("family", ("llama", "gpt2", "bert"))
def test_mlp_unit_matching_recovers_the_permutation_exactly(protected, family):
    base, tuned, locked, config = protected[family]
    plan = plan_lock(locked.keys(), config, mlp=True)
    for block, parts in plan.mlp.blocks.items():
        mine = {p: locked[n] for p, n in parts.items()}
        out, fit = canonicalise_mlp(plan.mlp.layout, mine, {p: base[n] for p, n in parts.items()}, block=block,
                                    permuted_share=0.5)
        assert fit.moved_units > 0.8
        for part, name in parts.items():
            assert torch.equal(out[part], tuned[name]), (block, part)  # attention transforms leave MLPs alone


def test_moved_unit_share_sees_permutations_and_sign_flips_not_noise():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(64, 32, generator=gen)
    tuned = base + 0.05 * torch.randn(64, 32, generator=gen)
    assert moved_unit_share(tuned, base) == 0.0
    assert moved_unit_share(tuned[torch.randperm(64, generator=gen)], base) > 0.9
    signs = torch.ones(64, 1)
    signs[::2] = -1
    assert moved_unit_share(tuned * signs, base) == pytest.approx(0.5)


def test_weight_pass_measures_canonical_weights_of_a_locked_model(protected, tmp_path, llama_set):
    locked_dir = tmp_path / "locked"
    protect_model(llama_set["ft0"], locked_dir, key=KEY, residual="none")
    inputs = ScanInputs(candidate=open_model_dir(locked_dir), base=open_model_dir(llama_set["base"]))
    wp = weight_pass(inputs, ProbeSettings())
    attention = [b for b in wp.candidate.blocks if b.kind == "attention"]
    assert attention and all(b.kept < 0.1 for b in attention)
    assert all(b.moved_units > 0.8 for b in wp.candidate.blocks if b.kind == "mlp")
    canonical = [s for s in wp.candidate.stats.values() if s.canonical]
    assert canonical and all(s.relative < 0.2 for s in canonical)  # fine-tune distance, not the lock's


def test_default_lock_residual_transform_is_seen_as_moved_residual_dimensions(tmp_path, llama_set):
    """Canonicalisation does not undo the residual-stream transform (on by default since issue 16): the weight
    pass sees it instead, as embedding columns (residual dimensions) that all left their index."""
    locked_dir = tmp_path / "locked"
    protect_model(llama_set["ft0"], locked_dir, key=KEY)
    inputs = ScanInputs(candidate=open_model_dir(locked_dir), base=open_model_dir(llama_set["base"]))
    settings = ProbeSettings()
    residual = [b for b in weight_pass(inputs, settings).candidate.blocks if b.kind == "residual"]
    assert residual and all(b.moved_units >= settings.canonical.permuted_share for b in residual)
    plain = ScanInputs(candidate=open_model_dir(llama_set["ft0"]), base=open_model_dir(llama_set["base"]))
    assert all(b.moved_units == 0.0 for b in weight_pass(plain, settings).candidate.blocks if b.kind == "residual")
