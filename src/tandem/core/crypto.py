"""The key hierarchy and every encryption Tandem does, as pure functions over bytes.

The server never sees a password, a name or content (DESIGN.md promise 7). From the password
Argon2id derives a login root; HKDF splits it into an *auth secret* (sent instead of the
password) and a *key-encryption key* that wraps the random master key. From the master key
HKDF derives the chunk-id key (keyed BLAKE3), the content key (AES-256-GCM), the name key
(AES-SIV, deterministic so the server can enforce unique names per folder on ciphertext) and
the label key (AES-256-GCM: what a backup is of, readable by every device of the account).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass

import blake3
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tandem.core.encoding import b64decode as b64decode  # re-exported: callers use both
from tandem.core.encoding import b64encode as b64encode

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: Ciphertext of a chunk = format byte + nonce + AES-GCM output (plaintext + tag).
CHUNK_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
CHUNK_FORMAT_V1 = 1
SIV_OVERHEAD = 16
LABEL_FORMAT_V1 = 1
#: Labels are padded to a multiple of this many bytes, so their ciphertext tells the server a
#: folder path's length only to within this much.
LABEL_PADDING = 64
#: The longest label text (bytes of UTF-8): a path of the longest Linux allows.
MAX_LABEL_TEXT = 4096


class DecryptionError(Exception):
    """Ciphertext that does not authenticate: corrupted, tampered with, or the wrong key."""


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters, stored per account so every device derives the same keys."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    def as_dict(self) -> dict[str, int | str]:
        return {
            "alg": "argon2id",
            "time_cost": self.time_cost,
            "memory_kib": self.memory_kib,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> KdfParams:
        if data.get("alg") != "argon2id":
            raise ValueError("unsupported key derivation algorithm")
        values = [data.get(k) for k in ("time_cost", "memory_kib", "parallelism")]
        numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if len(numbers) != 3:
            raise ValueError("key derivation parameters must be integers")
        return cls(numbers[0], numbers[1], numbers[2])


#: RFC 9106's second recommended (low-memory) profile: the default for every account.
DEFAULT_KDF = KdfParams()
#: A deliberately cheap profile that only tests may select (TANDEM_INSECURE_FAST_KDF=1).
TEST_KDF = KdfParams(time_cost=1, memory_kib=1024, parallelism=1)
#: The weakest parameters a client accepts from a server unless the test setting is on, so a
#: malicious server cannot make a password cheap to brute-force.
MIN_KDF = KdfParams(time_cost=2, memory_kib=19456, parallelism=1)
#: The costliest parameters a client accepts, so a server cannot make a login exhaust memory.
MAX_KDF = KdfParams(time_cost=16, memory_kib=1024 * 1024, parallelism=16)


def kdf_params_acceptable(params: KdfParams, allow_weak: bool = False) -> bool:
    """Whether parameters are within the bounds a client will run."""
    low = TEST_KDF if allow_weak else MIN_KDF
    return (
        low.time_cost <= params.time_cost <= MAX_KDF.time_cost
        and low.memory_kib <= params.memory_kib <= MAX_KDF.memory_kib
        and low.parallelism <= params.parallelism <= MAX_KDF.parallelism
        and params.memory_kib >= 8 * params.parallelism
    )


def _hkdf(key: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


@dataclass(frozen=True)
class LoginKeys:
    """What a password turns into: one half goes to the server, the other never leaves."""

    auth_secret: bytes
    key_encryption_key: bytes


def derive_login_keys(password: str, salt: bytes, params: KdfParams) -> LoginKeys:
    """Argon2id over the password, split by HKDF so the auth secret reveals nothing of the KEK."""
    root = hash_secret_raw(
        secret=password.encode("utf-8"),
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )
    return LoginKeys(
        auth_secret=_hkdf(root, b"tandem/v1/auth-secret"),
        key_encryption_key=_hkdf(root, b"tandem/v1/key-encryption-key"),
    )


def new_salt() -> bytes:
    return os.urandom(16)


def new_master_key() -> bytes:
    return os.urandom(KEY_BYTES)


_WRAP_AD = b"tandem/v1/master-key"


def wrap_key(wrapping_key: bytes, master_key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(wrapping_key).encrypt(nonce, master_key, _WRAP_AD)


def unwrap_key(wrapping_key: bytes, wrapped: bytes) -> bytes:
    try:
        return AESGCM(wrapping_key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_AD)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("the key could not be unwrapped") from exc


def new_recovery_key() -> bytes:
    return os.urandom(KEY_BYTES)


def format_recovery_key(key: bytes) -> str:
    """Base32 in groups of four: easy to write down, case-insensitive to type back."""
    text = base64.b32encode(key).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_recovery_key(text: str) -> bytes:
    compact = text.replace("-", "").replace(" ", "").upper()
    padded = compact + "=" * (-len(compact) % 8)
    try:
        key = base64.b32decode(padded)
    except ValueError as exc:
        raise ValueError("not a recovery key") from exc
    if len(key) != KEY_BYTES:
        raise ValueError("not a recovery key")
    return key


def recovery_wrapping_key(recovery_key: bytes) -> bytes:
    return _hkdf(recovery_key, b"tandem/v1/recovery-wrap")


class AccountKeys:
    """Subkeys of one account's master key, each for one purpose (HKDF domain separation)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        self.master_key = master_key
        self._chunk_id_key = _hkdf(master_key, b"tandem/v1/chunk-id")
        self._content = AESGCM(_hkdf(master_key, b"tandem/v1/content"))
        self._names = AESSIV(_hkdf(master_key, b"tandem/v1/names", length=64))
        self._labels = AESGCM(_hkdf(master_key, b"tandem/v1/labels"))

    def chunk_id(self, plaintext: bytes | memoryview) -> str:
        """Keyed BLAKE3 of the plaintext: dedups within the account, tells the server nothing."""
        return blake3.blake3(plaintext, key=self._chunk_id_key).hexdigest()

    def encrypt_chunk(self, chunk_id: str, plaintext: bytes | memoryview) -> bytes:
        """AES-256-GCM with a random nonce; the chunk id is bound as associated data."""
        return b"".join(self.seal_chunk(chunk_id, plaintext))

    def seal_chunk(self, chunk_id: str, plaintext: bytes | memoryview) -> tuple[bytes, bytes]:
        """`encrypt_chunk` in its two parts, the 13-byte head (format, nonce) and the sealed
        body (ciphertext, tag), for a sender that can write them one after the other without
        joining (a copy of every MiB-sized chunk)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._content.encrypt(nonce, plaintext, chunk_id.encode("ascii"))
        return bytes([CHUNK_FORMAT_V1]) + nonce, sealed

    def decrypt_chunk(self, chunk_id: str, ciphertext: bytes | memoryview) -> bytes:
        """Decrypt and check that the plaintext really has this chunk id."""
        if len(ciphertext) < CHUNK_OVERHEAD or ciphertext[0] != CHUNK_FORMAT_V1:
            raise DecryptionError(f"chunk {chunk_id[:12]} is not a Tandem chunk")
        nonce = ciphertext[1 : 1 + NONCE_BYTES]
        try:
            plaintext = self._content.decrypt(
                nonce, ciphertext[1 + NONCE_BYTES :], chunk_id.encode("ascii")
            )
        except InvalidTag as exc:
            raise DecryptionError(f"chunk {chunk_id[:12]} failed authentication") from exc
        if self.chunk_id(plaintext) != chunk_id:
            raise DecryptionError(f"chunk {chunk_id[:12]} does not match its id")
        return plaintext

    def encrypt_name(self, parent_id: str, name: str) -> bytes:
        """Deterministic AES-SIV with the parent id as associated data: equal names in one
        folder give equal ciphertext (so the server can refuse duplicates), nothing more."""
        return self._names.encrypt(name.encode("utf-8"), [parent_id.encode("ascii")])

    def decrypt_name(self, parent_id: str, ciphertext: bytes) -> str:
        try:
            raw = self._names.decrypt(ciphertext, [parent_id.encode("ascii")])
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("a name failed authentication") from exc
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecryptionError("a name is not valid UTF-8") from exc

    def encrypt_label(self, owner_id: str, text: str) -> bytes:
        """A short text another device must read (a backup's source folder), sealed with the
        label key, the id of what it labels as associated data (a server cannot move a label
        to another backup) and NUL padding (only a rough length shows)."""
        raw = text.encode("utf-8")
        if not raw or b"\x00" in raw or len(raw) > MAX_LABEL_TEXT:
            raise ValueError("a label is 1 to 4096 bytes of text without NUL")
        padded = raw + b"\x00" * (-len(raw) % LABEL_PADDING)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._labels.encrypt(nonce, padded, _label_ad(owner_id))
        return bytes([LABEL_FORMAT_V1]) + nonce + sealed

    def decrypt_label(self, owner_id: str, ciphertext: bytes) -> str:
        if len(ciphertext) < 1 + NONCE_BYTES + TAG_BYTES or ciphertext[0] != LABEL_FORMAT_V1:
            raise DecryptionError("not a Tandem label")
        try:
            padded = self._labels.decrypt(ciphertext[1 : 1 + NONCE_BYTES],
                                          ciphertext[1 + NONCE_BYTES :], _label_ad(owner_id))
            return padded.rstrip(b"\x00").decode("utf-8")
        except InvalidTag as exc:
            raise DecryptionError("a label failed authentication") from exc
        except UnicodeDecodeError as exc:
            raise DecryptionError("a label is not valid UTF-8") from exc


def _label_ad(owner_id: str) -> bytes:
    return b"tandem/v1/label:" + owner_id.encode("ascii")
