"""The default result store: one SQLite file, safe to share between processes.

Records are kept whole as JSON (the record's shape may grow) beside a few indexed columns that
queries across runs filter on (suite, model, strategy, status, correct).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    started  TEXT,
    finished TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    summary  TEXT
);
CREATE TABLE IF NOT EXISTS cases (
    run_id   TEXT NOT NULL,
    case_id  TEXT NOT NULL,
    suite    TEXT,
    model    TEXT,
    strategy TEXT,
    item_id  TEXT,
    status   TEXT,
    correct  INTEGER,
    record   TEXT NOT NULL,
    PRIMARY KEY (run_id, case_id)
);
CREATE INDEX IF NOT EXISTS cases_by_suite_model ON cases (suite, model);
CREATE TABLE IF NOT EXISTS shards (
    run_id   TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    shard    TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
);
"""

# Upsert keyed by (run_id, case_id): a retried write replaces the row in place, keeping its rowid,
# so records() still returns cases in the order they were first added.
_UPSERT_CASE = """
INSERT INTO cases (run_id, case_id, suite, model, strategy, item_id, status, correct, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, case_id) DO UPDATE SET
    suite = excluded.suite, model = excluded.model, strategy = excluded.strategy,
    item_id = excluded.item_id, status = excluded.status, correct = excluded.correct,
    record = excluded.record
"""


# WAL pages (of 4 KiB) between automatic checkpoints: 40 MB, about 3,000 records.
CHECKPOINT_PAGES = 10000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


class SQLiteStore:
    """Runs and case records in one SQLite file (or ":memory:")."""

    def __init__(self, path: str | Path) -> None:
        self.path = path if path == ":memory:" else Path(path)
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so each add is one single-statement transaction,
        # committed before add returns. timeout=30: other processes (xdist controllers, a
        # `harness report` reading meanwhile) may hold the write lock for a moment.
        # check_same_thread=False with our own lock: the controller may write from a thread.
        self._db = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        # WAL lets readers and one writer work at once; synchronous=NORMAL skips the fsync per
        # commit (a commit survives a crash of the process, and only a power loss could undo the
        # last few), which keeps an add well under a millisecond.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint (the WAL copied into the database, with an fsync of each) every 40 MB of WAL
        # rather than SQLite's 4 MB: at a record a case, the checkpoints every few hundred cases
        # took half of an add's time. Durability is the same: a commit is in the WAL either way.
        self._db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        self._db.executescript(_SCHEMA)

    def start_run(self, run_id: str, metadata: dict[str, Any]) -> None:
        # A resumed run keeps its first start time; its metadata is the latest.
        started = str(metadata.get("started") or _now())
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (run_id, started, metadata) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET metadata = excluded.metadata, "
                "started = COALESCE(runs.started, excluded.started)",
                (run_id, started, _dumps(metadata)),
            )

    def add(self, record: dict[str, Any], text: str | None = None) -> None:
        try:
            run_id, case_id = record["run_id"], record["case_id"]
        except KeyError as exc:
            raise ValueError(f"a case record needs run_id and case_id; missing {exc.args[0]!r}") from None
        correct = record.get("correct")
        values = (
            str(run_id),
            str(case_id),
            record.get("suite"),
            record.get("model"),
            record.get("strategy"),
            None if record.get("item_id") is None else str(record["item_id"]),
            record.get("status"),
            None if correct is None else int(bool(correct)),
            _dumps(record) if text is None else text,
        )
        with self._lock:
            self._db.execute(_UPSERT_CASE, values)

    def finish_run(self, run_id: str, summary: list[dict[str, Any]]) -> None:
        # Upsert: a run whose start was never recorded (a crash, an old file) still gets its row.
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (run_id, finished, summary) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET finished = excluded.finished, "
                "summary = excluded.summary",
                (run_id, _now(), _dumps(summary)),
            )

    def records(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM cases WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        return [json.loads(text) for (text,) in rows]

    def put_shard(self, run_id: str, shard: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO shards (run_id, idx, shard) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, idx) DO UPDATE SET shard = excluded.shard",
                (run_id, int(shard["index"]), _dumps(shard)),
            )

    def shards(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT shard FROM shards WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
        return [json.loads(text) for (text,) in rows]

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, started, finished, metadata, summary FROM runs "
                "ORDER BY started, run_id"
            ).fetchall()
        return [
            {
                "run_id": run_id,
                "started": started,
                "finished": finished,
                "metadata": json.loads(metadata) if metadata else {},
                "summary": json.loads(summary) if summary else None,
            }
            for run_id, started, finished, metadata, summary in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
