"""DDL and forward migrations of the dtms database, keyed by `PRAGMA user_version`."""

from __future__ import annotations

from typing import Final

_STATES: Final = "('HEALTHY','WARNING_L1','WARNING_L2','HEDGED','RECOVERING','CLOSED')"
_ACTION_STATUSES: Final = "('INTENT','SENT','DONE','FAILED','UNKNOWN','SKIPPED')"

# Version 1: trades, lease and its history, the transition log and the action journal.
# Later versions add columns and tables (ALTER TABLE ... ADD COLUMN), never rewrite these.
_V1: Final = f"""
CREATE TABLE trades (
    identifier        INTEGER PRIMARY KEY,          -- broker position identifier: never changes
    ticket            INTEGER NOT NULL,             -- current position ticket (may change, spec/mt5.md 5.1)
    symbol            TEXT    NOT NULL,
    direction         TEXT    NOT NULL CHECK (direction IN ('BUY','SELL')),
    entry_price       REAL    NOT NULL CHECK (entry_price > 0),
    initial_volume    REAL    NOT NULL CHECK (initial_volume > 0),
    volume            REAL    NOT NULL CHECK (volume >= 0),
    closed_volume     REAL    NOT NULL DEFAULT 0 CHECK (closed_volume >= 0),
    initial_sl        REAL,
    sl                REAL,
    tp                REAL,
    r                 REAL    CHECK (r IS NULL OR r > 0),
    r_source          TEXT,                          -- 'sl' or 'atr'
    owner             TEXT    NOT NULL,
    magic             INTEGER,
    comment           TEXT,
    state             TEXT    NOT NULL DEFAULT 'HEALTHY' CHECK (state IN {_STATES}),
    state_at          TEXT    NOT NULL,
    score             REAL,
    armed             INTEGER NOT NULL DEFAULT 1 CHECK (armed IN (0, 1)),
    activated_at      TEXT,
    activation_reason TEXT,
    registered_at     TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    closed_at         TEXT,
    close_reason      TEXT,
    engine            TEXT    NOT NULL DEFAULT '{{}}' CHECK (json_valid(engine)),  -- engine-owned state (JSON)
    row_version       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX trades_ticket ON trades (ticket);
CREATE INDEX trades_open ON trades (state) WHERE state != 'CLOSED';

CREATE TABLE lease (
    name              TEXT    PRIMARY KEY,
    epoch             INTEGER NOT NULL CHECK (epoch >= 0),   -- fencing token: +1 on every takeover
    holder_name       TEXT,
    host              TEXT,
    pid               INTEGER,
    proc_start        INTEGER,
    boot_id           TEXT,
    token             TEXT,
    acquired_at       TEXT,
    renewed_at        TEXT,
    expires_at        TEXT,                                  -- display only
    expires_boot_ms   INTEGER,                               -- the deadline on the shared boot clock
    renewals          INTEGER NOT NULL DEFAULT 0,
    lease_ttl_ms      INTEGER NOT NULL CHECK (lease_ttl_ms > 0),
    loop_beat_boot_ms INTEGER,
    loop_beat_at      TEXT,
    transitions       INTEGER NOT NULL DEFAULT 0,
    released          INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1)),
    lock_held         INTEGER NOT NULL DEFAULT 0 CHECK (lock_held IN (0, 1)),
    lock_inode        TEXT                                   -- 'dev:ino' of the lock file the holder locked
);

CREATE TABLE lease_history (
    name              TEXT    NOT NULL,
    epoch             INTEGER NOT NULL,
    holder_name       TEXT    NOT NULL,
    host              TEXT    NOT NULL,
    pid               INTEGER NOT NULL,
    token             TEXT    NOT NULL,
    acquired_at       TEXT    NOT NULL,
    reason            TEXT    NOT NULL,                      -- first, released, holder_dead, expired
    PRIMARY KEY (name, epoch)
);

CREATE TABLE transitions (
    transition_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier        INTEGER NOT NULL REFERENCES trades (identifier),
    at                TEXT    NOT NULL,
    from_state        TEXT    NOT NULL CHECK (from_state IN {_STATES}),
    to_state          TEXT    NOT NULL CHECK (to_state IN {_STATES}),
    reason            TEXT    NOT NULL,
    score             REAL,
    epoch             INTEGER,                               -- NULL for follower-made changes (unregister)
    status            TEXT    NOT NULL CHECK (status IN ('pending','applied','abandoned')),
    detail            TEXT    NOT NULL DEFAULT '{{}}' CHECK (json_valid(detail))
);
CREATE INDEX transitions_trade ON transitions (identifier, transition_id);

CREATE TABLE actions (
    action_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    transition_id     INTEGER REFERENCES transitions (transition_id),
    identifier        INTEGER NOT NULL REFERENCES trades (identifier),
    leg               TEXT    NOT NULL DEFAULT 'main',
    action_type       TEXT    NOT NULL,
    params            TEXT    NOT NULL DEFAULT '{{}}' CHECK (json_valid(params)),
    status            TEXT    NOT NULL CHECK (status IN {_ACTION_STATUSES}),
    attempts          INTEGER NOT NULL DEFAULT 0,
    epoch             INTEGER NOT NULL,
    request           TEXT    CHECK (request IS NULL OR json_valid(request)),
    result            TEXT    CHECK (result IS NULL OR json_valid(result)),
    retcode           INTEGER,
    error             TEXT,
    created_at        TEXT    NOT NULL,
    sent_at           TEXT,
    completed_at      TEXT
);
CREATE INDEX actions_trade ON actions (identifier, action_id);
CREATE INDEX actions_open ON actions (status) WHERE status IN ('INTENT','SENT','UNKNOWN');

-- The journal is append-only and its statuses only move forward: history is evidence.
CREATE TRIGGER actions_append_only BEFORE DELETE ON actions
BEGIN SELECT RAISE(ABORT, 'the action journal is append-only'); END;
CREATE TRIGGER actions_final_status BEFORE UPDATE OF status ON actions
WHEN OLD.status IN ('DONE','FAILED','SKIPPED') AND NEW.status != OLD.status
BEGIN SELECT RAISE(ABORT, 'a final action status cannot change'); END;
CREATE TRIGGER transitions_append_only BEFORE DELETE ON transitions
BEGIN SELECT RAISE(ABORT, 'the transition log is append-only'); END;

CREATE TABLE settings (
    key               TEXT    PRIMARY KEY,
    value             TEXT    NOT NULL CHECK (json_valid(value)),
    updated_at        TEXT    NOT NULL
);
"""

# Version 2: whether a reader may compare the holder's boot-clock deadline with its own (its writer's view of
# time), and, per epoch, the holder's identity and the proof that it can no longer send (kill-before-resend).
_V2: Final = """
ALTER TABLE lease ADD COLUMN clock_offset_ms INTEGER;     -- the writer's wall ms - boot ms (its view of time)
ALTER TABLE lease_history ADD COLUMN proc_start INTEGER;
ALTER TABLE lease_history ADD COLUMN boot_id TEXT;
ALTER TABLE lease_history ADD COLUMN stopped_at TEXT;     -- when it was proven this epoch can send no more
ALTER TABLE lease_history ADD COLUMN stopped_how TEXT
    CHECK (stopped_how IS NULL OR stopped_how IN ('exited','killed','quiesced','operator'));
-- The current epoch's holder is known from the lease row: its in-flight requests can then be proven.
UPDATE lease_history SET
    proc_start = (SELECT l.proc_start FROM lease l WHERE l.name = lease_history.name AND l.epoch = lease_history.epoch),
    boot_id = (SELECT l.boot_id FROM lease l WHERE l.name = lease_history.name AND l.epoch = lease_history.epoch)
WHERE EXISTS (SELECT 1 FROM lease l WHERE l.name = lease_history.name AND l.epoch = lease_history.epoch
              AND l.token = lease_history.token);
"""

# Version 3: `dtms trades` lists newest first; with this index a page of 50 costs the same with 100 000
# trades.
_V3: Final = """
CREATE INDEX trades_registered ON trades (registered_at, identifier);
"""

# Version 4: the outbox (spec/dtms-behaviour.md section 12). An event is written in the fenced transaction of
# the change it reports and delivered later, at least once, by whichever process leads; `delivered` lists the
# hooks that have it, so a retry calls only the others.
_V4: Final = """
CREATE TABLE outbox (
    event_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT    NOT NULL,
    at                TEXT    NOT NULL,          -- the trading clock's time of the event
    epoch             INTEGER NOT NULL,          -- the leader's epoch that wrote it
    fields            TEXT    NOT NULL CHECK (json_valid(fields)),
    created_at        TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','delivered','dead')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_at           TEXT,                      -- no delivery is tried before this (backoff)
    delivered         TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(delivered)),
    error             TEXT,
    finished_at       TEXT
);
CREATE INDEX outbox_pending ON outbox (event_id) WHERE status = 'pending';
CREATE INDEX outbox_dead ON outbox (event_id) WHERE status = 'dead';
"""

#: MIGRATIONS[i] takes a database from user_version i to i + 1.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4)

#: The schema version this code writes and reads.
SCHEMA_VERSION: Final = len(MIGRATIONS)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]
