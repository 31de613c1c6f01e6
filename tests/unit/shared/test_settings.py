import pytest
from pydantic import ValidationError

from shared.settings import Environment, Settings

pytestmark = pytest.mark.unit


def test_development_accepts_placeholder_secrets() -> None:
    settings = Settings(environment=Environment.development, api_token="changeme")
    assert settings.api_token == "changeme"


@pytest.mark.parametrize("environment", [Environment.production, Environment.test])
@pytest.mark.parametrize("field", ["api_token", "s3_secret_key"])
def test_placeholder_secrets_refused_outside_development(environment: Environment, field: str) -> None:
    values = {"api_token": "a-real-token-1234", "s3_secret_key": "a-real-secret-1234", field: "changeme"}
    with pytest.raises(ValidationError, match=f"SPOREPRINT_{field.upper()} is a placeholder"):
        Settings(environment=environment, **values)


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOREPRINT_S3_BUCKET", "fungi")
    monkeypatch.setenv("SPOREPRINT_REDIS_URL", "redis://127.0.0.1:7000/1")
    settings = Settings()
    assert settings.s3_bucket == "fungi"
    assert settings.redis_url == "redis://127.0.0.1:7000/1"
