"""Default locations: one per-user database, or one per broker account, wherever a bot starts.

A default relative to the working directory gave two bots started from two folders two databases, two
leaders and two engines on the same positions (issue 11, point 4). The default is now in the user's data
directory (platformdirs), and one database per account (login and server) when the account is known.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from dtms.errors import InvalidArgumentError

#: The database's file name in its directory.
DB_NAME: Final = "dtms.db"
#: Characters of a server name kept in the directory name; anything else becomes `-`.
_UNSAFE: Final = re.compile(r"[^a-z0-9._]+")
#: Long enough for any broker's server name, short enough for Windows' 260-character paths.
_MAX_SLUG: Final = 64


def data_dir() -> Path:
    """The per-user dtms data directory (`~/.local/share/dtms`, `%LOCALAPPDATA%\\dtms`, …; XDG_DATA_HOME is
    honoured). Local, not roaming: a database must not follow the user to another machine."""
    import platformdirs  # here, not at import: `import dtms` stays cheap

    return platformdirs.user_data_path("dtms", appauthor=False, roaming=False)


def server_slug(server: str) -> str:
    """A broker server name as a safe, portable directory name: lower case (Windows folds case anyway),
    `[a-z0-9._-]` only, no leading dot or dash. `MetaQuotes-Demo` → `metaquotes-demo`."""
    if not isinstance(server, str):
        raise InvalidArgumentError(f"server must be a str, got {server!r}")
    slug = _UNSAFE.sub("-", server.strip().lower()).strip("-.")[:_MAX_SLUG].strip("-.")
    if not slug:
        raise InvalidArgumentError(f"server {server!r} has no letter or digit to name a directory by")
    return slug


def default_db_path(login: int | None = None, server: str | None = None) -> Path:
    """Where the dtms database is when no path is given: one per user, or one per broker account.

    With both `login` and `server`: `<data>/accounts/<server-slug>-<login>/dtms.db`, the same for every bot
    process of that user on that account, whatever its working directory. Without them: `<data>/dtms.db`.

    Raises:
        InvalidArgumentError: only one of login and server, a login that is not a positive integer, or a
            server name with nothing usable in it.
    """
    if login is None and server is None:
        return data_dir() / DB_NAME
    if login is None or server is None:
        raise InvalidArgumentError("give both login and server for an account's database, or neither")
    if isinstance(login, bool) or not isinstance(login, int) or login <= 0:
        raise InvalidArgumentError(f"login must be a positive integer, got {login!r}")
    return data_dir() / "accounts" / f"{server_slug(server)}-{login}" / DB_NAME


__all__ = ["DB_NAME", "data_dir", "default_db_path", "server_slug"]
