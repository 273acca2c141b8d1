"""The on-disk response cache: identical requests to the same model are answered from disk.

Keyed by the exact request (model identity, kind, every request field except the oracle's
reference) so a re-run or a re-score calls the model zero times. Fields added to Request after
the cache's first entries (LATER_FIELDS) join the key only when set: a request that leaves them
at their default has the key it had before they existed, so old entries stay valid. One SQLite file, safe for
several pytest-xdist workers at once. Cached answers keep the timings of the original call and
are marked `cached` in the record.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.core.locations import cache_dir
from harness.models.registry import ModelSpec

DEFAULT_DIR = cache_dir()
# Request fields added later, with the default at which they are left out of the key.
LATER_FIELDS: dict[str, Any] = {"top_p": None, "top_k": None}


def request_key(spec: ModelSpec, kind: str, payload: Any) -> str:
    identity = {"backend": spec.backend, "model": spec.model, "quantization": spec.quantization,
                "options": spec.options, "kind": kind}

    def strip(value: Any) -> Any:
        data = asdict(value) if hasattr(value, "__dataclass_fields__") else value
        if isinstance(data, dict):
            data = {k: v for k, v in data.items()
                    if k != "reference" and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
        return data

    body = [strip(p) for p in payload] if isinstance(payload, list) else strip(payload)
    text = json.dumps({"id": identity, "request": body}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, folder: Path | None = None) -> None:
        folder = cache_dir(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "responses.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute("create table if not exists responses (key text primary key, value text not null)")

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("select value from responses where key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, default=str)
        with self._lock:
            self._db.execute("insert or replace into responses (key, value) values (?, ?)", (key, text))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("select count(*) from responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
