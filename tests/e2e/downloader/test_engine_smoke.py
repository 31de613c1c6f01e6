import pytest

from services.downloader.harvest.blacklist import seed_blacklist
from services.downloader.harvest.engine import Harvester

from .conftest import new_request
from .webfixture import species_rows

pytestmark = pytest.mark.e2e


async def test_clean_harvest(web, manifests, import_rows, downloader_settings):
    info = import_rows(species_rows(web, 40))
    request = new_request(manifests, info, resize={"max_side": 128, "quality": 85})
    outcome = await Harvester(manifests.store, request, downloader_settings, seed_blacklist()).run()
    print(outcome)
    table = manifests.read(info.dataset, outcome.manifest_version)
    print(table.select(["status", "error", "width", "height", "storage_key"]).to_pylist()[:5])
    assert set(table.column("status").to_pylist()) == {"ok"}
