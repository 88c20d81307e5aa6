"""`tandem serve --tls-cert --tls-key`: HTTPS with a certificate made here (self-signed, for
127.0.0.1), a client that trusts it through SSL_CERT_FILE, and one that does not; a loud
warning when the server listens beyond loopback without TLS."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, tandem

PASSWORD = "correct horse battery staple"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 valid for a day, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tandem test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tandem", "serve", "--data",
                                    str(tmp_path / "data"), "--port", str(port), "--gc-interval", "0",
                                    *args], stdout=out, stderr=subprocess.STDOUT)
    return process, port, log


def wait_healthy(url: str, process: subprocess.Popen[bytes], verify: ssl.SSLContext | bool) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/health", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    cert, key = self_signed(tmp_path)
    process, port, log = serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        wait_healthy(f"https://127.0.0.1:{port}", process, ssl.create_default_context(cafile=cert))
        yield f"https://127.0.0.1:{port}", cert, log
    finally:
        stop(process)


def test_tls_server_and_a_client_trusting_its_certificate(
        tls_server: tuple[str, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert, log = tls_server
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets nowhere
        httpx.get(url.replace("https:", "http:") + "/health", timeout=5)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    signed = tandem(tmp_path / "home", "signup", url, "tls@example.org", "--password-stdin",
                    "--device-name", "laptop", stdin=PASSWORD + "\n")
    assert signed.returncode == 0, signed.stderr
    listed = tandem(tmp_path / "home", "devices", "--json")
    assert listed.returncode == 0 and "laptop" in listed.stdout, listed.stderr
    text = log.read_text()
    assert f"Tandem server on {url}" in text and "WARNING" not in text


def test_a_client_that_does_not_trust_the_certificate_refuses_it(
        tls_server: tuple[str, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _, _ = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    refused = tandem(tmp_path / "home", "signup", url, "mitm@example.org", "--password-stdin",
                     "--device-name", "laptop", stdin=PASSWORD + "\n")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr and "Traceback" not in refused.stderr


def test_mismatched_or_half_tls_options_are_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    for args in (["--tls-cert", str(cert)], ["--tls-cert", str(cert), "--tls-key", str(other_key)]):
        result = tandem(tmp_path / "home", "serve", "--data", str(tmp_path / "data"),
                        "--port", str(free_port()), *args, timeout=60)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert "--tls-key" in result.stderr or "cannot use" in result.stderr, result.stderr


def test_listening_beyond_loopback_without_tls_warns(tmp_path: Path) -> None:
    process, port, log = serve(tmp_path, "--host", "0.0.0.0")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, False)
    finally:
        stop(process)
    assert "WARNING: listening on 0.0.0.0 without TLS" in log.read_text()
