"""``sporeprint curate`` and ``sporeprint blacklist`` against the real curator, its RQ worker and the S3 server:
a curation followed to its new manifest version, domain scores, blacklist edits; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from shared.manifests import ManifestStore
from sporeprint.cli import main

pytestmark = pytest.mark.e2e


def cli(curator: httpx.Client, tmp_path: Path, *args: str) -> tuple[int, str]:
    token = curator.headers["Authorization"].removeprefix("Bearer ")
    result = CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), *args,
                                       "--url", str(curator.base_url).rstrip("/"), "--token", token])
    return result.exit_code, result.output


def test_curate_follow_domains_and_blacklist(curator: httpx.Client, harvest_builder, small_web,  # type: ignore[no-untyped-def]
                                             manifests: ManifestStore, tmp_path: Path) -> None:
    harvest = harvest_builder(web=small_web, images_per_domain=lambda i: 6)
    code, output = cli(curator, tmp_path, "curate", "start", "fungi", "--version", str(harvest.version),
                       "--interval", "0.3")
    assert code == 0, output
    written = int(output.strip().splitlines()[-1].rsplit(" v", 1)[1])
    info = manifests.info("fungi", written)
    assert (info.operation.value, info.parent) == ("curation", harvest.version)

    code, output = cli(curator, tmp_path, "curate", "domains", "fungi", "--version", str(harvest.version))
    report = json.loads(output)
    assert code == 0 and report["version"] == harvest.version and len(report["domains"]) == 5

    code, output = cli(curator, tmp_path, "blacklist", "add", "Herbarium.Example.ORG/sheets",
                       "--reason", "scanned sheets")
    assert code == 0 and output.strip() == "blacklisted herbarium.example.org/sheets", output
    code, output = cli(curator, tmp_path, "blacklist", "list")
    assert code == 0 and any(line.split()[0] == "herbarium.example.org/sheets" for line in output.splitlines()[1:])
    code, output = cli(curator, tmp_path, "blacklist", "remove", "herbarium.example.org/sheets")
    assert code == 0 and output.startswith("removed herbarium.example.org/sheets")
    code, output = cli(curator, tmp_path, "blacklist", "history")
    changes = [line.split() for line in output.splitlines() if "herbarium.example.org/sheets" in line]
    assert code == 0 and [change[3] for change in changes][-2:] == ["add", "remove"], output

    domain = report["domains"][0]["domain"]
    code, output = cli(curator, tmp_path, "curate", "sample", "fungi", domain, "--version", str(harvest.version),
                       "-n", "3", "--seed", "7", "--json")
    sample = json.loads(output)
    assert code == 0 and sample["domain"] == domain and len(sample["images"]) == 3, output
    code, again = cli(curator, tmp_path, "curate", "sample", "fungi", domain, "--version", str(harvest.version),
                      "-n", "3", "--seed", "7", "--json")
    # the same seed shows the same images (presigned links carry their signing second, so compare the images)
    shown = [image["image_id"] for image in sample["images"]]
    assert [image["image_id"] for image in json.loads(again)["images"]] == shown

    picked = [image["image_id"] for image in sample["images"][:2]]
    code, output = cli(curator, tmp_path, "curate", "label", "fungi", *picked, "--irrelevant",
                       "--version", str(harvest.version))
    assert code == 0 and output.startswith("labelled 2 images irrelevant"), output
    code, output = cli(curator, tmp_path, "curate", "labels", "--dataset", "fungi", "--domain", domain)
    labelled = {line.split()[0]: line.split()[1] for line in output.splitlines()[1:]}
    assert code == 0 and all(labelled.get(image_id) == "irrelevant" for image_id in picked), output
    code, output = cli(curator, tmp_path, "curate", "label", "fungi", "no-such-image", "--relevant")
    assert code == 1 and "unknown image_id" in output and len(output.strip().splitlines()) == 1, output
    code, output = cli(curator, tmp_path, "curate", "label", "fungi", picked[0])
    assert code == 2 and "--relevant or --irrelevant" in output

    code, output = cli(curator, tmp_path, "curate", "filter", "status")
    assert code == 0 and output.startswith("gate ") and ("zero-shot" in output or "probe" in output), output


def test_bad_input_is_one_line(curator: httpx.Client, tmp_path: Path) -> None:
    code, output = cli(curator, tmp_path, "curate", "start", "Not A Dataset!")
    assert code == 1 and len(output.strip().splitlines()) == 1 and "curator refused" in output, output
    code, output = cli(curator, tmp_path, "blacklist", "add", "x" * 300 + ".org", "--reason", "too long")
    assert code == 1 and len(output.strip().splitlines()) == 1 and "253" in output, output
    code, output = cli(curator, tmp_path, "curate", "status", "no-such-curation")
    assert code == 1 and "404" in output, output
