import pytest

from guard.errors import InputError
from guard.policy import load_policy
from guard.policy.schema import SCHEMA_PATH, schema_text


def test_shipped_policies_load_and_differ_where_they_should():
    strict, research = load_policy(), load_policy("research")
    assert strict.policy.name == "strict" and strict.policy.signatures.required
    assert strict.policy.mergelock.action == "refuse" and strict.policy.artifacts.refusals == "refuse"
    assert dict(strict.policy.artifacts.severities())["remote-code-file"] == "refuse"
    assert not research.policy.signatures.required and research.policy.artifacts.severities() == (("*", "warn"),)
    assert research.policy.required_checks == [] and len(strict.sha256) == 64 and strict.sha256 != research.sha256


def test_the_committed_json_schema_is_current():
    assert SCHEMA_PATH.read_text() == schema_text(), "run: python -m guard.policy.schema"


@pytest.mark.parametrize("text, field", [
    ("version: 2\nname: x\n", "version"),
    ("name: x\nbogus: 1\n", "bogus"),
    ("name: x\nmerge: {allowed_methods: [frankenmerge]}\n", "merge.allowed_methods"),
    ("name: x\nsignatures: {trusted_signers: [{key: a.pem, identity: me}]}\n", "signatures.trusted_signers.0"),
    ("name: x\nsignatures: {trusted_signers: [{identity: me}]}\n", "signatures.trusted_signers.0"),
    ("name: x\nprobes: {weight_outliers: {z: 3}}\n", "probes"),
    ("name: x\nartifacts: {rules: {pickle-file: ignore}}\n", "artifacts.rules.pickle-file"),
    ("- a list\n", "mapping"),
])
def test_bad_policies_name_the_file_and_field(tmp_path, text, field):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_policy(path)
    assert info.value.path == str(path) and field in info.value.message, info.value.message


def test_unknown_policy_name():
    with pytest.raises(InputError) as info:
        load_policy("lenient")
    assert info.value.rule == "policy-not-found"


def test_regrade_moves_severities_into_policy(tiny_model_dir, tmp_path):
    import shutil

    from guard.artifacts import ReadPolicy, open_model_dir

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir("llama"), model)
    (model / "extra.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle
    (model / "notes.py").write_text("x = 1\n")
    default = {f.rule: f.severity for f in open_model_dir(model).findings}
    assert default["pickle-file"] == "refuse" and default["remote-code-file"] == "warn"
    strict = load_policy().policy.artifacts.severities()
    graded = {f.rule: f.severity for f in open_model_dir(model, policy=ReadPolicy(severities=strict)).findings}
    assert graded["pickle-file"] == "refuse" and graded["remote-code-file"] == "refuse"
    research = load_policy("research").policy.artifacts.severities()
    relaxed = {f.rule: f.severity for f in open_model_dir(model, policy=ReadPolicy(severities=research)).findings}
    assert relaxed["pickle-file"] == "warn" and relaxed["remote-code-file"] == "warn"
    assert relaxed.get("config-missing", "info") == "info"  # "*" only touches refusals
