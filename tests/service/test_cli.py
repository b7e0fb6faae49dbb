"""`guard serve` on the command line: configuration errors are one line and exit 2; --check validates."""

import json
import subprocess
import sys

from tests.helpers import REPO_ROOT
from tests.service.helpers import SECRET


def guard(*args, env_extra=None, cwd=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "GUARD_WEBHOOK_SECRET"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "guard", "serve", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO_ROOT, timeout=120)


def test_check_validates_and_prints_no_secrets(tmp_path):
    proc = guard("--check", "--json", "--db", str(tmp_path / "db"),
                 env_extra={"GUARD_WEBHOOK_SECRET": SECRET, "HF_TOKEN": "hf_secret_token_value"})
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert config["database"] == str(tmp_path / "db") and config["workers"] == 1 and config["executor"] == "local"
    assert SECRET not in proc.stdout and "hf_secret_token_value" not in proc.stdout


def test_missing_secret_is_one_line_exit_2(tmp_path):
    proc = guard("--check", "--db", str(tmp_path / "db"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "GUARD_WEBHOOK_SECRET" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_config_and_trust_files_are_exit_2(tmp_path):
    bad = tmp_path / "serve.yaml"
    bad.write_text("workers: many\n")
    proc = guard("--check", "--config", str(bad), env_extra={"GUARD_WEBHOOK_SECRET": SECRET})
    assert proc.returncode == 2 and "[serve-config] workers" in proc.stderr
    trust = tmp_path / "trust.yaml"
    trust.write_text("repos:\n  - match: 'acme/*'\n    require_signature: true\n")
    proc = guard("--check", "--db", str(tmp_path / "db"), "--trust", str(trust),
                 env_extra={"GUARD_WEBHOOK_SECRET": SECRET})
    assert proc.returncode == 2 and "[serve-trust]" in proc.stderr and "names no signers" in proc.stderr
    proc = guard("--check", "--db", "mysql://nope/x", env_extra={"GUARD_WEBHOOK_SECRET": SECRET})
    assert proc.returncode == 2 and "[serve-database]" in proc.stderr


def test_trust_paths_are_relative_to_the_trust_file(tmp_path):
    from guard.service.trust import load_trust

    (tmp_path / "keys").mkdir()
    trust = tmp_path / "trust.yaml"
    trust.write_text("repos:\n  - match: 'acme/*'\n    signers:\n      - key: keys/acme.pub\n"
                     "      - certificate_chain: [ca.pem]\n")
    policy = load_trust(trust)
    entry = policy.for_repo("acme/model")
    assert entry.signers[0].key == str(tmp_path / "keys" / "acme.pub")
    assert entry.signers[1].certificate_chain == (str(tmp_path / "ca.pem"),)
    assert policy.for_repo("other/model") == policy.default
