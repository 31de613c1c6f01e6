import pyarrow as pa
import pytest

from services.downloader.importers.identity import domains, image_id, image_ids

pytestmark = pytest.mark.unit


def test_vectorised_ids_equal_scalar_ids() -> None:
    gbif = pa.array(["1", "2", None])
    urls = pa.array(["http://a.org/x.jpg", "http://b.org/y.jpg", "http://c.org/z.jpg"])
    ids = image_ids("gbif", gbif, urls).to_pylist()
    assert ids == [image_id("gbif", "1", "http://a.org/x.jpg"), image_id("gbif", "2", "http://b.org/y.jpg"),
                   image_id("gbif", "", "http://c.org/z.jpg")]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)


def test_id_depends_on_every_key_and_the_source() -> None:
    assert image_id("gbif", "1", "http://a/x") != image_id("gbif", "1", "http://a/y")
    assert image_id("gbif", "1", "http://a/x") != image_id("gbif", "2", "http://a/x")
    assert image_id("gbif", "1", "http://a/x") != image_id("csv", "1", "http://a/x")
    # the separator keeps ("1", "2x") and ("12", "x") apart
    assert image_id("gbif", "1", "2x") != image_id("gbif", "12", "x")


def test_domains_are_lower_case_hosts() -> None:
    urls = pa.array(["https://User@Media.Canadensys.NET:8443/cmmf/1.jpg", "http://x.org?a=1", "not a url", None])
    assert domains(urls).to_pylist() == ["media.canadensys.net", "x.org", "", ""]
