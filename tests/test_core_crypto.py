"""The key hierarchy and the ciphers: round trips, and every tampering refused."""

from __future__ import annotations

import os

import pytest

from tandem.core import crypto
from tandem.core.crypto import AccountKeys, DecryptionError, KdfParams

KEYS = AccountKeys(bytes(range(32)))


def test_login_keys_are_deterministic_and_independent() -> None:
    salt = b"s" * 16
    first = crypto.derive_login_keys("pw", salt, crypto.TEST_KDF)
    again = crypto.derive_login_keys("pw", salt, crypto.TEST_KDF)
    other = crypto.derive_login_keys("pw2", salt, crypto.TEST_KDF)
    assert first == again
    assert first.auth_secret != first.key_encryption_key
    assert other.auth_secret != first.auth_secret


def test_wrapped_master_key_opens_only_with_its_key() -> None:
    master = crypto.new_master_key()
    wrapped = crypto.wrap_key(b"k" * 32, master)
    assert crypto.unwrap_key(b"k" * 32, wrapped) == master
    with pytest.raises(DecryptionError):
        crypto.unwrap_key(b"x" * 32, wrapped)


def test_recovery_key_round_trips_through_its_text_form() -> None:
    key = crypto.new_recovery_key()
    text = crypto.format_recovery_key(key)
    assert crypto.parse_recovery_key(text.lower().replace("-", " ")) == key
    with pytest.raises(ValueError):
        crypto.parse_recovery_key("not-a-key")


@pytest.mark.parametrize("size", [1, 100, 1 << 20])
def test_chunk_round_trip(size: int) -> None:
    data = os.urandom(size)
    chunk_id = KEYS.chunk_id(data)
    sealed = KEYS.encrypt_chunk(chunk_id, data)
    assert len(sealed) == size + crypto.CHUNK_OVERHEAD
    assert KEYS.decrypt_chunk(chunk_id, sealed) == data


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize(
    ("case", "tamper"),
    [
        ("flipped ciphertext byte", lambda cid, ct: (cid, _flip(ct, len(ct) // 2))),
        ("flipped nonce byte", lambda cid, ct: (cid, _flip(ct, 3))),
        ("unknown format byte", lambda cid, ct: (cid, b"\x09" + ct[1:])),
        ("truncated", lambda cid, ct: (cid, ct[:10])),
        ("other chunk's id", lambda cid, ct: ("0" * 64, ct)),
    ],
)
def test_tampered_chunks_are_refused(case: str, tamper: object) -> None:
    data = b"precious bytes" * 100
    chunk_id = KEYS.chunk_id(data)
    bad_id, bad_ct = tamper(chunk_id, KEYS.encrypt_chunk(chunk_id, data))  # type: ignore[operator]
    with pytest.raises(DecryptionError):
        KEYS.decrypt_chunk(bad_id, bad_ct)


def test_chunk_ids_are_keyed_per_account() -> None:
    other = AccountKeys(bytes(32))
    assert KEYS.chunk_id(b"same") != other.chunk_id(b"same")
    assert KEYS.chunk_id(b"same") == KEYS.chunk_id(b"same")


def test_names_are_deterministic_per_folder_and_bound_to_it() -> None:
    parent_a, parent_b = "a" * 32, "b" * 32
    sealed = KEYS.encrypt_name(parent_a, "report.pdf")
    assert sealed == KEYS.encrypt_name(parent_a, "report.pdf")
    assert sealed != KEYS.encrypt_name(parent_b, "report.pdf")
    assert KEYS.decrypt_name(parent_a, sealed) == "report.pdf"
    with pytest.raises(DecryptionError):
        KEYS.decrypt_name(parent_b, sealed)



def test_labels_are_bound_to_their_owner_and_padded() -> None:
    backup_a, backup_b = "a" * 32, "b" * 32
    sealed = KEYS.encrypt_label(backup_a, "/home/ünïcode/Photos")
    assert sealed != KEYS.encrypt_label(backup_a, "/home/ünïcode/Photos")  # random nonce
    assert KEYS.decrypt_label(backup_a, sealed) == "/home/ünïcode/Photos"
    # Only a rough length shows: every path up to 64 bytes seals to the same length.
    assert len(KEYS.encrypt_label(backup_a, "/x")) == len(KEYS.encrypt_label(backup_a, "/" + "y" * 63))
    for wrong_owner, ciphertext in ((backup_b, sealed), (backup_a, sealed[:-1] + b"\x00"),
                                    (backup_a, b"\x02" + sealed[1:]), (backup_a, b"")):
        with pytest.raises(DecryptionError):
            KEYS.decrypt_label(wrong_owner, ciphertext)
    with pytest.raises(DecryptionError):
        AccountKeys(os.urandom(32)).decrypt_label(backup_a, sealed)
    for bad in ("", "nul\x00inside", "x" * 4097):
        with pytest.raises(ValueError):
            KEYS.encrypt_label(backup_a, bad)

@pytest.mark.parametrize(
    ("params", "allow_weak", "ok"),
    [
        (crypto.DEFAULT_KDF, False, True),
        (crypto.TEST_KDF, False, False),
        (crypto.TEST_KDF, True, True),
        (KdfParams(3, 4 * 1024 * 1024, 4), True, False),
        (KdfParams(100, 65536, 4), True, False),
    ],
)
def test_kdf_bounds(params: KdfParams, allow_weak: bool, ok: bool) -> None:
    assert crypto.kdf_params_acceptable(params, allow_weak) is ok


@pytest.mark.parametrize("bad", [{"alg": "scrypt", "time_cost": 1, "memory_kib": 8, "parallelism": 1},
                                 {"alg": "argon2id", "time_cost": "3", "memory_kib": 8, "parallelism": 1},
                                 {"alg": "argon2id", "time_cost": True, "memory_kib": 8, "parallelism": 1}])
def test_kdf_params_from_bad_dict(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        KdfParams.from_dict(bad)
