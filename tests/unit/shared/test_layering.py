"""No service imports another service's code: what two services need lives in shared/ (shared/DESIGN.md).

Static: every import statement in services/<name>/, and every string handed to importlib.import_module or
__import__, anywhere in the file (a lazy import is still an import).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "services"
# Dev and test code (the fixture web, the CLI and its local stack, tests, benchmarks) is never imported by
# production code; the contract (shared/) imports no service either.
DEV_PACKAGES = ("fixtureweb", "sporeprint", "tests", "bench")


def imported_names(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                names.append(node.args[0].value)
    return names


def test_no_service_imports_another_service() -> None:
    services = sorted(p.name for p in SERVICES.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert {"downloader", "curator", "trainer", "inference"} <= set(services)
    crossings = []
    for service in services:
        for path in sorted((SERVICES / service).rglob("*.py")):
            for name in imported_names(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                    crossings.append(f"{path.relative_to(SERVICES.parent)} imports {name}")
    assert not crossings, "\n".join(crossings)


def crossings_into(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for name in imported_names(path):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_production_code_imports_no_dev_or_test_code() -> None:
    crossings = crossings_into(SERVICES, DEV_PACKAGES) + crossings_into(ROOT / "shared", ("services", *DEV_PACKAGES))
    assert not crossings, "\n".join(crossings)


def test_the_scan_sees_lazy_and_importlib_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import importlib\n\ndef f():\n    from services.curator import x\n"
                      "    importlib.import_module('services.trainer.task')\n")
    assert imported_names(module) == ["importlib", "services.curator", "services.trainer.task"]
