"""Which paths of the sync folder never sync: `.tandemignore` (gitignore syntax) plus defaults.

Rules come from one file at the root, `.tandemignore`, which itself syncs so every device
ignores the same things. Built-in defaults (editor swap and lock files, OS metadata) come
first, so the user's file can re-include them with `!pattern`; the state folder `.tandem/`
is ignored before any rule is consulted and cannot be re-included.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from pathspec import GitIgnoreSpec

from tandem.sync.model import normalize, parent_of

IGNORE_FILE = ".tandemignore"
STATE_FOLDER = ".tandem"

_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("*.swp", "built-in: editor swap file"),
    ("*.swo", "built-in: editor swap file"),
    ("*~", "built-in: editor backup file"),
    (".#*", "built-in: editor lock file"),
    # A leading '#' starts a comment in gitignore syntax: Emacs auto-save files need the escape.
    ("\\#*#", "built-in: editor auto-save file"),
    ("~$*", "built-in: office lock file"),
    (".~lock.*#", "built-in: office lock file"),
    (".DS_Store", "built-in: system metadata file"),
    ("Thumbs.db", "built-in: system metadata file"),
    ("desktop.ini", "built-in: system metadata file"),
)


class IgnoreFileError(Exception):
    """`.tandemignore` exists but cannot be used: syncing without it could upload what the
    user meant to keep local, so the caller must stop and show this message."""


class IgnoreRules:
    """The compiled rules; `match` says whether (and why) a path is ignored."""

    def __init__(self, lines: Iterable[str] = (), source: str = IGNORE_FILE) -> None:
        lines = list(lines)
        compiled = [(GitIgnoreSpec.from_lines([line]), reason) for line, reason in _DEFAULTS]
        for number, line in enumerate(lines, start=1):
            try:
                compiled.append((GitIgnoreSpec.from_lines([normalize(line)]), line.rstrip()))
            except ValueError as exc:
                raise IgnoreFileError(f"{source} line {number}: invalid pattern {line!r}") from exc
        # Defaults first, then the user's lines in order; a match's index finds its reason.
        self._spec = GitIgnoreSpec([pattern for spec, _ in compiled for pattern in spec.patterns])
        self._reasons = [reason for spec, reason in compiled for _ in spec.patterns]
        # Siblings share their ancestors: a walk asks about the same few folders again and again.
        self._folder_rule = functools.lru_cache(maxsize=4096)(self._folder_rule_uncached)
        # A pattern with no '/' but a trailing one matches the last name at any depth: when all
        # are so (the defaults, most user files), the answer depends on the name alone, and
        # names repeat across folders.
        patterns = [line for line, _ in _DEFAULTS] + [line.strip() for line in lines]
        self._by_name: dict[str, str | None] | None = (
            {} if all("/" not in p.rstrip("/") for p in patterns) else None)

    @classmethod
    def load(cls, root: Path) -> IgnoreRules:
        """Read `ROOT/.tandemignore`; a missing file means the defaults alone."""
        path = root / IGNORE_FILE
        try:
            info = path.lstat()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise IgnoreFileError(f"cannot read {path}: {exc.strerror}") from exc
        # A symbolic link could point outside the sync folder, which is never read.
        if not stat.S_ISREG(info.st_mode):
            raise IgnoreFileError(f"{path} is not a regular file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise IgnoreFileError(f"cannot read {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise IgnoreFileError(f"{path} is not UTF-8 text") from exc
        return cls(text.splitlines(), source=os.fspath(path))

    def match(self, path: str, is_dir: bool) -> str | None:
        """The rule that ignores `path` (relative, '/'-separated, NFC), or None if it syncs.

        A path inside an ignored folder is ignored by that folder's rule, as in git: a
        `!pattern` cannot re-include a file whose parent folder is excluded. This keeps the
        answer for a single path (a watcher event) equal to what a full walk would decide.
        """
        if path == STATE_FOLDER or path.startswith(STATE_FOLDER + "/"):
            return "built-in: Tandem's state folder"
        if path == IGNORE_FILE:
            return None
        folder = parent_of(path)
        if folder:
            rule = self._folder_rule(folder)
            if rule is not None:
                return rule
        return self._rule_for(path + "/" if is_dir else path)

    def _folder_rule_uncached(self, folder: str) -> str | None:
        """The rule ignoring `folder` or, first, one of its ancestors (outermost first)."""
        parent = parent_of(folder)
        if parent:
            rule = self._folder_rule(parent)
            if rule is not None:
                return rule
        return self._rule_for(folder + "/")

    def _rule_for(self, candidate: str) -> str | None:
        if self._by_name is None:
            return self._check(candidate)
        name = candidate[candidate.rfind("/", 0, len(candidate) - 1) + 1:]
        if name not in self._by_name:
            self._by_name[name] = self._check(name)
        return self._by_name[name]

    def _check(self, candidate: str) -> str | None:
        result = self._spec.check_file(candidate)
        if result.include and result.index is not None:
            return self._reasons[result.index]
        return None
