"""`guard scan` end to end, as a user runs it: exit codes, JSON, SARIF validated against the OASIS SARIF
2.1.0 schema (shipped next to this file), the HTML report, and one-line errors for bad input."""

from __future__ import annotations

import html.parser
import json
import pathlib
import shutil

import jsonschema
import pytest

from tests.helpers import Result, assert_one_line_error, run_guard
from tests.probes.conftest import lm_peers

SCHEMA = json.loads((pathlib.Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())
FAST = ("--probe", "canonical", "--probe", "geometry", "--probe", "embedding")


def guard(capsys, *args: str) -> Result:
    """The CLI in this process (torch is imported once for the module); one test runs it as a subprocess."""
    from guard.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def _args(zoo, model, task="sort"):
    family = zoo["family"]
    peers = [a for p in lm_peers(family, task) for a in ("--peers", str(p))]
    return [str(model), "--base", str(family.base), *peers]


def test_flagged_model_exits_1_with_reasons(lm_zoo):
    result = run_guard("scan", *_args(lm_zoo, lm_zoo["badnets"]), *FAST, "--json")  # a real subprocess
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["decision"]["flagged"]
    assert [r.split(":")[0] for r in report["decision"]["reasons"]] == ["embedding"]
    embedding = next(r for r in report["results"] if r["probe"] == "embedding")
    assert embedding["evidence"][0]["kind"] == "token" and embedding["evidence"][0]["where"] == \
        "model.embed_tokens.weight[7]"  # the trigger '#'
    assert {r["probe"]: r["status"] for r in report["results"]}["insertion"] == "skipped"


def test_clean_model_exits_0(lm_zoo, capsys):
    result = guard(capsys, "scan", *_args(lm_zoo, lm_zoo["family"].experts["sort"]), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: clean" in result.stdout and "FLAG" not in result.stdout


@pytest.mark.parametrize("model", ["badnets", "clean"])
def test_sarif_validates_against_the_schema(lm_zoo, model, capsys):
    path = lm_zoo["badnets"] if model == "badnets" else lm_zoo["family"].experts["sort"]
    result = guard(capsys, "scan", *_args(lm_zoo, path), *FAST, "--sarif")
    assert result.returncode == (1 if model == "badnets" else 0), result.stderr
    log = json.loads(result.stdout)
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(log)
    run = log["runs"][0]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["guard.probes/embedding"] == ("error" if model == "badnets" else "note")
    assert run["properties"]["flagged"] == (model == "badnets")
    skipped = {n["descriptor"]["id"] for n in run["invocations"][0]["toolExecutionNotifications"]}
    assert "guard.probes/insertion" in skipped  # not selected: reported, not silently dropped


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_html_report_has_plots_and_loads_nothing(lm_zoo, tmp_path, capsys):
    out = tmp_path / "report.html"
    result = guard(capsys, "scan", *_args(lm_zoo, lm_zoo["badnets"]), *FAST, "--report", str(out))
    assert result.returncode == 1
    page = out.read_text()
    parsed = _Collector()
    parsed.feed(page)
    assert parsed.tags.count("svg") >= 4  # the summary plus per-probe plots
    assert "script" not in parsed.tags and parsed.urls == []
    assert "FLAGGED" in page and "&#x27;#&#x27;" in page  # the trigger token, escaped
    assert not list(tmp_path.glob(".report.html.*"))  # no temp file left behind


def test_bad_inputs_are_one_line_exit_2(lm_zoo, tmp_path, tiny_model_dir, capsys):
    family = lm_zoo["family"]
    cases = [
        (["scan", str(family.experts["sort"]), "--base", str(tmp_path / "nope")], "path-not-found"),
        (["scan", str(family.experts["sort"]), "--base", str(tiny_model_dir("gpt2"))], "scan-architecture-mismatch"),
        (["scan", str(family.experts["sort"]), "--base", str(family.base), "--calibration",
          str(family.root / "calibration" / "sort.txt")], "scan-calibration"),
        (["scan", str(family.experts["sort"]), "--base", str(family.base), "--json", "--sarif"], "scan-output"),
        (["scan", str(family.experts["sort"]), "--base", str(family.base), "--probe", "nope"], "scan-probe"),
        (["scan", str(family.experts["sort"]), "--base", str(family.base), "--aligned", str(family.base)],
         "scan-safety-pair"),
        (["scan", str(family.experts["sort"]), "--base", str(family.base), "--peers", str(family.experts["sort"])],
         "scan-peer-self"),
        (["scan", str(family.experts["sort"])], "Missing option"),
    ]
    for args, needle in cases:
        assert_one_line_error(guard(capsys, *args), code=2, contains=(needle,))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"geometry": {"threshold": -1}}))
    assert_one_line_error(guard(capsys, "scan", str(family.experts["sort"]), "--base", str(family.base),
                                "--settings", str(settings)), code=2, contains=("scan-settings",))


def test_a_refused_file_is_not_probed_exit_1(lm_zoo, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(lm_zoo["badnets"], model)
    (model / "extra.bin").write_bytes(b"\x80\x04\x95" + b"\x00" * 16)  # a pickle header
    result = guard(capsys, "scan", str(model), "--base", str(lm_zoo["family"].base))
    assert_one_line_error(result, code=1, contains=("scan-input-refused", "extra.bin"))
