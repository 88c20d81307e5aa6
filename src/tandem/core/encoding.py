"""How bytes travel in Tandem's JSON: URL-safe base64 without padding. Its own module, so
code that only reads or writes JSON (a device's config) does not load the cryptography stack."""

from __future__ import annotations

import base64


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
