"""Raw-HTTP helpers for the server tests: accounts, chunks and tree operations, no client library.

The server suite talks to a real `tandem serve` over HTTP, exactly as any client would, so
these helpers build requests by hand from `tandem.core` (crypto, wire) and nothing else.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import blake3
import httpx

from tandem.core.crypto import (
    TEST_KDF,
    AccountKeys,
    KdfParams,
    b64decode,
    b64encode,
    derive_login_keys,
    new_master_key,
    new_recovery_key,
    new_salt,
    recovery_wrapping_key,
    unwrap_key,
    wrap_key,
)
from tandem.core.wire import ROOT_ID
from tests.conftest import RunningServer, start_server, stop_server

#: Every request a test makes is bounded; a hang becomes a failure, not a stuck suite.
TIMEOUT = 30.0


@contextmanager
def serving(tmp_path_factory: Any, *extra: str) -> Iterator[RunningServer]:
    """A server for a whole module (tests there use separate accounts, so they do not interfere)."""
    running = start_server(tmp_path_factory.mktemp("srv") / "data", "--gc-grace", "0", *extra)
    try:
        yield running
    finally:
        stop_server(running)


def fresh_email(label: str = "user") -> str:
    return f"{label}-{secrets.token_hex(6)}@example.com"


def new_node_id() -> str:
    return secrets.token_hex(16)


@dataclass
class Account:
    url: str
    email: str
    password: str
    keys: AccountKeys
    device_id: str
    token: str
    client: httpx.Client
    session: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.client.close()


def authed_client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=TIMEOUT, headers={"Authorization": f"Bearer {token}"})


def signup_body(email: str, password: str, device_name: str = "test device",
                kdf: KdfParams = TEST_KDF) -> tuple[dict[str, Any], bytes]:
    """A signup request as a client builds it, and the master key it wraps."""
    salt = new_salt()
    login = derive_login_keys(password, salt, kdf)
    master = new_master_key()
    body = {
        "email": email,
        "auth_secret": b64encode(login.auth_secret),
        "salt": b64encode(salt),
        "kdf": kdf.as_dict(),
        "wrapped_key": b64encode(wrap_key(login.key_encryption_key, master)),
        "recovery_wrapped_key": b64encode(wrap_key(recovery_wrapping_key(new_recovery_key()), master)),
        "device_name": device_name,
    }
    return body, master


def make_account(url: str, email: str, password: str = "pw", device_name: str = "test device") -> Account:
    """Sign up through the API and return an authenticated account."""
    body, master = signup_body(email, password, device_name)
    response = httpx.post(f"{url}/auth/signup", json=body, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    session = response.json()
    return Account(url, email, password, AccountKeys(master), session["device_id"], session["token"],
                   authed_client(url, session["token"]), session)


def login_response(url: str, email: str, password: str, device_name: str = "second device") -> httpx.Response:
    """Prelogin for the salt, derive the auth secret, log in (the raw response)."""
    pre = httpx.post(f"{url}/auth/prelogin", json={"email": email}, timeout=TIMEOUT)
    assert pre.status_code == 200, pre.text
    params = KdfParams.from_dict(pre.json()["kdf"])
    login = derive_login_keys(password, b64decode(pre.json()["salt"]), params)
    return httpx.post(f"{url}/auth/login", timeout=TIMEOUT, json={
        "email": email, "auth_secret": b64encode(login.auth_secret), "device_name": device_name})


def login(url: str, email: str, password: str = "pw", device_name: str = "second device") -> Account:
    """Log in as a new device of an existing account, unwrapping the master key."""
    response = login_response(url, email, password, device_name)
    assert response.status_code == 200, response.text
    session = response.json()
    login_keys = derive_login_keys(password, b64decode(session["salt"]), KdfParams.from_dict(session["kdf"]))
    master = unwrap_key(login_keys.key_encryption_key, b64decode(session["wrapped_key"]))
    return Account(url, email, password, AccountKeys(master), session["device_id"], session["token"],
                   authed_client(url, session["token"]), session)


def error_code(response: httpx.Response) -> str:
    """The stable error code of a refusal (and a check that the body has the error shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body
    return str(body["error"]["code"])


# ---- chunks ---------------------------------------------------------------------------------

def content_hash(ciphertext: bytes) -> str:
    return blake3.blake3(ciphertext).hexdigest()


def seal(keys: AccountKeys, plaintext: bytes) -> tuple[str, bytes]:
    """(chunk id, ciphertext) of one plaintext chunk."""
    chunk_id = keys.chunk_id(plaintext)
    return chunk_id, keys.encrypt_chunk(chunk_id, plaintext)


def put_chunk_raw(account: Account, chunk_id: str, ciphertext: bytes) -> httpx.Response:
    return account.client.put(f"/chunks/{chunk_id}", content=ciphertext,
                              headers={"X-Content-Hash": content_hash(ciphertext)})


def upload_chunk(account: Account, plaintext: bytes) -> tuple[str, int]:
    """Encrypt and upload one chunk; returns its manifest entry (chunk id, plaintext size)."""
    chunk_id, ciphertext = seal(account.keys, plaintext)
    response = put_chunk_raw(account, chunk_id, ciphertext)
    assert response.status_code == 200, response.text
    return chunk_id, len(plaintext)


# ---- tree operations ------------------------------------------------------------------------

def enc_name(keys: AccountKeys, parent_id: str, name: str) -> str:
    return b64encode(keys.encrypt_name(parent_id, name))


def create_op(keys: AccountKeys, parent_id: str, name: str, kind: str = "folder",
              manifest: list[tuple[str, int]] | None = None, node_id: str | None = None,
              mtime_ns: int = 0) -> dict[str, Any]:
    op: dict[str, Any] = {"op": "create", "id": node_id or new_node_id(), "parent_id": parent_id,
                          "name": enc_name(keys, parent_id, name), "kind": kind, "mtime_ns": mtime_ns}
    if kind == "file":
        entries = manifest or []
        op["manifest"] = [list(entry) for entry in entries]
        op["size"] = sum(size for _, size in entries)
    return op


def update_op(node_id: str, if_rev: int, manifest: list[tuple[str, int]],
              mtime_ns: int = 0) -> dict[str, Any]:
    return {"op": "update", "id": node_id, "if_rev": if_rev, "mtime_ns": mtime_ns,
            "manifest": [list(entry) for entry in manifest], "size": sum(size for _, size in manifest)}


def move_op(keys: AccountKeys, node_id: str, if_rev: int, parent_id: str, name: str) -> dict[str, Any]:
    return {"op": "move", "id": node_id, "if_rev": if_rev, "parent_id": parent_id,
            "name": enc_name(keys, parent_id, name)}


def delete_op(node_id: str, if_rev: int) -> dict[str, Any]:
    return {"op": "delete", "id": node_id, "if_rev": if_rev}


def batch(account: Account, *ops: dict[str, Any]) -> httpx.Response:
    return account.client.post("/tree/batch", json={"ops": list(ops)})


def commit(account: Account, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply operations that must succeed; returns their results ({id, rev} each)."""
    response = batch(account, *ops)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def mkdir(account: Account, name: str, parent_id: str = ROOT_ID) -> dict[str, Any]:
    return commit(account, create_op(account.keys, parent_id, name))[0]


def put_file(account: Account, name: str, content: bytes, parent_id: str = ROOT_ID) -> dict[str, Any]:
    """Upload `content` as one chunk (or none when empty) and create the file; returns {id, rev}."""
    manifest = [upload_chunk(account, content)] if content else []
    return commit(account, create_op(account.keys, parent_id, name, "file", manifest))[0]


def node(account: Account, node_id: str) -> dict[str, Any]:
    response = account.client.get(f"/nodes/{node_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def cursor(account: Account) -> int:
    response = account.client.get("/account")
    assert response.status_code == 200, response.text
    return int(response.json()["cursor"])


def full_tree(account: Account, limit: int = 1000) -> list[dict[str, Any]]:
    """Every live node, read page by page."""
    nodes: list[dict[str, Any]] = []
    after = ""
    for _ in range(100_000):
        page = account.client.get("/tree", params={"after": after, "limit": limit})
        assert page.status_code == 200, page.text
        nodes += page.json()["nodes"]
        if page.json()["next_after"] is None:
            return nodes
        after = page.json()["next_after"]
    raise AssertionError("the tree listing never ended")


def raw_request(url: str, head: bytes, body: bytes = b"", read_limit: int = 65536) -> tuple[int, bytes]:
    """Send bytes over a plain socket (for requests httpx refuses to make, such as a declared
    Content-Length larger than the body); returns the status and the response body."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + body)
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            piece = sock.recv(read_limit)
            if not piece:
                break
            received += piece
    status_line, _, rest = received.partition(b"\r\n")
    _headers, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


def _complete(received: bytes) -> bool:
    head, _, payload = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(payload) >= int(value)
    return False


def data_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())
