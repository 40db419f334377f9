"""What the wheel and sdist say about themselves (issue 22, item 2): read from
``pyproject.toml`` and the tree, no build (README's "Install" shows the build check)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
PACKAGES = ("cidx_auth", "adapters", "refserver")


def test_the_licence_is_declared_as_an_spdx_expression_with_its_file() -> None:
    assert PROJECT["license"] == "MIT"  # a table ({text = ...}) is deprecated by setuptools
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} the cidx-auth authors$", text, re.MULTILINE)
    assert "Permission is hereby granted, free of charge" in text


def test_setuptools_is_new_enough_for_that_licence_form() -> None:
    (requirement,) = PYPROJECT["build-system"]["requires"]
    floor = re.fullmatch(r"setuptools>=(\d+)", requirement)
    assert floor is not None and int(floor.group(1)) >= 77


def test_every_package_is_marked_typed_and_ships_its_marker() -> None:
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file(), package
        assert package_data[package] == ["py.typed"], package
    assert "Typing :: Typed" in PROJECT["classifiers"]


def test_the_classifiers_claim_the_pythons_and_systems_supported() -> None:
    classifiers = PROJECT["classifiers"]
    versions = {c.rsplit(" ", 1)[1] for c in classifiers
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert versions == {"3.11", "3.12", "3.13"}
    assert PROJECT["requires-python"] == ">=3.11"
    systems = {c for c in classifiers if c.startswith("Operating System ::")}
    assert "Operating System :: POSIX :: Linux" in systems
    assert not any("Windows" in c or "OS Independent" in c for c in systems)


def test_the_readme_is_the_long_description_and_no_url_is_made_up() -> None:
    assert PROJECT["readme"] == "README.md"
    for url in PROJECT.get("urls", {}).values():  # none yet: there is no public repository
        assert "example" not in url and "TODO" not in url
