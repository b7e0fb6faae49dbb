import pytest

from guard.errors import InputError
from guard.hub import parse_hub_ref

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_parse_hub_ref():
    ref = parse_hub_ref(f"hf:acme/model-1.5@{SHA}")
    assert (ref.repo_id, ref.sha) == ("acme/model-1.5", SHA)
    assert str(ref) == f"hf:acme/model-1.5@{SHA}"


@pytest.mark.parametrize("text, rule", [
    ("acme/model@" + SHA, "hub-ref"),
    ("hf:acme/model", "hub-revision"),
    ("hf:acme/model@main", "hub-revision"),
    ("hf:acme/model@" + SHA.upper(), "hub-revision"),
    ("hf:acme@" + SHA, "hub-repo-id"),
    ("hf:acme/../x@" + SHA, "hub-repo-id"),
    ("hf:../x@" + SHA, "hub-repo-id"),
    ("hf:a/b/c@" + SHA, "hub-repo-id"),
])
def test_bad_refs_are_input_errors(text, rule):
    with pytest.raises(InputError) as info:
        parse_hub_ref(text)
    assert info.value.rule == rule and info.value.exit_code == 2
