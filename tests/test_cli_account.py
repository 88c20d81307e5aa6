"""`tandem signup`, `login`, `logout`, `devices` as a user types them (CLI.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import RunningServer, free_port, tandem


def _one_clean_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_signup_login_devices_revoke_logout(server: RunningServer, tmp_path: Path) -> None:
    laptop, desk = tmp_path / "laptop", tmp_path / "desk"
    signed = tandem(laptop, "signup", server.url, "me@example.org", "--password-stdin",
                    "--device-name", "laptop", stdin="correct horse\n")
    assert signed.returncode == 0, signed.stderr
    assert re.search(r"([A-Z2-7]{4}-){12}[A-Z2-7]{4}", signed.stdout), "recovery key shown once"
    assert oct((laptop / "master.key").stat().st_mode & 0o777) == "0o600"

    logged = tandem(desk, "login", server.url, "me@example.org", "--password-stdin",
                    "--device-name", "desk", stdin="correct horse\n")
    assert logged.returncode == 0, logged.stderr

    listed = tandem(laptop, "devices", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {d["name"]: d for d in json.loads(listed.stdout)["devices"]}
    assert set(names) == {"laptop", "desk"} and names["laptop"]["current"]

    revoked = tandem(laptop, "devices", "revoke", "desk")
    assert revoked.returncode == 0, revoked.stderr
    refused = tandem(desk, "devices")
    assert refused.returncode == 1
    assert "revoked" in _one_clean_error_line(refused.stderr)

    assert tandem(laptop, "logout").returncode == 0
    assert not (laptop / "master.key").exists()
    after = tandem(laptop, "devices")
    assert after.returncode == 1
    assert "not linked" in _one_clean_error_line(after.stderr)


def test_expected_failures_are_one_line_and_exit_1(server: RunningServer, tmp_path: Path) -> None:
    home = tmp_path / "a"
    assert tandem(home, "signup", server.url, "a@example.org", "--password-stdin",
                  stdin="pw\n").returncode == 0
    cases = {
        "already linked": tandem(home, "signup", server.url, "b@example.org", "--password-stdin",
                                 stdin="pw\n"),
        "email taken": tandem(tmp_path / "b", "signup", server.url, "a@example.org",
                              "--password-stdin", stdin="pw\n"),
        "wrong password": tandem(tmp_path / "c", "login", server.url, "a@example.org",
                                 "--password-stdin", stdin="nope\n"),
        "unknown email": tandem(tmp_path / "d", "login", server.url, "x@example.org",
                                "--password-stdin", stdin="pw\n"),
        "unreachable": tandem(tmp_path / "e", "login", f"http://127.0.0.1:{free_port()}",
                              "a@example.org", "--password-stdin", stdin="pw\n"),
        "revoke unknown": tandem(home, "devices", "revoke", "nosuchdevice"),
    }
    expected = {"already linked": "already linked", "email taken": "already exists",
                "wrong password": "wrong email or password",
                "unknown email": "wrong email or password",
                "unreachable": "cannot reach the server", "revoke unknown": "no active device"}
    for name, result in cases.items():
        assert result.returncode == 1, (name, result.stderr)
        assert expected[name] in _one_clean_error_line(result.stderr), name


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert tandem(tmp_path, "signup").returncode == 2
    assert tandem(tmp_path, "signup", "ftp://x", "a@b.c", "--password-stdin",
                  stdin="pw\n").returncode == 2
