"""Small JSON settings and snapshots: the operator's switches, rail baselines and the engine's status row."""

from __future__ import annotations

import json
import secrets
from typing import Any, Final

from dtms.store.db import StoreCore, dumps, iso, query

#: The settings row holding the database's id (issue 11, point 4).
DATABASE_ID_KEY: Final = "database.id"
#: Crockford's base32 in lower case: no i, l, o, u to misread, and every character fits an order comment.
ID_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
#: 8 characters, 40 random bits: two databases of one account share an id with odds of about 1e-12. The
#: first 4 (20 bits) are the tag in dtms's order comments, where every character counts.
ID_LENGTH: Final = 8
TAG_LENGTH: Final = 4


def new_database_id() -> str:
    """A fresh random database id."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class SettingsMixin(StoreCore):
    """Key → JSON value rows. Operator switches are written by any process; engine rows only fenced."""

    def setting(self, key: str, default: Any = None) -> Any:
        """The stored value of `key`, or `default`."""
        rows = self._rows("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def settings(self, prefix: str) -> dict[str, Any]:
        """Every setting whose key starts with `prefix`."""
        rows = self._rows(
            "SELECT key, value FROM settings WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {r["key"]: json.loads(r["value"]) for r in rows}

    @property
    def database_id(self) -> str | None:
        """This database's id: random, made once by the first writer that asks, then never changed.

        Every process that opens the same file reads the same id, so it names the database wherever its path
        is spelled differently; its first `TAG_LENGTH` characters (`database_tag`) mark dtms's broker
        requests, so a leader can tell another database's activity on its account from its own. None only on
        a read-only open of a database that has none yet (the first leader makes it).
        """
        cached = self.__dict__.get("_database_id")
        if cached is not None:
            return str(cached)
        found = self.setting(DATABASE_ID_KEY)
        if not isinstance(found, str) and not getattr(self, "readonly", False):
            with self._write() as conn:  # INSERT OR IGNORE: processes asking at once all read the winner's
                conn.execute(
                    "INSERT OR IGNORE INTO settings (key, value, updated_at) VALUES (?, ?, ?)",
                    (DATABASE_ID_KEY, dumps(new_database_id()), iso(self.clock.utc_now())),
                )
            found = self.setting(DATABASE_ID_KEY)
        if not isinstance(found, str):
            return None
        self.__dict__["_database_id"] = found
        return found

    @property
    def database_tag(self) -> str | None:
        """The short form of `database_id` that dtms puts in its order comments (`action_tag`)."""
        found = self.database_id
        return None if found is None else found[:TAG_LENGTH]

    def set_setting(self, key: str, value: Any, *, epoch: int | None = None) -> None:
        """Store `value` under `key`; fenced on `epoch` when given (engine-owned rows)."""
        now = iso(self.clock.utc_now())
        sql = (
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )
        if epoch is None:
            with self._write() as conn:
                conn.execute(sql, (key, dumps(value), now))
        else:
            with self.fenced(epoch), self._write() as conn:
                conn.execute(sql, (key, dumps(value), now))

    def set_settings(self, epoch: int, values: dict[str, Any]) -> None:
        """Several engine-owned rows in one fenced transaction."""
        now = iso(self.clock.utc_now())
        with self.fenced(epoch), self._write() as conn:
            for key, value in values.items():
                query(
                    conn,
                    "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value, updated_at = excluded.updated_at",
                    (key, dumps(value), now),
                )


__all__ = ["DATABASE_ID_KEY", "ID_ALPHABET", "ID_LENGTH", "TAG_LENGTH", "SettingsMixin", "new_database_id"]
