"""The base of the errors the client library raises for the user to read: its own module, so
the CLI can catch it without importing the HTTP stack."""


class ClientError(Exception):
    """Base of every error this library raises for the user to read."""
