"""The web page at / in headless Chromium: upload a photo, see the answer and the safety notice."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fixtureweb.web import FixtureWebInfo
from services.inference.schemas import SAFETY_NOTICE
from tests.e2e.inference.conftest import CATALOG, Served, encode, irrelevant_photo, species_photo

pytestmark = [pytest.mark.e2e, pytest.mark.ml, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def ensure_chromium() -> str:
    """Debian's chromium (never `playwright install`: no internet); installed with apt-get when missing."""
    if not Path(CHROMIUM).exists() and shutil.which("apt-get"):
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=900,
                               env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            except (subprocess.SubprocessError, OSError) as exc:
                pytest.skip(f"chromium is not installed and `{' '.join(command)}` failed: {exc}")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} and apt-get is not available")
    return CHROMIUM


def test_upload_a_photo_and_see_the_answer(served: Served, fixture_web: FixtureWebInfo, tmp_path: Path) -> None:
    executable = ensure_chromium()
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "mushroom.jpg"
    photo.write_bytes(encode(species_photo(0, seed=3)))
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(encode(irrelevant_photo(1), "PNG"))
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"not a photo")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(served.url + "/")
            expect(page.locator("h1")).to_contain_text("which mushroom")

            page.set_input_files("#photo", str(photo))
            page.check("#explain")
            page.click("#submit")
            result = page.locator("#result")
            expect(result.locator(".meta")).to_contain_text("fixture-a", timeout=30_000)
            expect(page.locator("#safety")).to_have_text(SAFETY_NOTICE)
            verdict = result.get_attribute("data-verdict")
            expect(result.locator(".judgement")).to_contain_text("photo of a fungus")
            if verdict in ("confident", "uncertain"):
                rows = page.locator("#predictions tr")
                expect(rows).to_have_count(6)  # header + top 5
                species = {sp.name for sp in CATALOG.species}
                assert rows.nth(1).locator("td").first.inner_text() in species
                expect(page.locator("#heatmap")).to_be_visible()

            page.set_input_files("#photo", str(notes))
            page.click("#submit")
            expect(result.locator(".error")).to_contain_text("415: the upload is not an image", timeout=30_000)

            # A photo by URL (no file chosen): the fixture web's herbarium sheet is not guessed at.
            page.set_input_files("#photo", [])
            page.uncheck("#explain")
            page.fill("#url", fixture_web.url(fixture_web.domains[0], "/irrelevant/herbarium_sheet/2.jpg", "path"))
            page.click("#submit")
            expect(result.locator(".verdict")).to_contain_text("Not a photo of a mushroom", timeout=30_000)
            assert result.get_attribute("data-verdict") == "not_a_mushroom"
            expect(page.locator("#predictions")).to_have_count(0)
        finally:
            browser.close()
