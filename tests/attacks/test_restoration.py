"""The restoration attacks against MergeLock work (these are red-team tests: success = the attack works)."""

import pytest
import torch

from attacks.restoration.aga import aga_restore, permute_heads
from attacks.restoration.circuits import circuit_merge
from guard.errors import InputError
from guard.lock.keys import LockKey
from guard.lock.state import protect_state
from tests.lock.conftest import build, model_output, synthetic_fine_tune

KEY = LockKey(bytes(range(32))).for_run(bytes(32))


def _fine_tune(state, scale=0.05, seed=1):
    return synthetic_fine_tune(state, scale=scale, seed=seed)


def _attention(state):
    return [k for k, v in state.items() if v.ndim == 2 and any(s in k for s in ("attn", "attention", "Attention"))]


def _tau_cosine(restored, truth, base, names):
    tau = torch.cat([(truth[k] - base[k]).flatten() for k in names]).double()
    tau_hat = torch.cat([(restored[k] - base[k]).flatten() for k in names]).double()
    return float(torch.nn.functional.cosine_similarity(tau, tau_hat, dim=0))


def _distance(a, b, names):
    return sum(((a[k] - b[k]).double().norm() ** 2).item() for k in names) ** 0.5


# The attention part of the attack (AGA) is tested on locks without the residual transform; the stream
# part (Procrustes) and the two together below.


@pytest.mark.parametrize("family", ["vit", "llama", "gpt_neox", "t5"])
def test_aga_recovers_the_fine_tune(family):
    model = build(family)
    base = model.state_dict()
    tuned = _fine_tune(base)
    locked = protect_state(tuned, config=model.config, key=KEY, residual="none")
    restored = aga_restore(locked, base, config=model.config)
    names = _attention(base)
    # The protected weights are far from the fine-tune; the attacker's estimate is close to it.
    assert _distance(restored, tuned, names) < 0.1 * _distance(locked, tuned, names)
    assert _tau_cosine(restored, tuned, base, names) > 0.8


@pytest.mark.parametrize("family", ["llama", "gpt_neox", "gptj"])
def test_aga_fits_the_rotary_form_of_the_lock(family):
    """On RoPE models (GQA, partial rotary, interleaved) the lock's QK transform can only be one scaled
    rotation per rotary plane: fitting that form recovers the fine-tune better than a general
    least-squares fit, and the restored attention scores are exactly the fine-tune's."""
    from attacks.restoration.circuits import circuits
    from guard.lock.plan import plan_lock

    model = build(family)
    base = model.state_dict()
    tuned = _fine_tune(base)
    locked = protect_state(tuned, config=model.config, key=KEY, residual="none")
    names = _attention(base)
    structured = aga_restore(locked, base, config=model.config)
    general = aga_restore(locked, base, config=model.config, structured=False)
    assert _tau_cosine(structured, tuned, base, names) > _tau_cosine(general, tuned, base, names) + 0.02
    plan = plan_lock(base.keys(), model.config)
    geo = plan.geometry
    planes = geo.rotary_dims // 2
    per_group = planes + (geo.rotary_dims < geo.head_dim) + 1  # circuits per group: planes, non-rotary QK, OV
    for parts in plan.blocks.values():
        mine, truth = (circuits(plan.layout.split({rk: s[n] for rk, n in parts.items()}, geo), geo)
                       for s in (structured, tuned))
        rotary = [i for i in range(len(truth)) if i % per_group < planes]
        assert rotary and all(torch.allclose(mine[i], truth[i], rtol=1e-6, atol=1e-8) for i in rotary)


def test_hungarian_matching_undoes_head_permutation():
    model = build("vit")
    base = model.state_dict()
    tuned = _fine_tune(base)
    locked = permute_heads(protect_state(tuned, config=model.config, key=KEY, residual="none"), config=model.config, seed=3)
    names = _attention(base)
    matched = aga_restore(locked, base, config=model.config)
    unmatched = aga_restore(locked, base, config=model.config, match_heads=False)
    assert _tau_cosine(matched, tuned, base, names) > 0.8
    assert _distance(unmatched, tuned, names) > 5 * _distance(matched, tuned, names)


def test_hungarian_matching_undoes_mlp_permutation():
    """The lock's MLP hidden-unit permutation is recovered exactly by matching units against the base."""
    from attacks.restoration.neurons import align_mlp_neurons
    from guard.lock.plan import plan_lock

    model = build("llama")
    base = model.state_dict()
    tuned = _fine_tune(base)
    locked = protect_state(tuned, config=model.config, key=KEY, residual="none")
    mlp = sorted(plan_lock(base.keys(), model.config, mlp=True).mlp.block_of())
    assert _distance(locked, tuned, mlp) > 0.5 * _distance(base, {k: 0 * v for k, v in base.items()}, mlp)
    aligned = align_mlp_neurons(locked, base, config=model.config)
    assert all(torch.equal(aligned[k], tuned[k]) for k in mlp)
    unmatched = aga_restore(locked, base, config=model.config, match_neurons=False)
    matched = aga_restore(locked, base, config=model.config)
    assert _distance(unmatched, tuned, mlp) > 10 * _distance(matched, tuned, mlp)


@pytest.mark.parametrize("family, form", [("llama", "rotation"), ("vit", "rotation"), ("gpt_neox", "rotation"),
                                          ("gpt2", "permutation"), ("t5", "signed_permutation"),
                                          ("llama", "signed_permutation"), ("bert", "permutation")])
def test_procrustes_recovers_the_stream_transform(family, form):
    """Without the key: the residual transform estimated against the base (Procrustes on embeddings and
    matched MLP units) is the lock's own, up to the fine-tune's noise; a permutation exactly."""
    from attacks.restoration.stream import estimate_stream_map
    from guard.lock.plan import plan_lock
    from guard.lock.residual import derive_residual

    model = build(family)
    base = model.state_dict()
    tuned = _fine_tune(base)
    requested = "rotation" if form == "rotation" else "permutation"
    plan = plan_lock(base.keys(), model.config, residual=requested).residual
    assert plan.form == form
    locked = protect_state(tuned, config=model.config, key=KEY, residual=requested)
    truth = derive_residual(KEY, dim=plan.dim, form=form, layer_norm=plan.layout.norm_kind == "layer")
    estimate = estimate_stream_map(locked, base, config=model.config, form=form)
    if form == "rotation":
        assert float(abs(estimate.matrix - truth.matrix).max()) < 0.1
    else:
        assert list(estimate.perm) == list(truth.perm) and list(estimate.signs) == list(truth.signs)


@pytest.mark.parametrize("family, requested", [("llama", "rotation"), ("vit", "rotation"), ("gpt2", "rotation"),
                                               ("t5", "rotation"), ("llama", "permutation")])
def test_full_attack_recovers_the_fine_tune_through_the_residual_transform(family, requested):
    from guard.lock.plan import plan_lock

    model = build(family)
    base = model.state_dict()
    tuned = _fine_tune(base)
    form = plan_lock(base.keys(), model.config, residual=requested).residual.form
    locked = protect_state(tuned, config=model.config, key=KEY, residual=requested)
    restored = aga_restore(locked, base, config=model.config, residual_form=form)
    names = [k for k, v in base.items() if v.ndim == 2]
    assert _distance(restored, tuned, names) < 0.2 * _distance(locked, tuned, names)
    assert _tau_cosine(restored, tuned, base, _attention(base)) > 0.7
    # Without undoing the stream, the attention fits fail.
    blind = aga_restore(locked, base, config=model.config)
    assert _distance(blind, tuned, names) > 3 * _distance(restored, tuned, names)


@pytest.mark.parametrize("family", ["vit", "llama", "gpt2"])
def test_circuit_merge_after_procrustes_computes_the_clean_merge(family):
    """Circuit-space merging with the stream brought back by Procrustes: the merged model computes (nearly)
    what the circuit merge with the unprotected expert computes, where a naive merge is far off."""
    from guard.lock.plan import plan_lock
    from guard.merge import merge_state_dicts
    from guard.testing import factory

    model = build(family)
    base = model.state_dict()
    experts = [_fine_tune(base, seed=s) for s in (1, 2)]
    locked = protect_state(experts[1], config=model.config, key=KEY)
    form = plan_lock(base.keys(), model.config, residual="rotation").residual.form
    clean = circuit_merge("task_arithmetic", base, experts, config=model.config, scale=0.5)
    attacked = circuit_merge("task_arithmetic", base, [experts[0], locked], config=model.config, scale=0.5,
                             residual_forms=["none", form])
    naive = merge_state_dicts("task_arithmetic", base, [experts[0], locked], scale=0.5)
    inputs = factory.sample_inputs(model, seq=12)

    def output(state):
        clone = type(model)(model.config).eval()
        clone.load_state_dict(state)
        return model_output(clone, inputs)

    ref = output(clean)
    error = lambda state: float((output(state) - ref).abs().max() / ref.abs().max())  # noqa: E731
    assert error(attacked) < 0.05 and error(naive) > 5 * error(attacked)


def test_head_permutation_preserves_function():
    from guard.testing import factory

    model = build("vit")
    inputs = factory.sample_inputs(model)
    clone = type(model)(model.config).eval()
    clone.load_state_dict(permute_heads(model.state_dict(), config=model.config, seed=3))
    ref = model_output(model, inputs)
    assert ((model_output(clone, inputs) - ref).abs().max() / ref.abs().max()) < 1e-5


@pytest.mark.parametrize("family", ["vit", "gpt2", "t5", "llama", "gpt_neox", "gptj", "qwen2"])
def test_circuit_merge_ignores_the_lock(family):
    """RoPE (rotate_half, partial, interleaved), GQA and biases included: the lock is invisible."""
    model = build(family)
    base = model.state_dict()
    experts = [_fine_tune(base, seed=s) for s in (1, 2)]
    locked = [experts[0], protect_state(experts[1], config=model.config, key=KEY, residual="none")]
    clean = circuit_merge("task_arithmetic", base, experts, config=model.config, scale=0.5)
    attacked = circuit_merge("task_arithmetic", base, locked, config=model.config, scale=0.5)
    for name in clean:
        assert torch.allclose(clean[name], attacked[name], rtol=1e-3, atol=1e-4), name


@pytest.mark.parametrize("family", ["vit", "llama", "gpt_neox", "gptj"])
def test_circuit_refactoring_is_function_preserving(family):
    """Merging one protected expert at scale 1 in circuit space gives back a model computing that expert."""
    from guard.testing import factory

    model = build(family)
    base = model.state_dict()
    expert = _fine_tune(base)
    merged = circuit_merge("task_arithmetic", base, [protect_state(expert, config=model.config, key=KEY, residual="none")],
                           config=model.config, scale=1.0)
    inputs = factory.sample_inputs(model, seq=12)
    reference, candidate = type(model)(model.config).eval(), type(model)(model.config).eval()
    reference.load_state_dict(expert)
    candidate.load_state_dict(merged)
    ref = model_output(reference, inputs)
    assert ((model_output(candidate, inputs) - ref).abs().max() / ref.abs().max()) < 1e-4


def test_circuit_merge_refuses_qk_norm_models():
    model = build("qwen3")
    state = model.state_dict()
    with pytest.raises(InputError, match="qk-norm"):
        circuit_merge("task_arithmetic", state, [state], config=model.config, scale=0.3)


def test_figure_pipeline_runs_on_a_tiny_setup(tmp_path):
    """The one-command figure run, on a fast stand-in setup: two synthetic experts of a tiny ViT, scored
    by agreement with the expert's own predictions."""
    from attacks.restoration.experts import MergeSetup
    from attacks.restoration.run import markdown, run
    from guard.testing import factory

    model = build("vit")
    base = model.state_dict()
    experts = {"a": _fine_tune(base, 0.05, seed=1), "b": _fine_tune(base, 0.05, seed=2)}
    pixels = factory.sample_inputs(model, batch=64, seed=9)["pixel_values"]

    def predict(state):
        clone = type(model)(model.config).eval()
        clone.load_state_dict(state)
        with torch.no_grad():
            return clone(pixel_values=pixels).logits.argmax(-1)

    labels = {t: predict(s) for t, s in experts.items()}

    def evaluate(body, task, head_source):
        head = experts[task] if head_source is None else head_source
        state = {**body, **{k: v for k, v in head.items() if k.startswith("classifier.")}}
        return float((predict(state) == labels[task]).float().mean())

    setup = MergeSetup(tmp_path, base, experts, model.config, evaluate, lambda t: labels[t], "tiny stand-in")
    results = run(setup=setup, bounds=(2.0, 8.0), attack_bounds=(8.0,))
    assert {r["protected_task"] for r in results["sweep"]} == {"a", "b"} and len(results["sweep"]) == 6
    assert results["forms"] == {"default": "permutation", "rotation": "rotation", "no-residual": "none",
                                "attention-only": "none"}
    for row in results["sweep"]:
        assert set(row["cells"]) == {"default@2", "default@8", "rotation@8", "no-residual@8", "attention-only@8"}
        assert 0 <= row["clean_head"]["acc"] <= 1  # the ViT setups also report the clean head (has_heads)
    for t, info in results["per_task"].items():
        assert info["expert"] == 1.0 and info["protected_standalone"]["8.0"] == 1.0  # scored with its own head
        assert info["flagged_with_base"] and not info["flagged_clean"]
    text = markdown(results)
    assert "## Unmergeability" in text and "## Attacks" in text and "tiny stand-in" in text
    assert "variants at bound 8" in text and "clean expert's own head" in text
    for row in results["sweep"]:  # the tables carry the measured figures, not just the headings
        locked = row["cells"]["default@8"]
        cell = f"{100 * locked['acc']:.1f}% ({100 * locked['retained']:.1f}%)"
        assert f"| {row['method']} | {row['protected_task']} |" in text and cell in text, (row, cell)


def test_lock_breaks_a_merge_on_the_lm_zoo(small_zoo):
    """The unmergeability goal on the zoo's small LM family (Llama-style, RoPE, GQA; cached): with the
    `sort` expert protected (default lock, default bound), task arithmetic at the profile's scale keeps at
    most 5% of the clean merge's exact-match accuracy on `sort`, while the protected expert alone is unchanged."""
    from attacks.restoration.lm_experts import load_lm_zoo_setup
    from attacks.restoration.run import FIGURE_KEY
    from guard.merge import merge_state_dicts

    setup = load_lm_zoo_setup("small")
    params = setup.methods["task_arithmetic"]
    locked = protect_state(setup.experts["sort"], config=setup.config, key=FIGURE_KEY)
    assert setup.evaluate(locked, "sort") == setup.evaluate(setup.experts["sort"], "sort")

    def merged_accuracy(sort_expert):
        pool = [sort_expert if t == "sort" else setup.experts[t] for t in setup.tasks]
        return setup.evaluate(merge_state_dicts("task_arithmetic", setup.base, pool, exclude=setup.exclude, **params),
                              "sort")

    clean = merged_accuracy(setup.experts["sort"])
    assert clean >= 0.5  # the clean merge works, so a low figure below is the lock's doing
    assert merged_accuracy(locked) <= 0.05 * clean


def test_figure_pipeline_on_the_lm_zoo(small_zoo):
    """The figure run's LM path (no head excluded, no chance level, token accuracy, both AGA fits) on two
    tasks of the cached small LM family, one method, one bound."""
    import dataclasses

    from attacks.restoration.lm_experts import load_lm_zoo_setup
    from attacks.restoration.run import markdown, run

    full = load_lm_zoo_setup("small")
    setup = dataclasses.replace(full, experts={t: full.experts[t] for t in ("sort", "reverse")},
                                methods={"task_arithmetic": full.methods["task_arithmetic"]})
    results = run(setup=setup, bounds=(8.0,), attack_bounds=(8.0,), variants=("default", "no-residual"))
    assert results["forms"]["default"] == "signed_permutation"
    for row in results["sweep"]:
        assert row["chance"] == 0.0 and row["clean_merge"] >= 0.5
        for cell in ("default@8", "no-residual@8"):  # the unmergeability goal on a two-expert merge
            assert row["cells"][cell]["retained"] <= 0.05
        assert row["secondary"]["locked"] < row["secondary"]["base"] < row["secondary"]["clean_merge"]
    # Procrustes and unit matching against the base find the signed permutation of the stream exactly.
    assert all(v["stream_recovery"]["dims_recovered"] == 1.0 for v in results["per_task"].values())
    for row in results["attacks"]:  # Procrustes + AGA, and circuit merging after Procrustes, restore the merge
        assert row["aga_retained"] >= 0.5 and row["circuit_retained"] >= 0.5 and "aga_general_retained" in row
    text = markdown(results)
    assert "no chance level" in text and "Token accuracy" in text and "general QK fit" in text
    for row in results["sweep"]:  # the tables carry the measured figures, not just the headings
        locked = row["cells"]["default@8"]
        cell = f"{100 * locked['acc']:.1f}% ({100 * locked['retained']:.1f}%)"
        assert f"| {row['method']} | {row['protected_task']} |" in text and cell in text, (row, cell)


def test_stream_recovery_command_on_the_lm_zoo(small_zoo, capsys):
    """`python -m attacks.restoration.stream_recovery`: Procrustes recovers a rotation of the stream (the
    opt-in form) to a small entry error on every expert of the cached small LM family."""
    import json

    from attacks.restoration.stream_recovery import main

    main(["--zoo", "lm-small", "--seeds", "0", "--variant", "rotation"])
    experts = json.loads(capsys.readouterr().out)["lm-small seed 0"]
    assert len(experts) == 4 and all(v["form"] == "rotation" for v in experts.values())
    # The entries of a 128 x 128 rotation are about 0.09; measured 0.009-0.016.
    assert all(v["max_abs_error"] < 0.05 for v in experts.values())
