"""The client side: the server API, the account and its keys, encrypted transfers.

Public API: `ApiClient` (one method per endpoint), `Home` (a TANDEM_HOME folder),
`Session` (a linked device: keys + API), `Transfers` (encrypted uploads and downloads).

Each name is imported on first use (PEP 562), so a command that only needs, say, `Home` or an
error class does not pay for the HTTP stack at start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.client.account import Session, login, logout, signup
    from tandem.client.api import ApiClient, ApiError, ServerUnreachable
    from tandem.client.errors import ClientError
    from tandem.client.home import Home
    from tandem.client.transfer import Transfers, TransferStats

_MODULE_OF = {
    "ApiClient": "api", "ApiError": "api", "ClientError": "errors", "ServerUnreachable": "api",
    "Home": "home", "Session": "account", "login": "account", "logout": "account",
    "signup": "account", "TransferStats": "transfer", "Transfers": "transfer",
}

__all__ = [
    "ApiClient",
    "ApiError",
    "ClientError",
    "Home",
    "ServerUnreachable",
    "Session",
    "TransferStats",
    "Transfers",
    "login",
    "logout",
    "signup",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"tandem.client.{_MODULE_OF[name]}"), name)
