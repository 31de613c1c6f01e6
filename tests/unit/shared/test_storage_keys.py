import pytest

from shared.storage import InvalidKey, validate_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "key",
    ["images/ab/cd.jpg", "manifests/fungi/000001.parquet", "models/m-1/labels.json", "a"],
)
def test_plain_keys_pass(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "/images/x.jpg", "images/../secrets", "../x", "images/./x", "images//x", "a\x00b", "a\nb",
     "a\x7fb", "a\\b", "x" * 1025],
)
def test_dangerous_keys_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)
