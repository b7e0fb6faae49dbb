import json
import subprocess
import sys

from tests.helpers import REPO_ROOT, assert_one_line_error, run_guard


def test_help_lists_every_command():
    from guard.cli import COMMANDS

    result = run_guard("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_unknown_command_is_one_line_exit_2():
    assert_one_line_error(run_guard("no-such-command"), code=2, contains=("no-such-command",))


def test_help_imports_no_torch():
    code = (
        "import sys; sys.argv=['guard','--help']\n"
        "from guard.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','transformers','numpy','rich'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == [], heavy
