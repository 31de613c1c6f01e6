"""The downloader's view of the curator: ``GET /blacklist`` is ``shared.curation.Blacklist`` JSON and
``Blacklist.match(url)`` decides what is skipped. Checked against the real app (uvicorn, real S3)."""

from __future__ import annotations

import httpx
import pytest

from shared.curation import Blacklist
from shared.settings import Settings

pytestmark = pytest.mark.contract


@pytest.fixture
def curator_url(run_service, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    return run_service("curator-contract", "services.curator.main:app", settings).url


def test_get_blacklist_is_the_shared_contract(curator_url: str, settings: Settings) -> None:
    auth = {"Authorization": f"Bearer {settings.api_token}"}
    added = httpx.put(f"{curator_url}/blacklist/specimen-scans.test/sheets/", json={"reason": "sheets"}, headers=auth)
    assert added.status_code == 201
    response = httpx.get(f"{curator_url}/blacklist")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    blacklist = Blacklist.model_validate_json(response.content)  # extra="forbid": no field may drift
    assert blacklist.revision == 2
    expected = {
        "https://data.huh.harvard.edu/abc.jpg": "data.huh.harvard.edu",
        "https://S3.MSI.UMN.EDU/x/y.jpg": "s3.msi.umn.edu",
        "https://mediaphoto.mnhn.fr/media/123": "mediaphoto.mnhn.fr/media/",
        "https://unimus.no/felles/bilder/1.jpg": "unimus.no/felles/",
        "https://oxalis.br.fgov.be/images/1.jpg": "oxalis.br.fgov.be/images",
        "http://specimen-scans.test:8080/sheets/1.jpg": "specimen-scans.test/sheets/",
        "https://www.mycoportal.org/portal/1.jpg": "mycoportal.org",
    }
    for url, entry in expected.items():
        match = blacklist.match(url)
        assert match is not None and match.entry == entry, url
    for url in ("https://unimus.no/other/1.jpg", "http://specimen-scans.test/photos/1.jpg",
                "https://inaturalist-open-data.s3.amazonaws.com/photos/1/large.jpg"):
        assert blacklist.match(url) is None, url


def test_openapi_declares_the_contract_model(curator_url: str) -> None:
    spec = httpx.get(f"{curator_url}/openapi.json").json()
    schema = spec["paths"]["/blacklist"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Blacklist"}
    served = spec["components"]["schemas"]["Blacklist"]
    assert set(served["properties"]) == set(Blacklist.model_json_schema()["properties"])
    assert spec["paths"]["/blacklist/{entry}"]["put"]["operationId"] == "blacklist-put_entry"
