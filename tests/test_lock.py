"""Reproducible installs (issue 9): constraints.txt pins every Python package, `make test`,
`make demo` and CI install from it, environment.yml follows it, the Debian packages are
listed in one place."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
MAKEFILE = (ROOT / "Makefile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> list[tuple[str, str, Marker | None]]:
    """(canonical name, version, marker) for every line of the lock."""
    out = []
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(";")
        name, sep, version = spec.strip().partition("==")
        assert sep, f"constraints.txt: {line!r} is not pinned with =="
        out.append((canonicalize_name(name), version.strip(), Marker(marker) if marker else None))
    return out


def _pins() -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for name, version, _ in _lock():
        pins.setdefault(name, set()).add(version)
    return pins


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return reqs


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_every_dependency_is_locked_within_its_range(req: Requirement) -> None:
    versions = _pins().get(canonicalize_name(req.name))
    assert versions, f"{req.name} is not in constraints.txt: run `make lock`"
    for v in versions:
        assert req.specifier.contains(v, prereleases=True), (
            f"constraints.txt pins {req.name}=={v}, outside {req.specifier}: run `make lock`"
        )


def test_duckdb_is_on_the_1_5_line_with_its_extension_wheels() -> None:
    pins = _pins()
    assert pins["duckdb"] == {"1.5.5"}
    assert (
        pins["duckdb-extension-ducklake"] == pins["duckdb-extension-postgres-scanner"] == {"1.5.5"}
    )


def test_the_installer_is_pinned_too() -> None:
    pins = _pins()
    for name in ("pip", "setuptools", "wheel", "uv"):
        assert len(pins.get(name, ())) == 1, f"{name} is not pinned in constraints.txt"


def test_make_test_make_demo_and_ci_install_from_the_lock() -> None:
    assert "LOCK := constraints.txt" in MAKEFILE
    recipe = MAKEFILE.split("$(STAMP): pyproject.toml $(LOCK)", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert installs and all("-c $(LOCK)" in line for line in installs), installs
    assert re.search(r"^install: \$\(STAMP\)", MAKEFILE, re.M)
    assert re.search(r"^test: install", MAKEFILE, re.M)
    assert re.search(r"^demo: install", MAKEFILE, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^upgrade:", MAKEFILE, re.M) and "--upgrade" in MAKEFILE


def test_environment_yml_is_in_step_with_the_lock() -> None:
    env = (ROOT / "environment.yml").read_text()
    python = re.search(r"^LOCK_PYTHON := (\S+)", MAKEFILE, re.M)
    assert python is not None
    assert f"- python={python.group(1)}\n" in env
    assert "- -c constraints.txt" in env and "- -e .[dev,ducklake]" in env
    requires = PYPROJECT["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(python.group(1))


def _debian_packages() -> list[str]:
    lines = (ROOT / "scripts" / "debian-packages.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def test_debian_packages_are_listed_in_one_place() -> None:
    from mailops.dev.devserver import DOVECOT_PACKAGES

    listed = _debian_packages()
    assert set(DOVECOT_PACKAGES) <= set(listed)
    assert "python3-venv" in listed
    script = (ROOT / "scripts" / "install-system-deps.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    for pkg in listed:
        assert not re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", code), (
            f"install-system-deps.sh names {pkg} itself; the list is debian-packages.txt"
        )
    assert "apt-get install" not in MAKEFILE


@pytest.mark.skipif(
    os.environ.get("MAILOPS_LOCKED_ENV") != "1",
    reason="only in the lock's own venv (make test / CI set MAILOPS_LOCKED_ENV=1)",
)
def test_the_running_environment_is_the_lock() -> None:
    """`make test` runs in what the lock says, version for version."""
    wrong = []
    for name, version, marker in _lock():
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # pinned but not needed here (another extra: ducklake)
        if installed != version:
            wrong.append(f"{name} {installed} (lock: {version})")
    assert not wrong, wrong
