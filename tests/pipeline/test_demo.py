import json

from tests.helpers import REPO_ROOT, run_guard


def test_demo_runs_end_to_end_and_every_step_behaves(tmp_path):
    result = run_guard("demo", "--workdir", tmp_path / "demo", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    steps = {s["name"]: s for s in report["steps"]}
    assert report["ok"] and all(s["ok"] for s in steps.values())
    assert set(steps) >= {"build", "inspect", "protect", "verify", "tamper", "detect", "merge", "unlock", "wrong-key",
                          "safe-merge", "provenance", "refused-tampered", "refused-locked", "gate-unlock"}
    damage = steps["merge"]["data"]
    assert damage["protected_vs_clean"] > 10 * damage["clean_vs_base"]
    assert steps["unlock"]["data"]["max_abs_difference"] < 1e-4
    # The demo leaves the signed protected model behind for the user to look at.
    assert (tmp_path / "demo" / "expert-a-protected" / "model.sig").is_file()
    assert (tmp_path / "demo" / "merged" / "guard_provenance.json").is_file()
    assert not (tmp_path / "demo" / "refused-locked").exists()


def test_demo_refuses_a_non_empty_workdir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = run_guard("demo", "--workdir", tmp_path)
    assert result.returncode == 2 and "demo-workdir" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme.count("<!-- demo-command -->") == 1 and readme.count("<!-- test-command -->") == 1
    demo_cmd = readme.split("<!-- demo-command -->")[1].split("<!-- /demo-command -->")[0]
    test_cmd = readme.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    assert "guard demo" in demo_cmd and "pip install torch==2.13.0" in demo_cmd
    assert "pytest" in test_cmd and "pip install torch==2.13.0" in test_cmd
    assert "test-command" in (REPO_ROOT / ".ci" / "run").read_text()
