"""The HTML review page in headless Chromium: one click labels an image, and the label is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_one_click_labels_an_image(curator, harvest_builder, small_web, settings) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    harvest_builder(web=small_web, images_per_domain=lambda i: 4)
    domain = small_web.domains[-1].name
    url = f"{curator.base_url}/domains/{domain}/sample?dataset=fungi&seed=3&format=html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            cards = page.locator(".card")
            expect(cards).to_have_count(4)
            page.fill("#token", settings.api_token)
            page.dispatch_event("#token", "change")
            first = cards.nth(0)
            image_id = first.get_attribute("data-image-id")
            first.locator("button.irrelevant").click()
            expect(first).to_have_class("card irrelevant")
            expect(page.locator("#status")).to_have_text("saved: irrelevant")
            second = cards.nth(1)
            second.locator("button.relevant").click()
            expect(second).to_have_class("card relevant")
            # A wrong token is refused and the page says so.
            page.fill("#token", "wrong")
            cards.nth(2).locator("button.irrelevant").click()
            expect(page.locator("#status")).to_contain_text("not saved: 403")
        finally:
            browser.close()
    labels = {item["image_id"]: item["label"] for item in curator.get("/labels", params={"dataset": "fungi"}).json()}
    assert labels[image_id] == "irrelevant" and len(labels) == 2
