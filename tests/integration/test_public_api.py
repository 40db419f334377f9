"""The library as users meet it: one import, a project found as the CLI finds it, and
closed with ``with``; bad arguments are errors of the library's own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cidx_auth
from cidx_auth import ConfigurationError, NotLoggedIn, Project, StorageError, open_project
from cidx_auth.domain.errors import ServerUnavailable
from tests.unit.test_one_expiry_decision import plant_project, session_with

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A logged-in project (a fresh token stored), with a subdirectory ``src/app``."""
    plant_project(tmp_path, session_with(time.time(), 3000), monkeypatch)
    root = tmp_path.resolve() / "project"  # the real path, which open_project gives
    (root / "src" / "app").mkdir(parents=True)
    return root


def test_every_public_name_is_one_import_away() -> None:
    for name in cidx_auth.__all__:
        assert getattr(cidx_auth, name) is not None
    assert set(cidx_auth.__all__) <= set(dir(cidx_auth))
    assert cidx_auth.CidxClient.__module__ == "adapters.cidx_client"
    assert issubclass(cidx_auth.BadQuery, cidx_auth.ConfigurationError)
    assert issubclass(cidx_auth.ApiError, cidx_auth.CidxAuthError)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = cidx_auth.nothing_here  # type: ignore[attr-defined]


def test_the_error_tree_is_as_docs_api_draws_it() -> None:
    """docs/api.md's "Errors": the API's refusals of auth and availability are ApiErrors
    with their other parent's exit code, which is why they are caught first."""
    from adapters.cidx_calls import ApiRateLimited, ApiUnauthorized, ApiUnavailable

    api = cidx_auth
    for leaf in (api.InvalidCredentials, api.AccountLocked, api.NotLoggedIn):
        assert issubclass(leaf, api.AuthenticationError) and leaf.exit_code == 3
    for leaf, parent, code in ((ApiUnauthorized, api.AuthenticationError, 3),
                               (ApiUnavailable, api.TransportError, 4),
                               (ApiRateLimited, api.TransportError, 4)):
        assert issubclass(leaf, api.ApiError) and issubclass(leaf, parent)
        assert leaf.exit_code == code
    assert api.ApiError.exit_code == 6 and api.ProtocolError.exit_code == 4
    docs = (ROOT / "docs" / "api.md").read_text()
    assert all(name in docs for name in cidx_auth.__all__ if name != "__version__")


def test_type_checkers_see_the_public_names_and_no_catch_all() -> None:
    """``__getattr__`` typed ``-> Any`` would make any misspelled import type-check: it is
    defined only at run time, and every public name is imported for the type checker."""
    tree = ast.parse((ROOT / "cidx_auth" / "__init__.py").read_text())
    top = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert not top & {"__getattr__", "__dir__"}
    checked = [node for node in tree.body if isinstance(node, ast.If)
               and ast.unparse(node.test) == "TYPE_CHECKING"]
    seen = {alias.asname or alias.name for block in checked for node in block.body
            if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert set(cidx_auth.__all__) - {"__version__"} <= seen


@pytest.mark.slow
def test_mypy_refuses_a_misspelled_import(tmp_path: Path) -> None:
    """What the test above protects, checked by mypy itself (its cache in the project
    makes it quick after ``make typecheck``). Only the probe's own errors are reported:
    the lowest mypy and stubs the project allows judge the package's own code otherwise."""
    probe = tmp_path / "probe.py"
    probe.write_text("from cidx_auth import QueryResult, open_projct\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                           "--follow-imports=silent", str(probe)],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("error:") == 1, done.stdout
    assert 'has no attribute "open_projct"' in done.stdout


def test_a_subdirectory_opens_its_project_as_the_cli_does(
    project: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with open_project(project / "src" / "app") as opened:
        assert isinstance(opened, Project) and opened.root == project
        assert opened.provider.get_token()  # the stored token: nothing sent
    monkeypatch.chdir(project / "src")
    with open_project() as opened, open_project("app") as again:
        assert opened.root == again.root == project


@pytest.mark.posix
def test_a_linked_start_is_searched_from_the_directory_it_names(
    project: Path, tmp_path: Path,
) -> None:
    """As the CLI run there would (its working directory is the real one): the project
    above the link's target, not whatever lies above the link."""
    link = tmp_path / "elsewhere" / "app"
    link.parent.mkdir()
    link.symlink_to(project / "src" / "app", target_is_directory=True)
    with open_project(link) as opened:
        assert opened.root == project


def test_a_dotdot_start_is_searched_from_the_directory_it_names(project: Path) -> None:
    """``app/nested/..`` is ``app``: ``nested``'s own project (not logged in) is no
    ancestor of it, so the search passes it by and finds the project above."""
    nested = project / "src" / "app" / "nested"
    (nested / ".code-indexer").mkdir(parents=True, mode=0o700)
    with open_project(nested / "..") as opened:
        assert opened.root == project
    with pytest.raises(NotLoggedIn, match=f"no cidx-auth settings in {nested}"):
        open_project(nested)  # the nested project itself is what its own path finds


def test_leaving_the_with_block_closes_the_project(project: Path) -> None:
    with pytest.raises(KeyError), open_project(project) as opened:
        raise KeyError("the caller's own error goes on up")
    with pytest.raises(ServerUnavailable, match="the project was closed"):
        opened.gateway.refresh("r")  # nothing built, nothing sent, after the close
    for make in (opened.client, opened.async_client):
        with pytest.raises(ConfigurationError, match="after the project was closed"):
            make()  # at once, not at the client's first renewal
    opened.close()  # closing again raises nothing


def test_no_project_above_says_so_and_names_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    where = tmp_path.resolve() / "elsewhere"
    with pytest.raises(NotLoggedIn, match=f"no cidx-auth settings in {where}"):
        open_project(tmp_path / "elsewhere")


@pytest.mark.parametrize(("path", "words"), [
    (42, "takes a directory path \\(str or Path\\), not int"),
    (b"/tmp", "not bytes"),
    ("/no/such/dir", "/no/such/dir is not a directory"),
])
def test_a_bad_path_is_a_configuration_error(path: object, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        open_project(path)  # type: ignore[arg-type]


@pytest.mark.posix
def test_the_search_stops_at_a_code_indexer_others_can_write(project: Path) -> None:
    """A ``.code-indexer`` every user can write, above the start: refused, never used,
    never passed over for the real project further up (the CLI's rule)."""
    planted = project / "src" / ".code-indexer"
    planted.mkdir()
    os.chmod(planted, 0o777)  # noqa: S103 - the planted directory under test
    with pytest.raises(StorageError, match=r"src/\.code-indexer can be written by every user"):
        open_project(project / "src" / "app")
