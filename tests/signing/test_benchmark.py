"""The signing benchmark's small mode runs end to end and reports every figure (timing is never asserted)."""

from __future__ import annotations

from benchmarks import signing


def test_small_mode_reports_all_figures(tmp_path):
    report = signing.run(total_bytes=8 * 1024 * 1024, shards=2, rounds=1, workdir=str(tmp_path))
    expected = {"model_signing sign", "model_signing verify", "guard sign sha256", "guard verify sha256",
                "guard sign blake3", "guard verify blake3", "hashlib sha256 2 threads"}
    assert set(report["median_seconds"]) == expected
    assert all(seconds > 0 for seconds in report["median_seconds"].values())
    assert set(report["ratios"]) == {f"{op} {alg} vs {peer}" for op in ("sign", "verify")
                                     for alg, peer in (("sha256", "model_signing"), ("sha256", "hashlib 2 threads"),
                                                       ("blake3", "model_signing"))}
    assert report["model_bytes"] == 8 * 1024 * 1024 + len('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    assert report["guard_verify_imports_torch"] is False
    assert list(tmp_path.iterdir()) == []  # the temp model is deleted
