"""Malformed and hostile requests: each is a clear 4xx with the JSON error shape, never a 500,
and the server keeps serving afterwards (DESIGN.md: every input validated)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tandem.core.crypto import b64encode
from tandem.core.wire import (
    MAX_BATCH_OPS,
    MAX_CHUNK_CIPHERTEXT,
    MAX_IDS_PER_QUERY,
    MAX_JSON_BODY,
    MAX_NAME_BYTES,
    MAX_NAME_CIPHERTEXT,
    ROOT_ID,
)
from tests.conftest import BACKENDS, RunningServer, backend_args
from tests.helpers_api import (
    TIMEOUT,
    Account,
    batch,
    commit,
    content_hash,
    create_op,
    delete_op,
    fresh_email,
    make_account,
    mkdir,
    move_op,
    new_node_id,
    node,
    put_file,
    raw_request,
    seal,
    serving,
    signup_body,
)


@dataclass
class Ctx:
    srv: RunningServer
    acct: Account
    folder: dict[str, Any]
    child: dict[str, Any]
    file: dict[str, Any]

    def post_json(self, path: str, raw: bytes) -> httpx.Response:
        return self.acct.client.post(path, content=raw, headers={"Content-Type": "application/json"})

    def batch(self, *ops: dict[str, Any]) -> httpx.Response:
        return batch(self.acct, *ops)

    def create(self, **changes: Any) -> httpx.Response:
        return self.batch({**create_op(self.acct.keys, ROOT_ID, "hostile", "file"), **changes})

    def without_auth(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.srv.url}{path}", timeout=TIMEOUT, **kwargs)

    def raw(self, head: str) -> tuple[int, bytes]:
        host = self.srv.url.removeprefix("http://")
        return raw_request(self.srv.url, f"{head}Host: {host}\r\nAuthorization: Bearer {self.acct.token}"
                                         "\r\n\r\n".encode())


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory, *backend_args(request, request.param)) as running:
        yield running


@pytest.fixture(scope="module")
def ctx(srv: RunningServer) -> Ctx:
    acct = make_account(srv.url, fresh_email())
    folder = mkdir(acct, "folder")
    child = mkdir(acct, "child", folder["id"])
    return Ctx(srv, acct, folder, child, put_file(acct, "file", b"content"))


def spaces(total: int, piece: int = 1 << 20) -> Iterator[bytes]:
    """A body of unknown length (sent with chunked transfer encoding)."""
    for start in range(0, total, piece):
        yield b" " * min(piece, total - start)


def frame_header(length: int) -> bytes:
    return os.urandom(32) + os.urandom(32) + struct.pack(">I", length)


A_CHUNK = "a" * 64
LONG_NAME = b64encode(os.urandom(MAX_NAME_CIPHERTEXT + 1))
Send = Callable[[Ctx], "httpx.Response | tuple[int, bytes]"]

#: case id -> (expected status, request)
CASES: dict[str, tuple[int, Send]] = {
    # ---- bodies that are not the JSON asked for
    "bad json": (400, lambda c: c.post_json("/tree/batch", b'{"ops": [')),
    "json array instead of object": (400, lambda c: c.post_json("/tree/batch", b"[1, 2]")),
    "empty body": (400, lambda c: c.post_json("/tree/batch", b"")),
    "invalid utf-8": (400, lambda c: c.post_json("/tree/batch", b'{"ops": "\xff\xfe"}')),
    "deeply nested json": (400, lambda c: c.post_json("/tree/batch", b"[" * 100_000)),
    "NaN literal": (400, lambda c: c.post_json("/tree/batch", b'{"ops": NaN}')),
    "int with 5000 digits": (400, lambda c: c.post_json(
        "/tree/batch", b'{"ops": [{"op": "delete", "id": "root", "if_rev": ' + b"9" * 5000 + b"}]}")),
    # ---- wrong types, missing and extra fields
    "ops not a list": (400, lambda c: c.acct.client.post("/tree/batch", json={"ops": "create"})),
    "empty ops": (400, lambda c: c.acct.client.post("/tree/batch", json={"ops": []})),
    "size as float": (400, lambda c: c.create(size=1.5)),
    "kind unknown": (400, lambda c: c.create(kind="symlink")),
    "missing name": (400, lambda c: c.batch({k: v for k, v in create_op(c.acct.keys, ROOT_ID, "x").items()
                                             if k != "name"})),
    "extra field": (400, lambda c: c.create(owner_account=1)),
    "unknown op": (400, lambda c: c.batch({"op": "chmod", "id": c.file["id"], "if_rev": 1})),
    "signup missing fields": (400, lambda c: c.without_auth("POST", "/auth/signup", json={"email": "a@b.c"})),
    "signup extra field": (400, lambda c: c.without_auth("POST", "/auth/signup", json={
        **signup_body(fresh_email(), "pw")[0], "is_admin": True})),
    "signup wrong kdf alg": (400, lambda c: c.without_auth("POST", "/auth/signup", json={
        **signup_body(fresh_email(), "pw")[0], "kdf": {"alg": "md5", "time_cost": 1, "memory_kib": 8,
                                                       "parallelism": 1}})),
    "signup short auth secret": (400, lambda c: c.without_auth("POST", "/auth/signup", json={
        **signup_body(fresh_email(), "pw")[0], "auth_secret": b64encode(b"short")})),
    "email without at": (400, lambda c: c.without_auth("POST", "/auth/prelogin", json={"email": "nobody"})),
    "device name with control chars": (400, lambda c: c.without_auth("POST", "/auth/signup", json={
        **signup_body(fresh_email(), "pw")[0], "device_name": "evil\nname"})),
    "login auth secret not base64": (400, lambda c: c.without_auth("POST", "/auth/login", json={
        "email": "a@b.c", "auth_secret": "A" * 25, "device_name": "x"})),
    # ---- numbers out of range
    "huge if_rev": (400, lambda c: c.batch(delete_op(c.file["id"], 10**30))),
    "negative if_rev": (400, lambda c: c.batch(delete_op(c.file["id"], -1))),
    "negative size": (400, lambda c: c.create(size=-1)),
    "negative chunk size": (400, lambda c: c.create(manifest=[[A_CHUNK, -5]], size=-5)),
    "chunk size over the chunk cap": (400, lambda c: c.create(manifest=[[A_CHUNK, 1 << 40]], size=1 << 40)),
    "mtime beyond 2^62": (400, lambda c: c.create(mtime_ns=1 << 63)),
    "version number zero": (400, lambda c: c.acct.client.post(f"/nodes/{c.file['id']}/versions/0/restore")),
    # ---- names
    "name over 271 bytes of ciphertext": (400, lambda c: c.create(name=LONG_NAME)),
    "name not base64": (400, lambda c: c.create(name="not base64 at all!!" * 2)),
    "name with impossible base64 length": (400, lambda c: c.create(name="A" * 25)),
    "name shorter than the cipher overhead": (400, lambda c: c.create(name=b64encode(b"x" * 16))),
    "restore with impossible base64 name": (400, lambda c: c.acct.client.post(
        f"/trash/{new_node_id()}/restore", json={"parent_id": ROOT_ID, "name": "A" * 25})),
    # ---- node ids
    "path traversal node id in op": (400, lambda c: c.batch(delete_op("../../etc/passwd", 1))),
    "path traversal node id in url": (404, lambda c: c.acct.client.get("/nodes/..%2F..%2Fetc%2Fpasswd")),
    "dot-dot node id in url": (400, lambda c: c.acct.client.get("/nodes/%2e%2e/versions")),
    "uppercase hex node id": (400, lambda c: c.acct.client.get(f"/nodes/{c.file['id'].upper()}")),
    "node id too long": (400, lambda c: c.acct.client.get(f"/nodes/{c.file['id']}0")),
    "root as a new node id": (400, lambda c: c.create(id=ROOT_ID)),
    "update of root": (400, lambda c: c.batch({"op": "update", "id": ROOT_ID, "if_rev": 0, "size": 0,
                                               "mtime_ns": 0, "manifest": []})),
    # ---- chunk ids and chunk bodies
    "chunk id too short": (400, lambda c: c.acct.client.get("/chunks/abc")),
    "chunk id uppercase": (400, lambda c: c.acct.client.put(f"/chunks/{'A' * 64}", content=b"x" * 64,
                                                            headers={"X-Content-Hash": A_CHUNK})),
    "chunk id traversal": (404, lambda c: c.acct.client.get("/chunks/..%2F..%2Fmeta.db")),
    "chunk ids invalid in missing query": (400, lambda c: c.acct.client.post("/chunks/missing",
                                                                             json={"ids": ["../x"]})),
    "missing content hash header": (400, lambda c: c.acct.client.put(f"/chunks/{A_CHUNK}",
                                                                     content=b"x" * 64)),
    "chunk shorter than its overhead": (400, lambda c: c.acct.client.put(
        f"/chunks/{A_CHUNK}", content=b"x" * 8, headers={"X-Content-Hash": content_hash(b"x" * 8)})),
    "chunk body not matching its hash": (400, lambda c: c.acct.client.put(
        f"/chunks/{A_CHUNK}", content=b"x" * 64, headers={"X-Content-Hash": A_CHUNK})),
    # ---- authentication
    "no auth header": (401, lambda c: c.without_auth("GET", "/tree")),
    "garbage bearer token": (401, lambda c: c.without_auth("GET", "/tree",
                                                           headers={"Authorization": "Bearer garbage"})),
    "token without bearer scheme": (401, lambda c: c.without_auth("GET", "/tree",
                                                                  headers={"Authorization": c.acct.token})),
    "basic auth": (401, lambda c: c.without_auth("GET", "/tree", headers={"Authorization": "Basic dTpw"})),
    "bearer without token": (401, lambda c: c.without_auth("GET", "/tree",
                                                           headers={"Authorization": "Bearer"})),
    # ---- size caps
    "json body declared over 32 MiB": (413, lambda c: c.raw(
        "POST /tree/batch HTTP/1.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_JSON_BODY + 1}\r\n")),
    "json body streamed over 32 MiB": (413, lambda c: c.acct.client.post(
        "/tree/batch", content=spaces(MAX_JSON_BODY + 1), headers={"Content-Type": "application/json"})),
    "chunk declared over the cap": (413, lambda c: c.raw(
        f"PUT /chunks/{A_CHUNK} HTTP/1.1\r\nX-Content-Hash: {A_CHUNK}\r\n"
        f"Content-Length: {MAX_CHUNK_CIPHERTEXT + 1}\r\n")),
    "chunk streamed over the cap": (413, lambda c: c.acct.client.put(
        f"/chunks/{A_CHUNK}", content=spaces(MAX_CHUNK_CIPHERTEXT + 1), headers={"X-Content-Hash": A_CHUNK})),
    "truncated pack frame": (400, lambda c: c.acct.client.post("/chunks/pack",
                                                               content=frame_header(100) + b"x")),
    "truncated pack header": (400, lambda c: c.acct.client.post("/chunks/pack",
                                                                content=frame_header(100)[:40])),
    "pack frame length over the cap": (400, lambda c: c.acct.client.post(
        "/chunks/pack", content=frame_header(MAX_CHUNK_CIPHERTEXT + 1))),
    "batch of 10001 ops": (400, lambda c: c.batch(*[delete_op(c.file["id"], 1)] * (MAX_BATCH_OPS + 1))),
    "missing query of 10001 ids": (400, lambda c: c.acct.client.post(
        "/chunks/missing", json={"ids": [A_CHUNK] * (MAX_IDS_PER_QUERY + 1)})),
    "fetch of 10001 ids": (400, lambda c: c.acct.client.post(
        "/chunks/fetch", json={"ids": [A_CHUNK] * (MAX_IDS_PER_QUERY + 1)})),
    # ---- query parameters
    "wait over 120 s": (400, lambda c: c.acct.client.get("/changes", params={"cursor": 0, "wait": 121})),
    "wait NaN": (400, lambda c: c.acct.client.get("/changes", params={"cursor": 0, "wait": "nan"})),
    "negative cursor": (400, lambda c: c.acct.client.get("/changes", params={"cursor": -1})),
    "cursor not a number": (400, lambda c: c.acct.client.get("/changes", params={"cursor": "latest"})),
    "missing cursor": (400, lambda c: c.acct.client.get("/changes")),
    "cursor ahead of the server": (400, lambda c: c.acct.client.get("/changes", params={"cursor": 1 << 40})),
    "tree limit 0": (400, lambda c: c.acct.client.get("/tree", params={"limit": 0})),
    "changes limit 0": (400, lambda c: c.acct.client.get("/changes", params={"cursor": 0, "limit": 0})),
    "tree limit over the page cap": (400, lambda c: c.acct.client.get("/tree", params={"limit": 5001})),
    "tree after too long": (400, lambda c: c.acct.client.get("/tree", params={"after": "f" * 65})),
    # ---- tree rules
    "move into itself": (400, lambda c: c.batch(move_op(c.acct.keys, c.folder["id"], c.folder["rev"],
                                                        c.folder["id"], "loop"))),
    "move into own child": (400, lambda c: c.batch(move_op(c.acct.keys, c.folder["id"], c.folder["rev"],
                                                           c.child["id"], "loop"))),
    "move into a file": (409, lambda c: c.batch(move_op(c.acct.keys, c.child["id"], c.child["rev"],
                                                        c.file["id"], "inside"))),
    "create under a file": (409, lambda c: c.batch(create_op(c.acct.keys, c.file["id"], "inside"))),
    "update a folder's content": (400, lambda c: c.batch({"op": "update", "id": c.folder["id"],
                                                          "if_rev": c.folder["rev"], "size": 0,
                                                          "mtime_ns": 0, "manifest": []})),
    "same new id twice in one batch": (409, lambda c: c.batch(
        create_op(c.acct.keys, ROOT_ID, "twin 1", node_id="1" * 32),
        create_op(c.acct.keys, ROOT_ID, "twin 2", node_id="1" * 32))),
    # ---- methods and paths
    "DELETE on the tree": (405, lambda c: c.acct.client.delete("/tree")),
    "PUT on batch": (405, lambda c: c.acct.client.put("/tree/batch", json={"ops": []})),
    "GET on signup": (405, lambda c: c.acct.client.get("/auth/signup")),
    "unknown path": (404, lambda c: c.acct.client.get("/admin")),
    "unknown nested path": (404, lambda c: c.acct.client.get(f"/nodes/{c.file['id']}/owner")),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_request_is_a_clear_4xx(case: str, ctx: Ctx) -> None:
    expected, send = CASES[case]
    log_before = len(ctx.srv.log())
    answer = send(ctx)
    status, body = (answer.status_code, answer.content) if isinstance(answer, httpx.Response) else answer
    assert status == expected, body[:500]
    error = json.loads(body)["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert httpx.get(f"{ctx.srv.url}/health", timeout=TIMEOUT).status_code == 200
    assert "unexpected error" not in ctx.srv.log()[log_before:]


def test_hostile_requests_changed_nothing(ctx: Ctx) -> None:
    """After the whole table, the account still holds exactly what the fixture made."""
    live = {n["id"] for n in ctx.acct.client.get("/tree").json()["nodes"]}
    assert live == {ROOT_ID, ctx.folder["id"], ctx.child["id"], ctx.file["id"]}
    assert node(ctx.acct, ctx.folder["id"])["parent_id"] == ROOT_ID


def test_longest_legal_name_is_accepted(ctx: Ctx) -> None:
    """The boundary of the name cap: 255 bytes of UTF-8 (271 of ciphertext) still fit."""
    name = "é" * (MAX_NAME_BYTES // 2) + "x"
    op = create_op(ctx.acct.keys, ctx.child["id"], name)
    assert len(ctx.acct.keys.encrypt_name(ctx.child["id"], name)) == MAX_NAME_CIPHERTEXT
    created = commit(ctx.acct, op)[0]
    commit(ctx.acct, delete_op(created["id"], created["rev"]))


def test_chunk_exactly_at_the_cap_is_accepted(ctx: Ctx) -> None:
    chunk_id, ciphertext = seal(ctx.acct.keys, os.urandom(MAX_CHUNK_CIPHERTEXT - 29))
    assert len(ciphertext) == MAX_CHUNK_CIPHERTEXT
    response = ctx.acct.client.put(f"/chunks/{chunk_id}", content=ciphertext,
                                   headers={"X-Content-Hash": content_hash(ciphertext)})
    assert response.status_code == 200, response.text
