import re

import pytest

from guard.artifacts.findings import Finding, refused
from tests.helpers import REPO_ROOT


def test_default_policy_refuses_only_refuse_severity():
    findings = [Finding("refuse", "pickle-file", "a.bin", "m"), Finding("warn", "gguf-file", "b.gguf", "m"),
                Finding("info", "config-missing", "config.json", "m")]
    assert refused(findings) == findings[:1]
    assert findings[0].one_line() == "refuse: a.bin [pickle-file] m"
    assert findings[0].to_json() == {"severity": "refuse", "rule": "pickle-file", "path": "a.bin", "message": "m"}


def test_unknown_severity_is_rejected():
    with pytest.raises(ValueError):
        Finding("fatal", "x", "y", "z")


def test_docs_name_every_rule_id_the_code_can_emit():
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "guard" / "artifacts").glob("*.py"))
    rules = set(re.findall(r'rule="([a-z0-9-]+)"', source))
    rules |= set(re.findall(r'Finding\("(?:refuse|warn|info)", "([a-z0-9-]+)"', source))
    rules |= set(re.findall(r'_refuse\("([a-z0-9-]+)"', source))
    rules |= set(re.findall(r'fail\("([a-z0-9-]+)"', source))
    rules |= set(re.findall(r'RULE_[A-Z_]+ = "([a-z0-9-]+)"', source))
    docs = (REPO_ROOT / "docs" / "artifacts.md").read_text()
    assert len(rules) > 50
    assert sorted(r for r in rules if f"`{r}`" not in docs) == []
