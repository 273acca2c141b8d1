"""Result stores: where case records go beside results.jsonl, chosen by a URI.

A plain path or a sqlite: URI gives the default SQLite file store; mongodb:// (or mongodb+srv://)
the MongoDB store of the `mongodb` extra, in the database the URI's path names (default `harness`).
Backends are imported only when chosen, so the optional drivers of one store never weigh on a run
that uses another.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["SUPPORTED_SCHEMES", "Store", "is_task_store", "open_store", "read_tasks", "sqlite_path"]

SUPPORTED_SCHEMES = ("sqlite", "mongodb", "mongodb+srv")

# A URI scheme is at least two characters, so a Windows drive letter ("C:\\runs.db") stays a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


@runtime_checkable
class Store(Protocol):
    """What the session needs from a result store; every method takes and returns plain dicts."""

    def start_run(self, run_id: str, metadata: dict[str, Any]) -> None:
        """Record that a run began, with its settings, models and machine description."""

    def add(self, record: dict[str, Any], text: str | None = None) -> None:
        """Save one case record, upserted by (run_id, case_id) so a retried write never duplicates.
        `text`: the record as JSON with sorted keys (CaseRecord.to_json), where the caller has it:
        a store that keeps text need not encode the record again."""

    def finish_run(self, run_id: str, summary: list[dict[str, Any]]) -> None:
        """Mark a run finished and keep its summary rows (SummaryRow.to_dict())."""

    def records(self, run_id: str) -> list[dict[str, Any]]:
        """The case records of one run, in the order they were first added."""

    def put_shard(self, run_id: str, shard: dict[str, Any]) -> None:
        """Keep what one shard of a run says about itself (harness/run/shard.py shard_metadata),
        upserted by (run_id, shard index): a resumed shard replaces its own entry."""

    def shards(self, run_id: str) -> list[dict[str, Any]]:
        """Every shard entry of a run, by index; empty for a run that was not sharded."""

    def runs(self) -> list[dict[str, Any]]:
        """Every run: run_id, started, finished (None while running), metadata and summary."""

    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""


def sqlite_path(uri: str) -> str:
    """The file path of a sqlite URI: sqlite:///abs/path, sqlite:relative/path or sqlite::memory:."""
    rest = uri[len("sqlite:"):]
    if rest.startswith("//"):
        # sqlite:///abs/path: an empty authority, then an absolute path. Anything between the
        # slashes would be a host, which a local file store cannot honour.
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ValueError(
                f"{uri!r}: a sqlite URI takes no host; write sqlite:///abs/path or sqlite:rel/path"
            )
    if not rest:
        raise ValueError(f"{uri!r}: the sqlite URI names no file")
    return rest


def open_store(uri: str | Path) -> Store:
    """Open the store a URI names: a path or sqlite: URI (SQLite file), or mongodb:// (MongoDB)."""
    text = str(uri)
    match = _SCHEME.match(text)
    if match is None:
        # A plain path: the default SQLite file store.
        from harness.store.sqlite import SQLiteStore

        return SQLiteStore(Path(text).expanduser())
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        from harness.store.sqlite import SQLiteStore

        path = sqlite_path(text)
        return SQLiteStore(path if path == ":memory:" else Path(path).expanduser())
    if scheme in ("mongodb", "mongodb+srv"):
        try:
            from harness.store.mongo import MongoStore
        except ImportError as exc:
            # Say so plainly rather than fall back to a file the user did not ask for.
            raise ValueError(f"{scheme}:// store requested, but {exc}") from None
        return MongoStore(text)  # pings the server: a wrong URI fails here, naming it
    supported = ", ".join(f"{name}:" for name in SUPPORTED_SCHEMES)
    raise ValueError(f"unknown store scheme {scheme!r} in {text!r}; supported: a file path, {supported}")


def is_task_store(source: str | Path) -> bool:
    """True for a URI whose store keeps tasks (`harness import-tasks` writes only to MongoDB)."""
    return isinstance(source, str) and source.lower().startswith(("mongodb://", "mongodb+srv://"))


def read_tasks(uri: str, suite: str, split: str | None = None) -> list[dict[str, Any]]:
    """The items of a suite (one split, or all) that `harness import-tasks` wrote into the store
    at `uri`, in import order; a ValueError naming the store and the command when there are none."""
    from harness.store.mongo import redact

    if not is_task_store(uri):
        raise ValueError(f"{uri!r}: tasks are kept only in a mongodb:// store")
    store = open_store(uri)
    try:
        found = store.tasks(suite, split)  # type: ignore[attr-defined]
    finally:
        store.close()
    if not found:
        which = f"split {split!r}" if split is not None else "any split"
        raise ValueError(f"{redact(uri)}: no {suite} tasks of {which} in its tasks collection; import them "
                         f"first: harness import-tasks --suite {suite} --data PATH"
                         f"{f' --split {split}' if split is not None else ''} --store URI")
    return found
