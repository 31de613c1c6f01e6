"""The SeaweedFS S3 identities file (``-s3.config``): an admin that may create buckets, and the services' user,
which may only read, write, list and tag the one bucket.

``python -m sporeprint.s3_identities PATH`` writes it from the settings in the environment
(``SPOREPRINT_S3_BUCKET``, ``SPOREPRINT_S3_ACCESS_KEY`` / ``_SECRET_KEY`` for the services,
``SPOREPRINT_S3_ADMIN_ACCESS_KEY`` / ``_SECRET_KEY`` for the admin); docker-compose runs it before SeaweedFS
starts. The admin keys are given only to the one-shot that creates the bucket.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from shared.settings import PLACEHOLDER_SECRETS

ADMIN_VARIABLES = ("SPOREPRINT_S3_ADMIN_ACCESS_KEY", "SPOREPRINT_S3_ADMIN_SECRET_KEY")
"""Read here only (no service's settings have them: the services never hold the admin keys)."""
SERVICE_ACTIONS = ("Read", "Write", "List", "Tagging")
ADMIN_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
_KEY = re.compile(r"[A-Za-z0-9._~+/=-]{3,128}")


class IdentitiesError(ValueError):
    """A key or bucket the identities file cannot hold."""


def _checked(name: str, value: str | None, minimum: int = 3) -> str:
    if not value or not _KEY.fullmatch(value) or len(value) < minimum:
        raise IdentitiesError(f"{name} must be {minimum}-128 characters of A-Z a-z 0-9 . _ ~ + / = -")
    if minimum >= 8 and value.lower() in PLACEHOLDER_SECRETS:
        raise IdentitiesError(f"{name} is a placeholder ({value!r}): set a real secret (openssl rand -hex 32)")
    return value


def identities(bucket: str, service_key: str, service_secret: str, admin_key: str,
               admin_secret: str) -> dict[str, Any]:
    """The identities document: the services' actions are scoped to ``bucket`` (``Read:bucket``, ...)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise IdentitiesError(f"not an S3 bucket name: {bucket!r}")
    if service_key == admin_key:
        raise IdentitiesError("the services' access key and the admin's must differ")
    return {"identities": [
        {"name": "admin", "credentials": [{"accessKey": _checked("admin access key", admin_key),
                                           "secretKey": _checked("admin secret key", admin_secret, 8)}],
         "actions": list(ADMIN_ACTIONS)},
        {"name": "sporeprint", "credentials": [{"accessKey": _checked("access key", service_key),
                                                "secretKey": _checked("secret key", service_secret, 8)}],
         "actions": [f"{action}:{bucket}" for action in SERVICE_ACTIONS]},
    ]}


def write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(document, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m sporeprint.s3_identities PATH\n")
        return 2
    env = os.environ
    try:
        document = identities(
            env.get("SPOREPRINT_S3_BUCKET", "sporeprint"), env.get("SPOREPRINT_S3_ACCESS_KEY", ""),
            env.get("SPOREPRINT_S3_SECRET_KEY", ""), env.get(ADMIN_VARIABLES[0], ""),
            env.get(ADMIN_VARIABLES[1], ""),
        )
    except IdentitiesError as exc:
        sys.stderr.write(f"s3 identities: {exc}\n")
        return 1
    write(Path(args[0]), document)
    sys.stdout.write(f"s3 identities written to {args[0]} (admin, and sporeprint scoped to its bucket)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
