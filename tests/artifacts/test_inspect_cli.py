"""`guard inspect` end to end, in subprocesses, the way a user runs it."""

import json
import subprocess
import sys

import pytest

from attacks.corpus import pickle_payloads as pp
from guard.testing import factory
from tests.artifacts.conftest import run_guard_measured, run_measured
from tests.helpers import assert_one_line_error, run_guard

RSS_BUDGET_KB = 64 * 1024


def _inspect_json(path) -> dict:
    result = run_guard("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("family", factory.FAMILIES)
def test_architecture_and_parameter_count_per_family(tiny_model_dir, family):
    model = factory.build_model(family)
    report = _inspect_json(tiny_model_dir(family, shards=2))
    assert report["architecture"] == type(model).__name__
    assert report["parameter_count"] == model.num_parameters()
    # Cross-check with the state dict: tied weights appear under two names there but are stored once.
    unique = {t.data_ptr(): t.numel() for t in model.state_dict().values() if t.is_floating_point()}
    assert report["parameter_count"] == sum(unique.values())
    assert report["verdict"] == "clean" and report["findings"] == []
    assert len(report["shards"]) >= 2 and report["index"] == "model.safetensors.index.json"


def test_minilm(minilm_dir):
    from transformers import AutoModel

    report = _inspect_json(minilm_dir)
    assert report["architecture"] == "BertModel"
    assert report["parameter_count"] == AutoModel.from_pretrained(minilm_dir).num_parameters()
    assert report["dtypes"] == {"F32": 22_713_216, "I64": 512}
    assert "vocab.txt" in report["files_by_kind"]["text"] and "tokenizer.json" in report["files_by_kind"]["json"]


def test_human_output_and_exit_zero(tiny_model_dir):
    result = run_guard("inspect", str(tiny_model_dir("gemma")))
    assert result.returncode == 0, result.stderr
    assert "architecture: GemmaForCausalLM (model_type gemma)" in result.stdout
    assert "verdict:      clean" in result.stdout


def test_malformed_corpus_exits_2_with_one_line_and_bounded_memory(malformed_corpus, tiny_model_dir):
    root, cases = malformed_corpus
    assert len(cases) >= 30
    baseline = run_guard_measured("inspect", str(tiny_model_dir("llama")))
    assert baseline.returncode == 0, baseline.stderr
    worst = (0, "")
    for case in cases:
        run = run_guard_measured("inspect", str(root / case.name))
        line = assert_one_line_error(run, code=2, contains=(f"{case.name}/{case.blamed}", f"[{case.rule}]"))
        assert line.startswith("guard: error: ")
        growth = run.max_rss_kb - baseline.max_rss_kb
        worst = max(worst, (growth, case.name))
        assert growth < RSS_BUDGET_KB, (case.name, run.max_rss_kb, baseline.max_rss_kb)
    print(f"baseline peak RSS {baseline.max_rss_kb} KiB; worst growth {worst[0]} KiB ({worst[1]})")


def test_rss_probe_sees_a_100_mb_allocation():
    """The instrument works: a child that touches 100 MB shows it in its peak RSS."""
    small = run_measured(sys.executable, "-c", "pass")
    big = run_measured(sys.executable, "-c", "b = bytearray(100 << 20)")
    assert big.max_rss_kb - small.max_rss_kb > 90 * 1024


def test_payloads_are_refused_by_content_and_never_run(payload_corpus):
    root, marker, cases = payload_corpus
    for case in cases:
        result = run_guard("inspect", str(root / case.name), "--json")
        assert result.returncode == 1, (case.name, result.stderr)
        report = json.loads(result.stdout)
        refused = [f for f in report["findings"] if f["severity"] == "refuse"]
        assert [f["path"] for f in refused] == [case.relpath], case.name
        kind = next(f["kind"] for f in report["files"] if f["path"] == case.relpath)
        assert kind == {"raw": "pickle", "torch-zip": "zip", "7z": "7z"}[case.container], case.name
    assert not marker.exists()


def test_payloads_are_live_when_a_real_unpickler_loads_them(tmp_path):
    """Positive control: the same bytes do create their marker under pickle / torch.load (in a subprocess)."""
    loader = (
        "import io, pickle, sys\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "u = pickle.Unpickler(io.BytesIO(data))\n"
        "try:\n"
        "    while True: u.load()\n"
        "except Exception: pass\n"
    )
    for name, (_, build) in pp.RAW_PAYLOADS.items():
        marker = tmp_path / f"ran-{name}"
        payload = tmp_path / f"{name}.pkl"
        payload.write_bytes(build(str(marker)))
        subprocess.run([sys.executable, "-c", loader, str(payload)], check=True, timeout=60)
        assert marker.exists(), name
    marker = tmp_path / "ran-torch-zip"
    payload = tmp_path / "model.pt"
    payload.write_bytes(pp.torch_zip(pp.direct_global(str(marker))))
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], weights_only=False)", str(payload)],
                   timeout=120, capture_output=True)
    assert marker.exists()


def test_seven_zip_wrapper_really_holds_the_torch_zip(tmp_path):
    import io

    import py7zr

    inner = pp.torch_zip(pp.direct_global("/nonexistent/m"))
    with py7zr.SevenZipFile(io.BytesIO(pp.seven_zip("archive.pt", inner))) as archive:
        archive.extractall(tmp_path)
    assert (tmp_path / "archive.pt").read_bytes() == inner


def test_remote_code_exit_one_and_missing_dir_exit_two(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir("llama"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (d / "config.json").write_text(json.dumps(cfg))
    result = run_guard("inspect", str(d))
    assert result.returncode == 1
    assert "refuse: config.json [remote-code-auto-map]" in result.stdout
    assert_one_line_error(run_guard("inspect", str(tmp_path / "missing")), code=2, contains=("[path-not-found]",))


def test_hole_1_text_pickle_named_like_weights_is_refused(tmp_path):
    """Issue 10, hole 1: `pytorch_model.bin` holding a protocol-0 pickle got "verdict: clean", exit 0."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "pytorch_model.bin").write_bytes(b"(0cos\nsystem\n(S'echo pwned'\ntR.")
    result = run_guard("inspect", str(d), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [(f["path"], f["rule"]) for f in report["findings"] if f["severity"] == "refuse"] == [
        ("pytorch_model.bin", "pickle-unsafe-global")]
    assert "os.system" in report["findings"][0]["message"] or "os.system" in json.dumps(report["findings"])


def test_hole_3_duplicate_key_tokenizer_config_with_remote_code_is_refused(tmp_path):
    """Issue 10, hole 3: a duplicate key made tokenizer_config.json "text", so auto_map went unseen."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", null]}, "x": 1, "x": 2}')
    (d / "evil.py").write_text("import os\n")
    result = run_guard("inspect", str(d), "--json")
    assert result.returncode == 1, result.stderr
    refused = sorted((f["path"], f["rule"]) for f in json.loads(result.stdout)["findings"] if f["severity"] == "refuse")
    assert refused == [("tokenizer_config.json", "json-duplicate-key"), ("tokenizer_config.json", "remote-code-auto-map")]
