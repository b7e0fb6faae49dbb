"""The real audit, end to end: the fake Hub delivers webhooks to the running app, workers download by sha in
the sandbox, audit with StageAuditor, record and report back; guard's own comments come back as webhooks and
are ignored. Also: a signature copied onto another repo fails, and hostile uploads fail within bounds."""

from __future__ import annotations

import base64
import json
import pathlib
import shutil
import time
import zipfile

import httpx2
import pytest

from guard.service.app import create_app
from guard.service.config import SandboxLimits, ServiceConfig
from guard.service.executor import LocalExecutor
from guard.service.store import JobStore
from guard.service.trust import TrustPolicy
from guard.service.worker import Worker
from guard.testing.fake_hub import FakeHub
from tests.probes.conftest import lm_zoo  # noqa: F401  (the fixture)
from tests.service.helpers import SECRET, serving

pytestmark = pytest.mark.slow


def _keypair(root: pathlib.Path, name: str):
    from guard.signing import keys

    private = keys.generate_private_key()
    public = root / f"{name}.pub"
    public.write_bytes(keys.public_key_pem(private.public_key()))
    return private, public


def _sign(model_dir: pathlib.Path, private) -> None:
    from guard.signing import sign_model
    from guard.signing.method_key import KeySigner

    sign_model(model_dir, signer=KeySigner(private_key=private))


def _self_signed_chain_bundle(tmp: pathlib.Path, copies: int) -> tuple[str, pathlib.Path]:
    """A bundle whose x509CertificateChain repeats one certificate `copies` times, and an unrelated CA."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from guard.signing import keys

    def cert(name: str, key):
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))

    loop = cert("loop", keys.generate_private_key())
    anchor = tmp / "ca.pem"
    anchor.write_bytes(cert("trusted root", keys.generate_private_key()).public_bytes(serialization.Encoding.PEM))
    der = base64.b64encode(loop.public_bytes(serialization.Encoding.DER)).decode()
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
              "verificationMaterial": {"x509CertificateChain": {"certificates": [{"rawBytes": der}] * copies},
                                       "tlogEntries": []},
              "dsseEnvelope": {"payload": base64.b64encode(b"{}").decode(), "payloadType": "application/vnd.in-toto+json",
                               "signatures": [{"sig": base64.b64encode(b"\x30\x00").decode()}]}}
    return json.dumps(bundle), anchor


@pytest.fixture
def world(online, tmp_path, tiny_model_dir):
    """A fake Hub with a base model, signed and tampered uploads, and a trust file binding repos to keys."""
    acme_private, acme_public = _keypair(tmp_path, "acme")
    _, evil_public = _keypair(tmp_path, "evil")
    bundle, anchor = _self_signed_chain_bundle(tmp_path, copies=5000)
    trust = TrustPolicy.model_validate({"repos": [
        {"match": "acme/*", "require_signature": True, "signers": [{"key": str(acme_public)}]},
        {"match": "evil/*", "require_signature": True, "signers": [{"key": str(evil_public)}]},
        {"match": "hostile/chain", "require_signature": True, "signers": [{"certificate_chain": [str(anchor)]}]},
    ]})
    base = tiny_model_dir("llama", seed=0)
    signed = tmp_path / "uploads" / "signed"
    shutil.copytree(tiny_model_dir("llama", seed=1), signed)
    (signed / "README.md").write_text("---\nbase_model: acme/base\nlicense: mit\n---\n# signed\n")
    _sign(signed, acme_private)
    pickled = tmp_path / "uploads" / "pickled"
    shutil.copytree(signed, pickled)
    zip_path = pickled / "pytorch_model.bin"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # a 256 MiB decompression bomb
        with zf.open("archive/data.pkl", "w", force_zip64=True) as member:
            for _ in range(256):
                member.write(b"\0" * (1 << 20))
    huge_header = tmp_path / "uploads" / "huge-header"
    shutil.copytree(base, huge_header)
    header = b"{" + b" " * (20 << 20) + b"}"
    (huge_header / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    chain = tmp_path / "uploads" / "chain"
    shutil.copytree(base, chain)
    (chain / "model.sig").write_text(bundle)  # 5,000 copies of one self-signed certificate
    hub = FakeHub().start()
    hub.push("acme/base", base)
    yield {"hub": hub, "trust": trust, "uploads": {"signed": signed, "pickled": pickled, "huge": huge_header,
                                                   "chain": chain}}
    hub.close()


def test_webhook_to_report_with_real_audits(world, tmp_path):
    hub, uploads = world["hub"], world["uploads"]
    bot_id = FakeHub.user_id("guard-bot")
    limits = SandboxLimits(memory_bytes=3 << 30, wall_s=300)
    config = ServiceConfig(webhook_secret=SECRET, database=str(tmp_path / "serve.db"), trust=world["trust"],
                           hub={"endpoint": hub.endpoint, "token": "hf_fake_guard_token"}, sandbox=limits,
                           bot_user_ids=(bot_id,), work_dir=tmp_path)
    store = JobStore(config.database)
    worker = Worker(store=store, executor=LocalExecutor(limits=limits.model_dump(), work_root=tmp_path / "w"),
                    config=config)
    with serving(create_app(config, store)) as url:
        hub.add_webhook(f"{url}/webhooks/hub", secret=SECRET)
        shas = {"acme/signed": hub.push("acme/signed", uploads["signed"]),
                "acme/other": hub.push("acme/other", uploads["signed"]),  # same key, same files, other repo
                "evil/signed": hub.push("evil/signed", uploads["signed"]),  # copied to a repo with its own key
                "acme/pickled": hub.push("acme/pickled", uploads["pickled"]),
                "hostile/huge": hub.push("hostile/huge", uploads["huge"])}
        pr_num, pr_sha = hub.open_pull_request("acme/signed", uploads["signed"])
        hub.wait_for_deliveries()
        assert len(store.jobs()) == 6
        started = time.monotonic()
        while worker.run_once():
            pass
        elapsed = time.monotonic() - started
        hub.wait_for_deliveries()  # guard's own comments come back as webhooks
        with httpx2.Client(base_url=url) as client:
            audits = {(a["repo"], a["ref"]): a for a in client.get("/api/audits").json()["audits"]}
            details = {k: client.get(f"/api/audits/{a['id']}").json()["result"] for k, a in audits.items()}
            page = client.get(f"/audits/{audits[('acme/signed', 'refs/heads/main')]['id']}").text

    verdicts = {k: (a["state"], a["verdict"]) for k, a in audits.items()}
    assert verdicts == {("acme/signed", "refs/heads/main"): ("done", "pass"),
                        ("acme/signed", f"refs/pr/{pr_num}"): ("done", "pass"),
                        ("acme/other", "refs/heads/main"): ("done", "fail"),
                        ("evil/signed", "refs/heads/main"): ("done", "fail"),
                        ("acme/pickled", "refs/heads/main"): ("done", "fail"),
                        ("hostile/huge", "refs/heads/main"): ("done", "fail")}, verdicts

    def status(key, check_id):
        return next(c for c in details[key]["checks"] if c["id"] == check_id)

    good = details[("acme/signed", "refs/heads/main")]
    assert status(("acme/signed", "refs/heads/main"), "signature")["status"] == "pass"
    lock = status(("acme/signed", "refs/heads/main"), "mergelock")
    assert lock["status"] == "pass" and "acme/base@" in lock["title"] and lock["plots"][0]["series"]["attention"]
    assert good["base"]["ref"].startswith("hf:acme/base@") and good["sha"] == shas["acme/signed"]
    assert "signature names model 'signed', not 'acme/other'" in status(("acme/other", "refs/heads/main"),
                                                                         "signature")["message"]
    assert "not signed by a signer trusted for evil/signed" in status(("evil/signed", "refs/heads/main"),
                                                                      "signature")["message"]
    assert "pytorch_model.bin" in status(("acme/pickled", "refs/heads/main"), "artifacts")["message"]
    assert "header" in status(("hostile/huge", "refs/heads/main"), "artifacts")["message"]
    for key in (("acme/pickled", "refs/heads/main"), ("hostile/huge", "refs/heads/main")):  # bounded memory
        assert details[key]["resources"]["max_rss_bytes"] < 1 << 30, details[key]["resources"]
    assert elapsed < 600

    # reports: one comment per audit; the PR's on the PR itself; guard's own comment webhooks ignored
    comments = hub.comments("acme/signed", pr_num)
    assert len(comments) == 1 and "guard audit: **PASS**" in comments[0]["data"]["latest"]["raw"]
    for repo in shas:
        titles = [d.title for d in hub.discussion_list(repo) if not d.is_pull_request]
        assert titles == [f"guard audit main @ {shas[repo][:7]}"], (repo, titles)
    reasons = [d.reason for d in store.deliveries(limit=200)]
    assert reasons.count("guard's own comment") == 6
    assert len(store.jobs()) == 6  # nothing new was queued by guard's own writes
    assert '<svg class="plot"' in page and "Relative distance from the base" in page
    assert pr_sha == audits[("acme/signed", f"refs/pr/{pr_num}")]["sha"]


def test_endless_certificate_chain_costs_bounded_time(world, tmp_path):
    """A bundle carrying 5,000 copies of one certificate: the audit fails closed within the sandbox's wall clock
    (today it is the wall clock that stops it: guard.signing's path search is exponential in repeated
    intermediates; see docs/service.md)."""
    hub = world["hub"]
    sha = hub.push("hostile/chain", world["uploads"]["chain"])
    limits = SandboxLimits(memory_bytes=3 << 30, wall_s=20)
    config = ServiceConfig(webhook_secret=SECRET, database=str(tmp_path / "serve.db"), trust=world["trust"],
                           hub={"endpoint": hub.endpoint}, sandbox=limits, work_dir=tmp_path, report=False)
    store = JobStore(config.database)
    from guard.service.store import JobKey

    store.enqueue([JobKey("hostile/chain", "refs/heads/main", sha)])
    worker = Worker(store=store, executor=LocalExecutor(limits=limits.model_dump(), work_root=tmp_path / "w"),
                    config=config)
    started = time.monotonic()
    assert worker.run_once()
    elapsed = time.monotonic() - started
    job = store.jobs()[0]
    assert (job.state, job.verdict) == ("done", "fail")
    result = json.loads(job.result)
    assert any(c["status"] == "fail" and c["id"] in ("signature", "resources") for c in result["checks"])
    assert elapsed < 60


def test_the_audit_probes_uploads_against_the_base_and_peers(online, lm_zoo, tmp_path):
    """The small LM zoo on the fake Hub: the BadNets expert is flagged (warn, the default action) with the
    probe's number and threshold, in the record, the comment and the dashboard's plots; a clean expert of the
    same base passes; an upload whose card names no base gets "skip" with the reason."""
    family = lm_zoo["family"]
    card = "---\nbase_model: zoo/base\n---\n# {}\n"
    uploads = {}
    for name, src in {"badnets": lm_zoo["badnets"], "sort": family.experts["sort"]}.items():
        uploads[name] = tmp_path / "uploads" / name
        shutil.copytree(src, uploads[name])
        (uploads[name] / "README.md").write_text(card.format(name))
    uploads["nobase"] = tmp_path / "uploads" / "nobase"
    shutil.copytree(family.experts["sort"], uploads["nobase"])
    (uploads["nobase"] / "README.md").write_text("---\nlicense: mit\n---\n# no base named\n")
    peers = [f"zoo/{t}" for t in family.experts]  # the clean experts; an upload is never its own peer
    trust = TrustPolicy.model_validate({"default": {"probes": {"peers": peers}}})
    limits = SandboxLimits(memory_bytes=3 << 30, wall_s=300)
    with FakeHub() as hub:
        hub.push("zoo/base", family.base)
        for task, path in family.experts.items():
            hub.push(f"zoo/{task}", path)
        config = ServiceConfig(webhook_secret=SECRET, database=str(tmp_path / "serve.db"), trust=trust,
                               hub={"endpoint": hub.endpoint, "token": "hf_fake_guard_token"}, sandbox=limits,
                               work_dir=tmp_path)
        store = JobStore(config.database)
        from guard.service.store import JobKey

        repos = {"badnets": "up/badnets", "sort": "zoo/sort", "nobase": "up/nobase"}  # a new revision of a peer
        shas = {name: hub.push(repos[name], path) for name, path in uploads.items()}
        store.enqueue([JobKey(repos[name], "refs/heads/main", sha) for name, sha in shas.items()])
        worker = Worker(store=store, executor=LocalExecutor(limits=limits.model_dump(), work_root=tmp_path / "w"),
                        config=config)
        while worker.run_once():
            pass
        jobs = {job.repo: job for job in store.jobs()}
        assert {job.state for job in jobs.values()} == {"done"}, [(j.repo, j.last_error) for j in jobs.values()]
        comments = {name: hub.comments(repos[name], hub.discussion_list(repos[name])[0].num)[0]["data"]["latest"]["raw"]
                    for name in uploads}
        with serving(create_app(config, store)) as url, httpx2.Client(base_url=url) as client:
            page = client.get(f"/audits/{jobs['up/badnets'].id}").text

    def probes(name):
        return next(c for c in json.loads(jobs[repos[name]].result)["checks"] if c["id"] == "probes")

    bad = probes("badnets")
    assert bad["status"] == "warn" and jobs["up/badnets"].verdict == "pass"  # warn: the documented default
    embedding = next(r for r in bad["details"]["probes"] if r["probe"] == "embedding")
    assert embedding["flagged"] and embedding["score"] >= embedding["threshold"] == 8.0
    assert len(bad["details"]["peers"]) == 4 and bad["details"]["base"].startswith("hf:zoo/base@")
    assert "| Backdoor and safety probes | WARN | 1 of 3 probes flagged" in comments["badnets"]
    assert "row 7 ('#')" in comments["badnets"] and "threshold 8)" in comments["badnets"]
    assert '<svg class="plot"' in page and "embedding: row outlier score" in page
    clean = probes("sort")
    assert clean["status"] == "pass" and len(clean["details"]["peers"]) == 3, clean["message"]  # never its own peer
    assert "| Backdoor and safety probes | PASS |" in comments["sort"]
    none = probes("nobase")
    assert none["status"] == "skip" and "the model card names no base_model" in none["message"]
