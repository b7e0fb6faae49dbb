"""safe-merge with `guard: dam:` and `guard: enchtable:`: the defended merge is the algorithm's merge, the
safety vector is checked like any input, and what each stage did is in the record and the provenance."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from guard.artifacts import open_model_dir
from guard.errors import InputError
from guard.pipeline.safe_merge import safe_merge


def _run(ws, config, **kwargs):
    out = ws.root / "out"
    record = safe_merge(config, out, verifier_options={"public_key": ws.public_key}, signer=ws.signer(), **kwargs)
    return record, out


def _with_guard(ws, config, section: dict):
    raw = yaml.safe_load(config.read_text())
    raw["guard"] = section
    config.write_text(yaml.safe_dump(raw))
    return config


def _safety_vector(ws, *, sign: bool = True, surrogate=None):
    from guard.defenses.enchtable.vector import write_safety_vector
    from guard.signing import sign_model

    surrogate = open_model_dir(surrogate or ws.base)
    g = torch.Generator().manual_seed(3)
    # a fine-tune-sized change (5% of each tensor's spread), as a distilled vector is
    delta = {n: 0.05 * t.float().std() * torch.randn(t.shape, generator=g) for n, t in surrogate.iter_tensors()
             if "self_attn" in n or n.endswith("input_layernorm.weight")}
    out = ws.root / "safety-vector"
    write_safety_vector(out, surrogate=surrogate, delta=delta, recipe={"test": True})
    if sign:
        sign_model(out, signer=ws.signer())
    return out, delta


def _provenance_checks(out):
    statement = json.loads((out / "guard_provenance.json").read_text())
    payload = statement if "predicate" in statement else json.loads(
        __import__("base64").b64decode(statement["dsseEnvelope"]["payload"]))
    return payload["predicate"]["runDetails"]["byproducts"][0]["annotations"]["checks"]


def test_enchtable_reinjects_the_checked_safety_vector_exactly_as_the_reference(workspace):
    from guard.defenses.enchtable.interference import reinject
    from guard.merge import merge_state_dicts

    vector, delta = _safety_vector(workspace)
    config = _with_guard(workspace, workspace.config(method="task_arithmetic"), {"enchtable": {"vector": str(vector)}})
    record, out = _run(workspace, config)
    assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
    roles = [i["role"] for i in record.inputs]
    assert roles == ["base", "model", "model", "safety-vector"]
    assert {c.check for c in record.checks if c.input == str(vector)} >= {"artifacts", "signature", "mergelock"}
    base = dict(open_model_dir(workspace.base).iter_tensors())
    merged = merge_state_dicts("task_arithmetic", base, [dict(open_model_dir(e).iter_tensors()) for e in workspace.experts],
                               weight=0.5)
    expected, alpha, scores = reinject(merged, base, delta, beta=0.1)
    check = next(c for c in record.checks if c.check == "enchtable")
    assert check.value == pytest.approx(alpha, rel=1e-6)
    got = dict(open_model_dir(out).iter_tensors())
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    matrices = {n for n, s in scores.items() if s.kind == "matrix"}
    assert matrices and set(check.details["scores"]) == set(scores)
    for name in matrices:
        assert check.details["scores"][name]["interference"] == pytest.approx(scores[name].interference, rel=1e-4)
    recorded = next(c for c in _provenance_checks(out) if c["check"] == "enchtable")
    assert recorded["value"] == pytest.approx(alpha, rel=1e-6) and len(recorded["details"]["scores"]) == len(scores)


def test_enchtable_alpha_from_the_inputs_scales_delta_to_the_merged_models_norms(workspace):
    from guard.defenses.enchtable.interference import inputs_task_norm, reinject
    from guard.merge import merge_state_dicts

    vector, delta = _safety_vector(workspace)
    config = _with_guard(workspace, workspace.config(method="task_arithmetic"),
                         {"enchtable": {"vector": str(vector), "alpha": "inputs", "beta": 0.5}})
    record, out = _run(workspace, config)
    assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
    base = dict(open_model_dir(workspace.base).iter_tensors())
    experts = [dict(open_model_dir(e).iter_tensors()) for e in workspace.experts]
    merged = merge_state_dicts("task_arithmetic", base, experts, weight=0.5)
    norm = inputs_task_norm(base, experts, delta)
    expected, alpha, _ = reinject(merged, base, delta, beta=0.5, task_norm=norm)
    _, own_alpha, _ = reinject(merged, base, delta, beta=0.5)
    check = next(c for c in record.checks if c.check == "enchtable")
    assert check.details["alpha_from"] == "inputs" and check.details["tau_norm"] == pytest.approx(norm, rel=1e-5)
    assert check.value == pytest.approx(alpha, rel=1e-5) and alpha != pytest.approx(own_alpha, rel=1e-3)
    got = dict(open_model_dir(out).iter_tensors())
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_an_unsigned_safety_vector_refuses_the_merge(workspace):
    vector, _ = _safety_vector(workspace, sign=False)
    config = _with_guard(workspace, workspace.config(method="task_arithmetic"), {"enchtable": {"vector": str(vector)}})
    record, out = _run(workspace, config)
    assert record.verdict == "refused" and not out.exists()
    first = record.refusals()[0]
    assert first.check == "signature" and first.input == str(vector) and first.rule == "signature-missing"


def test_a_safety_vector_of_another_surrogate_is_bad_input(workspace):
    vector, _ = _safety_vector(workspace, surrogate=workspace.experts[0])
    config = _with_guard(workspace, workspace.config(method="task_arithmetic"), {"enchtable": {"vector": str(vector)}})
    with pytest.raises(InputError, match="another surrogate"):
        _run(workspace, config)
    assert not (workspace.root / "out").exists()


def test_dam_learns_the_merge_and_records_it(workspace):
    from guard.artifacts.writer import write_safetensors

    g = torch.Generator().manual_seed(4)
    section = {"calibration": {}, "steps": 2, "adamerging_steps": 2, "batch": 4, "answer_tokens": 2,
               "granularity": "row", "final_mask": "deterministic", "mask_lr": 0.05}
    for i, expert in enumerate(workspace.experts):
        path = workspace.root / f"calibration-{i}.safetensors"
        write_safetensors(path, {"input_ids": torch.randint(3, 100, (6, 5), generator=g)})
        section["calibration"][str(expert)] = path.name  # relative to the config
    config = _with_guard(workspace, workspace.config(method="task_arithmetic"), {"dam": section})
    record, out = _run(workspace, config)
    assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
    check = next(c for c in record.checks if c.check == "dam")
    assert 0 < check.value <= 1 and check.details["mode"] == "paper"
    assert set(check.details["coefficient_by_model"]) == {str(e) for e in workspace.experts}
    from guard.merge import merge_state_dicts

    base = dict(open_model_dir(workspace.base).iter_tensors())
    plain = merge_state_dicts("task_arithmetic", base, [dict(open_model_dir(e).iter_tensors()) for e in workspace.experts],
                              weight=0.5)
    got = dict(open_model_dir(out).iter_tensors())
    assert any(not torch.allclose(got[n], plain[n]) for n in got)
    recorded = next(c for c in _provenance_checks(out) if c["check"] == "dam")
    assert recorded["details"]["kept"] == check.details["kept"]


def test_dam_refuses_a_method_it_does_not_define_and_a_missing_calibration(workspace):
    config = _with_guard(workspace, workspace.config(method="ties"), {"dam": {"calibration": {
        str(e): "x.safetensors" for e in workspace.experts}}})
    with pytest.raises(InputError, match="task_arithmetic"):
        _run(workspace, config)
    config = _with_guard(workspace, workspace.config(method="task_arithmetic", name="b.yml"),
                         {"dam": {"calibration": {str(workspace.experts[0]): "x.safetensors"}}})
    with pytest.raises(InputError, match="no calibration inputs"):
        _run(workspace, config)
    with pytest.raises(InputError, match="guard.dam.steps"):
        _run(workspace, _with_guard(workspace, workspace.config(method="task_arithmetic", name="c.yml"),
                                    {"dam": {"calibration": {"a": "b"}, "steps": -1}}))
