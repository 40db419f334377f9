"""Flags, config validation and TLS material, without starting a server."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from refserver.cli import config_from_args, config_to_argv, parse_args, parse_user
from refserver.config import ServerConfig
from refserver.runner import main
from refserver.tls import ensure_tls_material


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("alice:secret", ("alice", "secret", None)),
        ("bob:pw:admin", ("bob", "pw", "admin")),
        ("carol:a:b:c", ("carol", "a:b:c", None)),
        ("dave:x:y:power_user", ("dave", "x:y", "power_user")),
    ],
)
def test_parse_user(spec: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_user(spec) == expected


@pytest.mark.parametrize("spec", ["alice", ":pw", "alice:"])
def test_parse_user_rejects_incomplete_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="NAME:PASSWORD"):
        parse_user(spec)


def test_defaults() -> None:
    config = config_from_args(parse_args([]))
    assert config.users == {"alice": "secret"}
    assert config.alg == "RS256"
    assert config.token_lifetime == 600
    assert config.refresh_lifetime == 604800
    assert config.repositories == ("backend", "frontend", "docs")


def test_config_survives_a_trip_through_flags() -> None:
    config = ServerConfig(
        users={"alice": "secret", "bob": "pw", "carol": "otp"}, roles={"bob": "admin"},
        token_lifetime=30, alg="HS256", refresh_lifetime=90, issuer="https://x.example",
        mfa_users=frozenset({"carol"}), expired_password_users=frozenset({"bob"}),
        repositories=("one",), login_delay=0.25, hs256_secret="k" * 32, clock_offset=-12.5)
    assert config_from_args(parse_args(config_to_argv(config))) == config


def test_colon_passwords_survive_a_trip_through_flags() -> None:
    config = ServerConfig(users={"eve": "x:admin"})
    again = config_from_args(parse_args(config_to_argv(config)))
    assert again.users == {"eve": "x:admin"}
    assert again.role_of("eve") == "normal_user"


def test_secrets_stay_out_of_repr() -> None:
    text = repr(ServerConfig(users={"alice": "hunter2"}, hs256_secret="topsecret"))
    assert "hunter2" not in text
    assert "topsecret" not in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alg": "none"}, "alg"),
        ({"token_lifetime": 0}, "lifetimes"),
        ({"login_delay": -1}, "login_delay"),
        ({"roles": {"alice": "overlord"}}, "roles"),
        ({"mfa_users": frozenset({"zed"})}, "do not exist"),
    ],
)
def test_config_rejects_nonsense(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(users={"alice": "secret"}, **options)  # type: ignore[arg-type]


def test_main_reports_a_bad_user_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--user", "nopassword"]) == 2
    assert "NAME:PASSWORD" in capsys.readouterr().err


def test_main_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert "cannot serve" in capsys.readouterr().err


def test_tls_material_is_made_once(tmp_path: Path) -> None:
    first = ensure_tls_material(tmp_path / "tls")
    for path in (first.ca_file, first.cert_file, first.key_file):
        assert path.read_bytes().startswith(b"-----BEGIN")
    assert stat.S_IMODE(first.key_file.stat().st_mode) == 0o600
    ca_before = first.ca_file.read_bytes()
    second = ensure_tls_material(tmp_path / "tls")
    assert second == first
    assert second.ca_file.read_bytes() == ca_before
