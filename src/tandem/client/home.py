"""TANDEM_HOME: one client's config, keys and state, in one folder.

Several clients on one machine are several homes. The folder and its secret files are
private to the user (0700 / 0600): they hold the device token and the account's master key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tandem.core.encoding import b64decode, b64encode
from tandem.fileio import write_atomically


@dataclass
class LinkedDevice:
    """What `signup`/`login` leave behind so later commands can act as this device."""

    server_url: str
    email: str
    device_id: str
    device_name: str
    token: str


def default_home() -> Path:
    configured = os.environ.get("TANDEM_HOME")
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # (only here: a command run with TANDEM_HOME set starts sooner)

    return Path(platformdirs.user_data_dir("tandem", appauthor=False))


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, readable by the owner only."""
    write_atomically(path, data, mode=0o600)


class Home:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_home()

    @property
    def device_file(self) -> Path:
        return self.path / "device.json"

    @property
    def key_file(self) -> Path:
        return self.path / "master.key"

    @property
    def backups_folder(self) -> Path:
        """Settings and scan caches of the folders backed up from this device."""
        return self.path / "backups"

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o700)

    def linked(self) -> LinkedDevice | None:
        try:
            data: dict[str, Any] = json.loads(self.device_file.read_text())
            return LinkedDevice(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.device_file} is damaged: {exc}") from exc

    def master_key(self) -> bytes:
        return b64decode(self.key_file.read_text().strip())

    def save(self, device: LinkedDevice, master_key: bytes) -> None:
        self.ensure()
        write_private(self.key_file, b64encode(master_key).encode())
        write_private(self.device_file, json.dumps(asdict(device), indent=2).encode())

    def forget(self) -> None:
        """Remove the token and the keys (logout); sync state is left for the next login."""
        self.device_file.unlink(missing_ok=True)
        self.key_file.unlink(missing_ok=True)
