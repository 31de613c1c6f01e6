"""Each image installs what its code imports: the import graph from each image's entry points,
against the distributions the image's pip install pulls in (its lock, requirements/<image>.lock).

Docker cannot run here, so this is how a missing dependency (or TensorFlow creeping into a slim image)
is caught before anyone builds the image.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from .conftest import ROOT

pytestmark = pytest.mark.unit

LOCAL_PACKAGES = ("shared", "services", "sporeprint", "fixtureweb")

# image (and its lock, requirements/<image>.lock) -> modules its processes import first
IMAGES = {
    "downloader": ["services.downloader.main", "shared.worker"],
    # the curator image is also the CPU worker: harvest jobs (downloader code) and curation jobs
    "curator": ["services.curator.main", "services.downloader.main", "shared.worker"],
    "trainer": ["services.trainer.main"],
    "inference": ["services.inference.main"],
    "trainer-gpu": ["services.trainer.worker", "shared.worker"],
}


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_optional_import(node: ast.Try) -> bool:
    return any(isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "ModuleNotFoundError")
               for handler in node.handlers)


def import_statements(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, at module level or inside a function (a job imports lazily, and still
    needs the package in its image); not `if TYPE_CHECKING:` blocks, not imports guarded by ImportError."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [node]
    if isinstance(node, ast.If) and _is_type_checking(node):
        children: list[ast.AST] = list(node.orelse)
    elif isinstance(node, ast.Try) and _is_optional_import(node):
        children = [*node.handlers, *node.orelse, *node.finalbody]
    else:
        children = list(ast.iter_child_nodes(node))
    return [statement for child in children for statement in import_statements(child)]


@cache
def imports_of(name: str) -> tuple[str, ...]:
    """Absolute module names the local module ``name`` imports (anywhere in it)."""
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in import_statements(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names
                      if target.startswith(LOCAL_PACKAGES) and module_file(f"{target}.{alias.name}")]
    return tuple(found)


def reachable(roots: list[str]) -> set[str]:
    """The local modules ``roots`` import, directly or not."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:depth]) for depth in range(1, len(parts)) if module_file(".".join(parts[:depth]))]
        for imported in imports_of(name):
            if imported.split(".")[0] in LOCAL_PACKAGES:
                if module_file(imported):
                    todo.append(imported)
                elif module_file(imported.rpartition(".")[0]):  # from package.module import function
                    todo.append(imported.rpartition(".")[0])
    return seen


def third_party_imports(roots: list[str]) -> dict[str, str]:
    """top-level third-party module -> the local module that imports it, over everything ``roots`` reach."""
    external: dict[str, str] = {}
    for name in sorted(reachable(roots)):
        for imported in imports_of(name):
            top = imported.split(".")[0]
            if top not in LOCAL_PACKAGES and top not in sys.stdlib_module_names and top != "__future__":
                external.setdefault(top, name)
    return external


@cache
def packages_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


# The GPU image's CUDA TensorFlow provides the same modules as the tensorflow-cpu this environment has.
SAME_MODULES = {"tensorflow": "tensorflow-cpu"}


@cache
def locked_distributions(image: str) -> frozenset[str]:
    """Distributions the image installs: the pins of requirements/<image>.lock (its Dockerfile's only source)."""
    text = (ROOT / "requirements" / f"{image}.lock").read_text()
    names = {canonicalize_name(match) for match in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)}
    return frozenset(names | {SAME_MODULES[name] for name in names if name in SAME_MODULES})


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_every_package_its_code_imports(image: str) -> None:
    roots = IMAGES[image]
    for root in roots:
        assert module_file(root), f"{root} does not exist"
    distributions = packages_distributions()
    allowed = locked_distributions(image)
    missing = {}
    for module, importer in third_party_imports(roots).items():
        providers = {canonicalize_name(dist) for dist in distributions.get(module, [module])}
        if not providers & allowed:
            missing[module] = importer
    assert not missing, f"the {image} image lacks (module: imported by): {missing}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_code_needs_no_development_package(image: str) -> None:
    """fixtureweb (the offline test internet) is not copied into the images: no service code path may import it."""
    outside = sorted(name for name in reachable(IMAGES[image]) if name.startswith("fixtureweb"))
    assert not outside, f"the {image} image's code imports {outside}, which the image does not contain"


def test_the_downloader_image_imports_no_tensorflow() -> None:
    imported = third_party_imports(IMAGES["downloader"])
    heavy = {module: importer for module, importer in imported.items() if module in ("tensorflow", "keras")}
    assert not heavy, f"TensorFlow imported by the downloader image's code: {heavy}"


def test_the_curator_api_starts_without_loading_tensorflow() -> None:
    """The curator image carries TensorFlow for its worker (the relevance gate reads images there); its API
    scores cached readings and must not pay TensorFlow's start-up and memory."""
    import subprocess

    code = "import sys, services.curator.main; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=True)
    assert result.stdout.split() == ["False", "False"], result.stdout + result.stderr


def test_the_import_scan_sees_through_packages() -> None:
    """The scan is not vacuous: the inference API reaches TensorFlow, the downloader reaches aiohttp."""
    assert "tensorflow" in third_party_imports(["services.inference.main"]) or "keras" in third_party_imports(
        ["services.inference.main"]) or pytest.skip("inference imports TensorFlow lazily")
    assert "aiohttp" in third_party_imports(["services.downloader.main"])
    assert "fastapi" in third_party_imports(["services.curator.main"])
