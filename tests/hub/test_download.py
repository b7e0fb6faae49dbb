"""guard.hub.download against the loopback fake Hub; huggingface_hub's own snapshot_download is the reference."""

import hashlib
import os
import pathlib

import pytest

from guard.errors import InputError, PolicyRefusal, VerificationError
from guard.hub import HubLimits, HubSettings, download_revision, parse_hub_ref, resolve_revision
from guard.hub.download import HubUnavailable, card_data, list_revision
from guard.testing.fake_hub import FakeHub

FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": os.urandom(4096),
         "tokenizer/vocab.txt": b"a\nb\n", "README.md": b"---\nbase_model: acme/base\nlicense: mit\n---\n# hi\n"}


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_download_matches_snapshot_download(hub, settings, tmp_path):
    from huggingface_hub import snapshot_download

    sha = hub.push("acme/model", FILES)
    fetched = download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path / "a", settings=settings)
    reference = pathlib.Path(snapshot_download("acme/model", revision=sha, cache_dir=tmp_path / "ref",
                                               endpoint=hub.endpoint, token=False))
    assert _tree(fetched.model_dir) == _tree(reference) == FILES
    assert fetched.total_bytes == sum(map(len, FILES.values()))
    # regular files only (open_model_dir refuses symlinks), and nothing but the model left in dest
    assert not any(p.is_symlink() for p in fetched.model_dir.rglob("*"))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model"]
    lfs = {f.path: f.sha256 for f in fetched.files}
    assert lfs["model.safetensors"] == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert lfs["config.json"] is None


def test_download_pins_the_sha_not_the_branch(hub, settings, tmp_path):
    first = hub.push("acme/model", FILES)
    hub.push("acme/model", {**FILES, "config.json": b'{"model_type": "gpt2"}'})
    fetched = download_revision(parse_hub_ref(f"hf:acme/model@{first}"), dest=tmp_path, settings=settings)
    assert (fetched.model_dir / "config.json").read_bytes() == FILES["config.json"]
    assert resolve_revision("acme/model", settings=settings).sha != first


def test_card_data(hub, settings):
    sha = hub.push("acme/model", FILES)
    assert card_data(parse_hub_ref(f"hf:acme/model@{sha}"), settings=settings) == {"base_model": "acme/base",
                                                                                  "license": "mit"}


@pytest.mark.parametrize("limits, rule", [
    (HubLimits(max_files=3), "hub-too-many-files"),
    (HubLimits(max_file_bytes=4000), "hub-too-large"),
    (HubLimits(max_total_bytes=4100), "hub-too-large"),
])
def test_limits_refuse_before_downloading(hub, settings, tmp_path, limits, rule):
    sha = hub.push("acme/model", FILES)
    with pytest.raises(PolicyRefusal) as info:
        download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path, settings=settings, limits=limits)
    assert info.value.rule == rule and info.value.exit_code == 1
    assert not any(method == "GET" and "/resolve/" in path for method, path in hub.requests)
    assert not (tmp_path / "model").exists()


def test_a_hub_that_sends_more_than_it_listed_is_cut_off(hub, settings, tmp_path):
    sha = hub.push("acme/model", FILES)
    hub.fault = lambda method, path: {"extra_bytes": 10 << 20} if path.endswith(".safetensors") else None
    with pytest.raises((PolicyRefusal, HubUnavailable)):
        download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path, settings=settings,
                          limits=HubLimits(max_file_bytes=1 << 20))
    assert not (tmp_path / "model").exists()


def test_a_listing_that_lies_about_content_fails_the_digest_check(hub, settings, tmp_path):
    sha = hub.push("acme/model", FILES)

    def lie(entries):
        for e in entries:
            if e.get("lfs"):
                e["lfs"]["oid"] = "0" * 64
        return entries

    hub.fault = lambda method, path: {"tree": lie} if "/tree/" in path else None
    with pytest.raises(VerificationError) as info:
        download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path, settings=settings)
    assert info.value.rule == "hub-digest"
    assert not (tmp_path / "model").exists()


def test_unsafe_names_in_the_listing_are_refused(hub, settings, tmp_path):
    sha = hub.push("acme/model", FILES)
    hub.fault = lambda method, path: ({"tree": lambda es: es + [{"type": "file", "oid": "0" * 40, "size": 1,
                                                                 "path": "../escape"}]}
                                      if "/tree/" in path else None)
    with pytest.raises(VerificationError) as info:
        download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path, settings=settings)
    assert info.value.rule == "hub-path"


def test_redirects_off_the_hub_are_refused(online, tmp_path):
    with FakeHub() as hub, FakeHub() as elsewhere:
        sha = hub.push("acme/model", FILES)
        elsewhere.push("acme/model", FILES)
        target = elsewhere.endpoint.replace("127.0.0.1", "localhost")

        def redirect(method, path):
            return {"redirect": f"{target}{path}"} if "/resolve/" in path else None

        hub.fault = redirect
        with pytest.raises(PolicyRefusal) as info:
            download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path,
                              settings=HubSettings(endpoint=hub.endpoint))
        assert info.value.rule == "hub-host"
        assert elsewhere.requests == []


def test_a_stalled_hub_costs_bounded_time(hub, settings, tmp_path):
    import time

    sha = hub.push("acme/model", FILES)
    hub.fault = lambda method, path: {"stall": 60} if "/resolve/" in path else None
    start = time.monotonic()
    with pytest.raises(PolicyRefusal) as info:
        download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path, settings=settings,
                          limits=HubLimits(read_timeout_s=0.5, timeout_s=1.0))
    assert info.value.rule == "hub-timeout"
    assert time.monotonic() - start < 10  # huggingface_hub's own retry back-off, then the deadline


def test_missing_repo_and_revision_are_input_errors(hub, settings, tmp_path):
    hub.push("acme/model", FILES)
    for ref in ("hf:acme/none@" + "0" * 40, "hf:acme/model@" + "0" * 40):
        with pytest.raises(InputError) as info:
            download_revision(parse_hub_ref(ref), dest=tmp_path / ref[-3:], settings=settings)
        assert info.value.rule == "hub-not-found"


def test_unreachable_hub_is_retryable(online, tmp_path):
    with FakeHub() as hub:
        endpoint = hub.endpoint
    with pytest.raises(HubUnavailable):
        list_revision(parse_hub_ref("hf:acme/model@" + "0" * 40), settings=HubSettings(endpoint=endpoint),
                      limits=HubLimits(timeout_s=2))


def test_existing_destination_is_not_overwritten(hub, settings, tmp_path):
    sha = hub.push("acme/model", FILES)
    (tmp_path / "model").mkdir()
    with pytest.raises(InputError):
        download_revision(parse_hub_ref(f"hf:acme/model@{sha}"), dest=tmp_path, settings=settings)
