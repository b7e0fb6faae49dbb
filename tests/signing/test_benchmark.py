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
    assert set(report["peak_rss_mb"]) == set(report["median_cpu_seconds"]) == expected - {"hashlib sha256 2 threads"}
    # The RSS figures are each command's own (os.wait4): a Python process holding cryptography, not the harness.
    assert all(20 < mb < 300 for mb in report["peak_rss_mb"].values()), report["peak_rss_mb"]
    assert report["guard_peak_rss_mb"] == max(v for k, v in report["peak_rss_mb"].items() if k.startswith("guard"))
    assert list(tmp_path.iterdir()) == []  # the temp model is deleted
