"""The client side: the server API, the account and its keys, encrypted transfers.

Public API: `ApiClient` (one method per endpoint), `Home` (a TANDEM_HOME folder),
`Session` (a linked device: keys + API), `Transfers` (encrypted uploads and downloads).
"""

from tandem.client.account import Session, login, logout, signup
from tandem.client.api import ApiClient, ApiError, ClientError, ServerUnreachable
from tandem.client.home import Home
from tandem.client.transfer import Transfers, TransferStats

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
