"""Issue 10, hole 8: signing and verifying keep a bounded resident set (hashed pages are not kept mapped).

A 512 MiB sparse file is cheap to make and reads as zeros; mapped whole, its pages count in the
process's RSS as they are hashed (the old hashing peaked near the model size). The bound here is
well above the interpreter, cryptography and the hashing buffers, and far below the file.
"""

from __future__ import annotations

import pytest

from tests.artifacts.conftest import run_guard_measured
from tests.signing.conftest import PASSPHRASE

FILE_BYTES = 512 << 20
RSS_BOUND_KB = 200 << 10


@pytest.fixture
def sparse_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with open(model / "model-00001-of-00002.safetensors", "wb") as f:
        f.truncate(FILE_BYTES // 2)
    with open(model / "model-00002-of-00002.safetensors", "wb") as f:
        f.truncate(FILE_BYTES // 2)
    (model / "config.json").write_text('{"model_type": "llama"}')
    return model


@pytest.mark.parametrize("hash_type", ["sha256", "blake3"])
def test_sign_and_verify_peak_rss_is_bounded(sparse_model, keypair, tmp_path, monkeypatch, hash_type):
    monkeypatch.setenv("GUARD_KEY_PASSPHRASE", PASSPHRASE)
    sig = tmp_path / "model.sig"
    signed = run_guard_measured("sign", sparse_model, "--key", keypair[1], "--signature", sig, "--hash", hash_type)
    assert signed.returncode == 0, signed.stderr
    verified = run_guard_measured("verify", sparse_model, "--key", keypair[2], "--signature", sig)
    assert verified.returncode == 0, verified.stderr
    assert signed.max_rss_kb < RSS_BOUND_KB, signed.max_rss_kb
    assert verified.max_rss_kb < RSS_BOUND_KB, verified.max_rss_kb
