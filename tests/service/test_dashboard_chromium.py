"""The dashboard in headless Chromium (Debian's chromium, driven by Playwright): the audit list, and an audit's
page with each check and its per-layer SVG plots, screenshotted and measured."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from guard.service.app import create_app
from guard.service.audit import AuditRequest, StageAuditor
from guard.service.config import ServiceConfig
from guard.service.store import JobKey, JobStore
from guard.service.trust import RepoTrust
from tests.service.helpers import SECRET, serving

CHROMIUM = "/usr/bin/chromium"  # .ci/run installs Debian's chromium before the tests
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def audited_store(tmp_path, tiny_model_dir):
    """A store holding one finished real audit (StageAuditor on a tiny Llama against its base) and one queued job."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llama", seed=1), model)
    result = StageAuditor().audit(AuditRequest(repo="acme/model", ref="refs/heads/main", sha="a" * 40, model_dir=model,
                                               trust=RepoTrust(), base_dir=tiny_model_dir("llama", seed=0),
                                               base_ref="hf:acme/base@" + "b" * 40))
    result.update(repo="acme/model", ref="refs/heads/main", sha="a" * 40)
    store = JobStore(str(tmp_path / "serve.db"))
    store.enqueue([JobKey("acme/model", "refs/heads/main", "a" * 40), JobKey("acme/other", "refs/pr/2", "c" * 40)])
    claim = store.claim(owner="test", lease_s=60)
    store.record_result(claim, result)
    store.complete(claim, report_state="posted", report_discussion=1)
    yield store, claim.id
    store.close()


def _blank(png: bytes) -> bool:
    """True if the screenshot is (nearly) one flat colour: its decompressed scanlines hold few distinct bytes."""
    import struct
    import zlib

    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat))) < 16


def test_dashboard_renders_in_chromium(audited_store, tmp_path):
    from playwright.sync_api import sync_playwright

    assert pathlib.Path(CHROMIUM).exists(), "Debian's chromium is missing: .ci/run installs it"
    store, job_id = audited_store
    config = ServiceConfig(webhook_secret=SECRET, database=str(tmp_path / "serve.db"))
    with serving(create_app(config, store)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS[1:], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
            page.goto(url + "/")
            assert page.locator("#audits tbody tr").count() == 2
            assert page.locator("#count-done").inner_text() == "1"
            list_png = page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            page.click(f"a[href='/audits/{job_id}']")
            page.wait_for_url(f"{url}/audits/{job_id}")
            assert page.locator("#verdict").inner_text() == "pass"
            checks = page.locator("section.check")
            assert {checks.nth(i).get_attribute("id") for i in range(checks.count())} >= {
                "check-artifacts", "check-signature", "check-mergelock", "check-weights", "check-probes"}
            plots = page.locator("#check-mergelock svg.plot")
            assert plots.count() == 1
            box = plots.first.bounding_box()
            assert box["width"] > 300 and box["height"] > 100
            # one point per layer per series (attention, mlp) of the tiny 2-layer Llama
            assert page.locator("#check-mergelock svg.plot circle").count() == 4
            assert page.locator("#check-weights svg.plot").count() == 1
            # the probes' own plots (canonical: kept share and moved units per block; geometry: per tensor)
            assert page.locator("#check-probes svg.plot").count() >= 2
            audit_png = page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
            plot_png = plots.first.screenshot()
        finally:
            browser.close()
    assert external == []  # no CDN, nothing off the box
    for png in (list_png, audit_png, plot_png):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and not _blank(png)
