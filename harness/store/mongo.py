"""The MongoDB result store (`--store mongodb://host:port/db`) and importing a suite's items into it.

Four collections in the URI's database (default `harness`): `runs` (one document per run:
metadata, start, finish, summary), `cases` (one document per case record, the record itself),
`shards` (one document per shard of a run split over machines, harness/run/shard.py) and `tasks` (a
suite's items, from `harness import-tasks`). Every write is an upsert on a unique key
((run_id, case_id) for cases, (suite, split, item_id) for tasks), so a retried write or a second
import replaces the document rather than adding one.

Needs the `mongodb` extra (pymongo). The tests run it against nx-27017, a MongoDB wire-protocol
server on SQLite, over a real TCP connection; nothing here is specific to that server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

try:
    import pymongo
    from pymongo import ASCENDING, ReplaceOne
    from pymongo.errors import DuplicateKeyError, PyMongoError
except ImportError as exc:  # the extra is optional; open_store turns this into a clear message
    raise ImportError(
        "the MongoDB store needs pymongo, which comes with the mongodb extra: pip install -e '.[mongodb]'"
    ) from exc


__all__ = ["DEFAULT_DATABASE", "TIMEOUT_S", "MongoStore", "TaskItem", "import_tasks", "redact"]


class TaskItem(Protocol):
    """A suite's item as the `tasks` collection keeps it (harness.suites.base.Item has this shape;
    the store does not import the suites)."""

    id: str
    input: Any
    reference: Any
    meta: Any

DEFAULT_DATABASE = "harness"
# How long opening the store waits for a server. Long enough for a busy server, short enough that a
# wrong host or port stops a run at once with a message instead of hanging it (pymongo's own
# default is 30 s). A serverSelectionTimeoutMS in the URI wins.
TIMEOUT_S = 5.0
# Fields not part of a stored record: MongoDB's own id.
_INTERNAL = ("_id",)
_PASSWORD = re.compile(r"(?<=://)([^:/@]+):[^@/]*@")


def redact(uri: str) -> str:
    """The URI with its password masked, fit for an error message or a log."""
    return _PASSWORD.sub(r"\1:***@", uri)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(data: Any) -> Any:
    """The JSON form of `data`, as results.jsonl holds it: BSON-safe (string keys, no Paths or
    tuples), and what records() gives back equals what the JSON log gives back."""
    return json.loads(json.dumps(data, default=str))


def _strip(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in _INTERNAL}


class MongoStore:
    """Runs and case records in a MongoDB database; the same protocol as SQLiteStore."""

    def __init__(self, uri: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.uri = uri
        options: dict[str, Any] = {"appname": "llm-bench-harness"}
        lowered = uri.lower()
        if "serverselectiontimeoutms=" not in lowered:
            options["serverSelectionTimeoutMS"] = int(timeout_s * 1000)
        if "connecttimeoutms=" not in lowered:
            options["connectTimeoutMS"] = int(timeout_s * 1000)
        try:
            self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, **options)
        except (PyMongoError, ValueError) as exc:  # a malformed URI or option
            raise ValueError(f"MongoDB store {redact(uri)!r}: {exc}") from None
        try:
            # MongoClient connects lazily; a ping now turns a wrong host, port or credential into
            # one clear error before the first case runs, not a stack trace in the middle of a run.
            self._client.admin.command("ping")
            self._db = self._client.get_default_database(DEFAULT_DATABASE)
            self._runs = self._db["runs"]
            self._cases = self._db["cases"]
            self._tasks = self._db["tasks"]
            self._shards = self._db["shards"]
            self._runs.create_index("run_id", unique=True)
            self._cases.create_index([("run_id", ASCENDING), ("case_id", ASCENDING)], unique=True)
            self._cases.create_index([("suite", ASCENDING), ("model", ASCENDING)])
            self._tasks.create_index(
                [("suite", ASCENDING), ("split", ASCENDING), ("item_id", ASCENDING)], unique=True
            )
            self._shards.create_index([("run_id", ASCENDING), ("index", ASCENDING)], unique=True)
        except PyMongoError as exc:
            self._client.close()
            wait = options.get("serverSelectionTimeoutMS")
            within = f" within {wait / 1000:g} s" if wait else ""
            raise ValueError(
                f"cannot use the MongoDB store {redact(uri)!r}{within}: {type(exc).__name__}: "
                f"{str(exc).split(', Timeout:')[0]}"  # pymongo appends its topology description
            ) from None

    @property
    def database(self) -> str:
        return self._db.name

    def start_run(self, run_id: str, metadata: dict[str, Any]) -> None:
        # A resumed run keeps its first start time; its metadata is the latest. Two updates, each
        # idempotent: the second fills `started` only where no earlier start (or only a finish) left one.
        started = str(metadata.get("started") or _now())
        self._runs.update_one({"run_id": run_id}, {"$set": {"metadata": _plain(metadata)}}, upsert=True)
        self._runs.update_one({"run_id": run_id, "started": None}, {"$set": {"started": started}})

    def add(self, record: dict[str, Any], text: str | None = None) -> None:  # a document: text unused
        try:
            key = {"run_id": str(record["run_id"]), "case_id": str(record["case_id"])}
        except KeyError as exc:
            raise ValueError(f"a case record needs run_id and case_id; missing {exc.args[0]!r}") from None
        # replace_one keeps the document's _id, an ObjectId the server made when the case was first
        # added; records() sorts on it, so a retried write keeps the case's first place.
        document = {**_plain(record), **key}
        try:
            self._cases.replace_one(key, document, upsert=True)
        except DuplicateKeyError:
            # Two upserts of one new key at once: the unique index let one insert, the other lost
            # the race; the document exists now, so the same upsert replaces it.
            self._cases.replace_one(key, document, upsert=True)

    def finish_run(self, run_id: str, summary: list[dict[str, Any]]) -> None:
        # Upsert: a run whose start was never recorded still gets its document.
        self._runs.update_one(
            {"run_id": run_id}, {"$set": {"finished": _now(), "summary": _plain(summary)}}, upsert=True
        )

    def records(self, run_id: str) -> list[dict[str, Any]]:
        # ObjectIds from one server grow with time and a per-process counter: insertion order.
        found = self._cases.find({"run_id": run_id}).sort("_id", ASCENDING)
        return [_strip(document) for document in found]

    def put_shard(self, run_id: str, shard: dict[str, Any]) -> None:
        key = {"run_id": run_id, "index": int(shard["index"])}
        document = {**_plain(shard), **key}
        try:
            self._shards.replace_one(key, document, upsert=True)
        except DuplicateKeyError:  # two upserts of one new key at once: the document exists now
            self._shards.replace_one(key, document, upsert=True)

    def shards(self, run_id: str) -> list[dict[str, Any]]:
        found = self._shards.find({"run_id": run_id}).sort("index", ASCENDING)
        return [{k: v for k, v in _strip(document).items() if k != "run_id"} for document in found]

    def runs(self) -> list[dict[str, Any]]:
        found = self._runs.find({}).sort([("started", ASCENDING), ("run_id", ASCENDING)])
        return [
            {
                "run_id": document["run_id"],
                "started": document.get("started"),
                "finished": document.get("finished"),
                "metadata": document.get("metadata") or {},
                "summary": document.get("summary"),
            }
            for document in found
        ]

    def tasks(self, suite: str, split: str | None = None) -> list[dict[str, Any]]:
        """The imported items of a suite (one split, or all), in the order they were first imported."""
        query = {"suite": suite} if split is None else {"suite": suite, "split": split}
        return [_strip(document) for document in self._tasks.find(query).sort("_id", ASCENDING)]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MongoStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MongoStore({redact(self.uri)!r})"


def task_document(suite: str, split: str, item: TaskItem) -> dict[str, Any]:
    """How one item is kept in `tasks`: its key fields, then the item as the suite loaded it."""
    return {
        "suite": suite,
        "split": split,
        "item_id": item.id,
        "input": _plain(item.input),
        "reference": item.reference,
        "meta": _plain(item.meta),
    }


def import_tasks(store: MongoStore, suite: str, split: str, items: Iterable[TaskItem]) -> tuple[int, int]:
    """Upsert a suite's items into `tasks`, keyed by (suite, split, item id).

    Importing again replaces the documents in place (no duplicates). The split is part of the key
    because item ids are unique only within a split (MMLU's `astronomy-3` exists in dev and test).
    Returns (items written, of which new).
    """
    writes = [
        ReplaceOne({"suite": suite, "split": split, "item_id": item.id}, task_document(suite, split, item),
                   upsert=True)
        for item in items
    ]
    if not writes:
        return 0, 0
    try:
        result = store._tasks.bulk_write(writes, ordered=True)
    except PyMongoError as exc:
        raise ValueError(f"importing {suite}/{split} into {store!r}: {type(exc).__name__}: {exc}") from None
    return len(writes), result.upserted_count
