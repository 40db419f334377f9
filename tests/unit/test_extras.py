"""The one table of extras (``adapters.extras``) against ``pyproject.toml``, and the one
question "is this extra installed?" with an import blocked."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from adapters.extras import EXTRAS, MissingExtra, install_command, installed, missing, require

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())


class Refuse:
    """A meta-path finder that makes the named top-level packages unimportable."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_the_table_lists_what_pyproject_installs_for_each_extra(name: str) -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert list(EXTRAS[name].requirements) == extras[name]
    assert name in extras["dev"][0].removeprefix("cidx-auth[").rstrip("]").split(",")


def test_every_extra_a_command_needs_is_in_the_table() -> None:
    contributors = {"bench", "mutate", "dev"}
    assert set(PYPROJECT["project"]["optional-dependencies"]) - contributors == set(EXTRAS)


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_an_installed_extra_is_required_in_silence(name: str) -> None:
    assert missing(name) == []  # the dev venv holds every extra
    require(name, "this")


def test_a_refused_import_reads_as_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("hypercorn", "redis"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [Refuse("hypercorn", "redis"), *sys.meta_path])
    assert not installed("hypercorn") and installed("starlette")
    assert missing("server") == ["hypercorn"]
    with pytest.raises(MissingExtra) as raised:
        require("redis", "CIDX_STORE_URL", "unset CIDX_STORE_URL")
    message = str(raised.value)
    assert raised.value.exit_code == 2 and "\n" not in message
    assert message == ("CIDX_STORE_URL needs the redis extra (redis not installed): pip install "
                       "'cidx-auth[redis]' (with pipx: pipx inject cidx-auth 'redis>=6.0'), "
                       "or unset CIDX_STORE_URL")


def test_the_install_command_serves_pip_and_pipx_users() -> None:
    assert install_command("server") == (
        "pip install 'cidx-auth[server]' (with pipx: pipx inject cidx-auth 'starlette>=0.37' "
        "'hypercorn>=0.17' 'pyjwt[crypto]>=2.9' 'trustme>=1.1')")
