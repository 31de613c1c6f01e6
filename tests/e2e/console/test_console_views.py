"""The console's views in headless Chromium against the real services: the job page (live curves, fine-tune
boundary, spec, confusion heatmap, per-class table, calibration, logs), the sweep comparison and promotion,
lineage both ways, and predictions with Grad-CAM, one photo and several. Every view must load without a console
error or a failed request; screenshots (desktop and 375 px) are saved and listed in pytest's summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtureweb import SpeciesCatalog

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.ml]

PHONE = {"width": 375, "height": 800}


def points(page: Any, chart: str, series: str) -> list[float]:
    """The plotted (epoch, value) pairs of one series, flattened: [x0, y0, x1, y1, ...]."""
    return page.eval_on_selector_all(
        f"#{chart} circle.point[data-series='{series}']",
        "nodes => nodes.flatMap(n => [Number(n.dataset.x), Number(n.dataset.value)])")


def flat(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [value for row in rows for value in (row["epoch"], row[key])]


OVERFLOWING = """() => {
  if (document.documentElement.scrollWidth <= window.innerWidth + 1) return [];
  const inScroller = (node) => node.closest('.scroll, pre');
  return [...document.querySelectorAll('main *')]
    .filter((node) => node.getBoundingClientRect().right > window.innerWidth + 1 && !inScroller(node.parentElement))
    .slice(0, 8).map((node) => `${node.tagName}.${node.className} ${node.getBoundingClientRect().right}`);
}"""


def assert_fits_width(page: Any) -> None:
    """Nothing makes the page itself scroll sideways (wide tables scroll inside their card)."""
    page.wait_for_timeout(200)
    too_wide = page.evaluate(OVERFLOWING)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), too_wide


def test_the_job_page_follows_a_run_live_and_shows_its_evaluation(
        console_stack: Any, browser_page: Any, screenshot: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page.page
    # queued behind the sweep's runs at start-up; on a machine fast enough to have trained it already, another
    job_id = console_stack.live_job_id
    with console_stack.http() as http:
        if http.get(f"{console_stack.trainer}/jobs/{job_id}").json()["state"] in ("completed", "failed"):
            job_id = console_stack.submit_live_job()
    page.goto(f"{console_stack.url}/#jobs/{job_id}")
    expect(page.locator("#job-facts")).to_contain_text("state")
    seen_states = set()
    for _ in range(600):
        state = page.locator("#job-detail").get_attribute("data-state")
        seen_states.add(state)
        if state in ("completed", "failed", "cancelled"):
            break
        page.wait_for_timeout(400)
    assert "completed" in seen_states, (seen_states, page.locator("#job-facts").text_content())
    assert seen_states & {"queued", "running"}, f"the page never showed the job before it ended: {seen_states}"
    expect(page.locator("#job-eval #confusion")).to_be_visible(timeout=15_000)

    with console_stack.http() as http:
        job = http.get(f"{console_stack.trainer}/jobs/{job_id}").json()
        detail = http.get(f"{console_stack.trainer}/models/{job_id}").json()
    history = job["history"]
    assert len(history) == 4
    for metric in ("loss", "accuracy"):
        for series, key in ((f"train {metric}", metric), (f"validation {metric}", f"val_{metric}")):
            plotted = points(page, f"curve-{metric}", series)
            assert plotted == pytest.approx(flat(history, key)), series
    # the fine-tune boundary: history rows say which phase each epoch belongs to
    first_fine_tune = next(row["epoch"] for row in history if row["phase"] == "fine_tune")
    assert first_fine_tune == 4
    assert page.get_attribute("#curve-loss line.marker", "data-x") == "3.5"
    expect(page.locator("#job-curves")).to_contain_text("fine-tuning starts after epoch 3")

    # the spec as fields, not JSON
    spec = page.locator("#job-spec")
    expect(spec.locator("[data-group=job]")).to_contain_text("live")
    expect(spec.locator("[data-group=data]")).to_contain_text("console-fungi")
    expect(spec.locator("[data-group='fine tune']")).to_contain_text("enabled")
    assert "{" not in (spec.text_content() or "")

    # the confusion matrix: one cell per (true, predicted) pair, the test split's counts
    metrics = detail["metrics"]
    names = [c["name"] for c in sorted(detail["card"]["classes"], key=lambda c: c["index"])]
    cells = page.eval_on_selector_all(
        "#confusion rect.cell",
        "nodes => nodes.map(n => [n.dataset.true, n.dataset.predicted, Number(n.dataset.value)])")
    expected = [[names[i], names[j], value]
                for i, row in enumerate(metrics["confusion"]) for j, value in enumerate(row)]
    assert cells == expected
    assert sum(value for _, _, value in cells) == metrics["test_images"]
    for name in names:
        expect(page.locator("#confusion svg")).to_contain_text(name[:23])

    # the per-class table sorts by a column
    table = page.locator("#per-class table")
    expect(table.locator("tbody tr")).to_have_count(len(names))
    table.locator("th button", has_text="recall").click()
    recalls = [float(text) for text in table.locator("tbody tr td:nth-child(3)").all_text_contents()]
    assert recalls == sorted(recalls)
    table.locator("th button", has_text="recall").click()
    recalls = [float(text) for text in table.locator("tbody tr td:nth-child(3)").all_text_contents()]
    assert recalls == sorted(recalls, reverse=True)
    first = table.locator("tbody tr").first.get_attribute("data-class")
    assert metrics["per_class"][first]["recall"] == pytest.approx(max(recalls), abs=1e-3)
    # and by keyboard: the column headings are buttons
    table.locator("th button", has_text="support").focus()
    page.keyboard.press("Enter")
    expect(table.locator("th[aria-sort=ascending]")).to_have_text("support")

    # calibration from the model's open-set card and calibration.json
    expect(page.locator("#calibration")).to_contain_text("temperature")
    assert page.locator("#reliability-after rect.bin").count() >= 1
    expect(page.locator("#job-log")).to_contain_text("epoch 4/4")
    expect(page.locator("#job-cancel")).to_be_hidden()
    assert_fits_width(page)
    screenshot(page, "desktop")
    page.set_viewport_size(PHONE)
    assert_fits_width(page)
    screenshot(page, "phone")


def test_a_sweep_compares_its_runs_and_promotes_the_best(
        console_stack: Any, browser_page: Any, screenshot: Any) -> None:
    from playwright.sync_api import expect

    jobs = console_stack.wait_jobs()
    page = browser_page.page
    # the Jobs tab links each sweep job to its sweep; the Sweeps tab lists the trainer's sweeps with their best run
    page.goto(f"{console_stack.url}/#jobs")
    expect(page.locator("#jobs-out")).to_contain_text(console_stack.sweep_id)
    page.click("button[data-tab=sweeps]")
    listed = page.locator(f"#sweep-list tr:has(a.sweep-link:text-is('{console_stack.sweep_id}'))")
    expect(listed).to_contain_text("2 completed")
    expect(listed).to_contain_text("console sweep")
    screenshot(page, "sweeps-list")
    listed.locator("a.sweep-link").click()
    expect(page.locator("#sweeps-out")).to_have_attribute("data-state", "done")

    with console_stack.http() as http:
        sweep = http.get(f"{console_stack.trainer}/sweeps/{console_stack.sweep_id}").json()
    best = sweep["best_job_id"]
    assert best in console_stack.job_ids
    rows = page.locator("#sweep-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#sweep-table tr.best")).to_have_attribute("data-job", best)
    expect(page.locator("#sweep-table tr.best")).to_contain_text("★ best")
    expect(page.locator("#sweep-table thead")).to_contain_text("learning rate")
    for row, job in zip(sweep["rows"], jobs, strict=True):
        line = page.locator(f"#sweep-table tr[data-job='{row['job_id']}']")
        expect(line).to_contain_text(str(row["overrides"]["optimizer.learning_rate"]))
        expect(line).to_contain_text(f"{row['best_val_accuracy'] * 100:.1f}%")
        # each run's validation accuracy, overlaid
        plotted = points(page, "sweep-val_accuracy", row["label"])
        assert plotted == pytest.approx(flat(job["history"], "val_accuracy"))

    page.click("#sweep-table tr.best button.promote")
    expect(page.locator("#sweep-table tr.best button.promote")).to_have_text("promoted")
    with console_stack.http() as http:
        assert http.get(f"{console_stack.trainer}/models/promoted").json()["model_id"] == best
    assert_fits_width(page)
    screenshot(page, "desktop")
    page.set_viewport_size(PHONE)
    assert_fits_width(page)
    screenshot(page, "phone")


def test_lineage_runs_from_a_model_to_its_import_and_back(
        console_stack: Any, browser_page: Any, screenshot: Any) -> None:
    from playwright.sync_api import expect

    console_stack.wait_jobs()
    model_id = console_stack.job_ids[0]
    page = browser_page.page
    page.goto(f"{console_stack.url}/#models")
    page.click(f"#models-out tr:has-text('{model_id}') a:has-text('lineage')")
    steps = page.locator("#lineage-steps > li")
    expect(steps).to_have_count(6)
    assert [steps.nth(i).get_attribute("data-step") for i in range(6)] == [
        "model", "spec", "split", "curation", "harvest", "import"]
    assert page.get_attribute("[data-step=model] a:has-text('job page')", "href") == f"#jobs/{model_id}"
    assert page.get_attribute("[data-step=spec] a", "href") == f"/api/trainer/models/{model_id}/artifacts/spec.json"
    expect(page.locator("[data-step=split]")).to_contain_text("train ")
    curation = page.locator("[data-step=curation]")
    expect(curation).to_contain_text("rows")
    assert curation.locator("a:has-text('curation 0123456789abcdef')").get_attribute("href") == \
        "/api/curator/curations/0123456789abcdef"
    assert page.get_attribute("[data-step=harvest] a:has-text('harvest h-console-1')", "href") == \
        "/api/downloader/harvests/h-console-1"
    expect(page.locator("[data-step=import]")).to_contain_text("csv:console-fungi.csv")
    rows = {int(v): int(re.search(r"(\d+) rows", steps.nth(i).text_content() or "")[1])  # type: ignore[index]
            for i, v in ((3, 3), (4, 2), (5, 1))}
    with console_stack.http() as http:
        versions = http.get(f"{console_stack.url}/api/downloader/manifests/console-fungi").json()
        spec_json = http.get(f"{console_stack.url}/api/trainer/models/{model_id}/artifacts/spec.json")
    assert rows == {v["version"]: v["rows"] for v in versions}
    assert spec_json.status_code == 200 and spec_json.json()["data"]["dataset"] == "console-fungi"
    screenshot(page, "model")

    # back from the curated version to every model trained on it
    page.click(f"[data-step=curation] a:has-text('console-fungi v{console_stack.version}')")
    expect(page.locator("#lineage-out h2")).to_have_text(f"console-fungi v{console_stack.version}")
    with console_stack.http() as http:
        trained_on = [m["model_id"] for m in http.get(f"{console_stack.trainer}/models").json()
                      if m["dataset"] == "console-fungi" and m["manifest_version"] == console_stack.version]
    assert set(console_stack.job_ids) <= set(trained_on)
    expect(page.locator("#lineage-models tbody tr")).to_have_count(len(trained_on))
    for job_id in trained_on:
        assert page.get_attribute(f"#lineage-models a:has-text('{job_id}')", "href") == f"#lineage/{job_id}"
    # the import version has no model of its own, and links forward to the harvest made from it
    page.click("[data-step=import] strong a")
    expect(page.locator("#lineage-models")).to_contain_text("nothing yet")
    expect(page.locator("#lineage-out")).to_contain_text("v2 (harvest)")
    page.set_viewport_size(PHONE)
    assert_fits_width(page)
    screenshot(page, "dataset-phone")


def test_predict_shows_the_photo_verdict_topk_and_gradcam(
        console_stack: Any, browser_page: Any, screenshot: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    console_stack.wait_jobs()
    with console_stack.http() as http:
        model_id = http.get(f"{console_stack.trainer}/sweeps/{console_stack.sweep_id}").json()["best_job_id"]
        assert http.post(f"{console_stack.trainer}/models/{model_id}/promote").status_code == 200
        served = wait_served(http, console_stack.inference, model_id)
    names = [c["name"] for c in served["classes"]]
    catalog = SpeciesCatalog(3, 0)
    photos = []
    for index in range(3):
        path = tmp_path / f"species-{index}.jpg"
        catalog.render(index, 4242 + index, 128).convert("RGB").save(path, "JPEG")
        photos.append(path)

    page = browser_page.page
    page.goto(f"{console_stack.url}/#predict")
    page.set_input_files("#predict-form input[type=file]", str(photos[0]))
    expect(page.locator("#drop-zone .chosen")).to_have_text("species-0.jpg")
    page.click("#predict-form button")
    answer = page.locator("#predict-out article.answer")
    expect(answer.locator(".verdict")).to_contain_text(model_id)
    verdict = answer.locator(".verdict b").text_content()
    assert verdict in {"confident", "uncertain", "unknown_species", "not_a_mushroom"}
    expect(answer.locator(".verdict-words")).not_to_be_empty()
    labels = answer.locator("ol.topk li").evaluate_all("nodes => nodes.map(n => n.dataset.label)")
    assert labels and set(labels) <= set(names)
    with console_stack.http() as http:
        direct = http.post(f"{console_stack.inference}/predict", files={"file": photos[0].read_bytes()}).json()
    assert labels == [p["label"] for p in direct["predictions"]]
    shown = answer.locator("ol.topk li").evaluate_all("nodes => nodes.map(n => Number(n.dataset.probability))")
    assert shown == pytest.approx([p["probability"] for p in direct["predictions"]])
    top = direct["predictions"][0]
    expect(answer.locator("ol.topk li").first).to_contain_text(f"genus {top['genus']}")
    if verdict == "uncertain":
        expect(answer.locator(".genus")).to_contain_text("Genus")
    image = answer.locator(".photo img")
    assert (image.get_attribute("src") or "").startswith("blob:")
    answer.locator("button.cam-toggle").click()
    assert (image.get_attribute("src") or "").startswith("data:image/png;base64,")
    expect(answer.locator("button.cam-toggle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#predict-out .safety")).to_contain_text("Never eat")
    screenshot(page, "one")

    # several photos at once go through /predict/batch
    page.set_input_files("#predict-form input[type=file]", [str(path) for path in photos])
    with page.expect_response(lambda response: "/api/inference/predict/batch" in response.url) as batch:
        page.click("#predict-form button")
    assert batch.value.status == 200
    expect(page.locator("#predict-out article.answer")).to_have_count(3)
    for index, path in enumerate(photos):
        expect(page.locator("#predict-out article.answer").nth(index).locator("h3")).to_have_text(path.name)
    # keyboard: the drop zone and the toggles are reachable with Tab
    page.focus("#drop-zone")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "file"
    page.set_viewport_size(PHONE)
    assert_fits_width(page)
    screenshot(page, "batch-phone")


def wait_served(http: httpx.Client, inference: str, model_id: str, timeout: float = 60) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = http.get(f"{inference}/model")
        if answer.status_code == 200 and answer.json()["model_id"] == model_id:
            return dict(answer.json())
        time.sleep(0.3)
    pytest.fail(f"inference never served {model_id}")
