"""Small JSON settings and snapshots: the operator's switches, rail baselines and the engine's status row."""

from __future__ import annotations

import json
from typing import Any

from dtms.store.db import StoreCore, dumps, iso, query


class SettingsMixin(StoreCore):
    """Key → JSON value rows. Operator switches are written by any process; engine rows only fenced."""

    def setting(self, key: str, default: Any = None) -> Any:
        """The stored value of `key`, or `default`."""
        rows = self._rows("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def settings(self, prefix: str) -> dict[str, Any]:
        """Every setting whose key starts with `prefix`."""
        rows = self._rows("SELECT key, value FROM settings WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return {r["key"]: json.loads(r["value"]) for r in rows}

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
                    "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value, updated_at = excluded.updated_at",
                    (key, dumps(value), now),
                )


__all__ = ["SettingsMixin"]
