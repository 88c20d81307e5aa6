"""Zero knowledge (promise 7): after real use, no plaintext name or content is anywhere in the
server's data, in any encoding a careless implementation might have stored it in."""

from __future__ import annotations

import base64
import os

from tandem.core.encoding import b64encode
from tandem.core.wire import ROOT_ID, encode_upload_frame
from tests.conftest import RunningServer, stop_server
from tests.helpers_api import (
    commit,
    content_hash,
    create_op,
    data_files,
    fresh_email,
    make_account,
    mkdir,
    move_op,
    new_node_id,
    node,
    put_file,
    seal,
    update_op,
    upload_chunk,
)

NAME_MARKER = "MARKER-NAME-7f3a"
CONTENT_MARKER = "MARKER-CONTENT-91bc"
#: Device names are not secret (the server shows them in the device list): finding this one
#: proves the scan reads the database files, so finding no marker means something.
DEVICE_CANARY = "DEVICE-CANARY-55e1"


def encodings(marker: str) -> dict[str, bytes]:
    """The marker as bytes in every form it could leak in (base64 at each of its 3 alignments)."""
    raw = marker.encode()
    forms = {"utf-8": raw, "utf-16-le": marker.encode("utf-16-le"), "utf-16-be": marker.encode("utf-16-be"),
             "hex": raw.hex().encode(), "lower": marker.lower().encode()}
    for shift in range(3):
        for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\x00" * shift + raw)[4:-4]  # the stable middle, whatever the alignment
            forms[f"{name}+{shift}"] = encoded.rstrip(b"=")
    return forms


def test_server_data_holds_no_plaintext(server: RunningServer) -> None:
    account = make_account(server.url, fresh_email(), device_name=DEVICE_CANARY)
    content = (CONTENT_MARKER + " ") * 2000
    folder = mkdir(account, f"{NAME_MARKER} folder")
    sub = mkdir(account, f"{NAME_MARKER} sub", folder["id"])
    file = put_file(account, f"{NAME_MARKER}.txt", content.encode(), folder["id"])
    small = put_file(account, f"small {NAME_MARKER}", CONTENT_MARKER.encode(), sub["id"])
    # A second version and a rename, so history and journal rows hold the names too.
    commit(account, update_op(file["id"], file["rev"], [upload_chunk(account, (content + "v2").encode())]))
    commit(account, move_op(account.keys, small["id"], small["rev"], ROOT_ID, f"moved {NAME_MARKER}"))
    big = os.urandom(64) + (CONTENT_MARKER * 60000).encode()
    commit(account, create_op(account.keys, folder["id"], f"big {NAME_MARKER}.bin", "file",
                              [upload_chunk(account, big)]))
    # Several chunks in one pack: a pack file is scanned like any other.
    frames = []
    for index in range(5):
        chunk_id, ciphertext = seal(account.keys, f"{CONTENT_MARKER} packed {index} ".encode() * 50)
        frames.append(encode_upload_frame(chunk_id, content_hash(ciphertext), ciphertext))
    assert account.client.post("/chunks/pack", content=b"".join(frames)).json()["stored"] == 5
    assert node(account, folder["id"])["state"] == "live"
    # A backup's folder travels as a label sealed by the client, so other devices can list it.
    backup_id = new_node_id()
    label = b64encode(account.keys.encrypt_label(backup_id, f"/home/{NAME_MARKER}/photos"))
    document = upload_chunk(account, f'{{"source":"/home/{NAME_MARKER}/photos"}}'.encode())
    created = account.client.post(f"/backups/{backup_id}/snapshots", json={
        "id": new_node_id(), "taken_at_ns": 1, "size": 0, "files": 0, "document": [document],
        "chunks": [], "label": label})
    assert created.status_code == 201, created.text
    assert account.client.get("/backups").json()["backups"][0]["label"] == label
    needles = {**{f"name {k}": v for k, v in encodings(NAME_MARKER).items()},
               **{f"content {k}": v for k, v in encodings(CONTENT_MARKER).items()}}

    stop_server(server)
    files = data_files(server.data_dir)
    assert any(p.name == "meta.db" for p in files)
    packs = [p for p in files if "blobs" in p.parts and p.parent.parent.name == "p"]
    assert len(packs) >= 5 and any(p.stat().st_size > 5 * 50 * len(CONTENT_MARKER) for p in packs)
    assert any(DEVICE_CANARY.encode() in p.read_bytes() for p in files)
    leaks = [(str(p.relative_to(server.data_dir)), form)
             for p in files for form, needle in needles.items() if needle in p.read_bytes()]
    assert leaks == []
