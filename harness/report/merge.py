"""Shards of one run read back from the shared store as one run: checked first, then merged.

Each shard of a run split over machines (harness/run/shard.py) leaves its own entry in the store: its
index and count, machine, code version, items fingerprint and settings. Before `harness report
--store URI RUN` renders the run, every entry must agree and every shard must have finished; a
difference is refused with a message that names the shard and what differs, since a run whose
shards asked other questions, ran other code or scored another way is not one run.
"""

from __future__ import annotations

from typing import Any

# Settings that may differ between shards of one run: where each copy writes, which copy it is,
# how often it samples resources. Everything else decides what is asked and how it is scored.
LOCAL_SETTINGS = frozenset({"shard", "shard_count", "resume", "run_id", "report_dir", "store", "cache_dir",
                            "cache", "monitor_interval"})
# Settings naming files, whose paths may differ from machine to machine (another checkout, a data
# mount): what the data files hold is compared through the items fingerprint instead.
PATH_SETTINGS = ("_data", "_template", "models_file", "bertscore_model")


class ShardMismatch(ValueError):
    """Shards of one run that cannot be merged; the message names the shard and the difference."""


def _name(entry: dict[str, Any]) -> str:
    host = entry.get("hostname") or "an unnamed machine"
    return f"shard {entry.get('index')}/{entry.get('count')} (on {host})"


def _settings_difference(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(k for k in (set(a) | set(b)) - LOCAL_SETTINGS if not k.endswith(PATH_SETTINGS))
    return [f"{key}={a.get(key)!r} vs {b.get(key)!r}" for key in keys if a.get(key) != b.get(key)]


def check_shards(run_id: str, shards: list[dict[str, Any]]) -> None:
    """Raise ShardMismatch unless the shards are N entries 0..N-1, all finished, from the same code,
    items and settings."""
    first = shards[0]
    counts = sorted({int(entry["count"]) for entry in shards})
    if len(counts) > 1:
        odd = next(e for e in shards if int(e["count"]) != int(first["count"]))
        raise ShardMismatch(f"run {run_id!r}: {_name(odd)} splits the run into {odd['count']} shards, "
                            f"{_name(first)} into {first['count']}")
    count = counts[0]
    present = {int(entry["index"]): entry for entry in shards}
    missing = [i for i in range(count) if i not in present]
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing)
        raise ShardMismatch(f"run {run_id!r}: shard(s) {listed} never wrote to this store; run them with "
                            f"--run-id {run_id} --shard I/{count}")
    unfinished = [e for e in shards if not e.get("finished")]
    if unfinished:
        odd = unfinished[0]
        raise ShardMismatch(f"run {run_id!r}: {_name(odd)} has not finished (started {odd.get('started')}, "
                            f"{odd.get('cases', 0)} cases so far); continue it with --resume {run_id} "
                            f"--shard {odd['index']}/{count}")
    for entry in shards[1:]:
        if entry.get("code_fingerprint") != first.get("code_fingerprint"):
            raise ShardMismatch(
                f"run {run_id!r}: {_name(entry)} ran other code than {_name(first)}: code fingerprint "
                f"{entry.get('code_fingerprint')} (git {entry.get('git_commit')}) vs "
                f"{first.get('code_fingerprint')} (git {first.get('git_commit')})")
        if entry.get("items_fingerprint") != first.get("items_fingerprint"):
            raise ShardMismatch(
                f"run {run_id!r}: {_name(entry)} ran other items than {_name(first)}: items fingerprint "
                f"{entry.get('items_fingerprint')} vs {first.get('items_fingerprint')} (other data, "
                "--samples, --seed, models or -k/-m selection)")
        differ = _settings_difference(entry.get("settings") or {}, first.get("settings") or {})
        if differ:
            raise ShardMismatch(f"run {run_id!r}: {_name(entry)} ran with other settings than {_name(first)}: "
                                + "; ".join(differ))


def merged_metadata(metadata: dict[str, Any], shards: list[dict[str, Any]], cases: int) -> dict[str, Any]:
    """The run's metadata as one run: the shards listed with their machines, cases counted once."""
    started = min(str(e.get("started") or "") for e in shards) or metadata.get("started")
    finished = max(str(e.get("finished") or "") for e in shards) or None
    hosts = sorted({str(e.get("hostname")) for e in shards})
    entries = [{k: v for k, v in e.items() if k not in ("settings", "backends")} for e in shards]
    return {**metadata, "started": started, "finished": finished, "cases": cases, "shard": None,
            "shards": entries, "hosts": hosts, "items_fingerprint": shards[0].get("items_fingerprint"),
            "code_fingerprint": shards[0].get("code_fingerprint"),
            # The store's run metadata is written when the first shard starts, before any model loads.
            "backends": merged_backends([e.get("backends") or {} for e in shards]) or metadata.get("backends") or {}}


def merged_backends(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The models every shard loaded, as one run's: processes added up, model hosts listed together
    (the summary's Model hosts table); the first shard's description of each model kept."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, data in part.items():
            known = merged.get(name)
            if known is None:
                merged[name] = {**data, "hosts": list(data.get("hosts") or [])}
                continue
            known["processes"] = int(known.get("processes") or 0) + int(data.get("processes") or 0)
            known["hosts"] += list(data.get("hosts") or [])
    for data in merged.values():
        if not data["hosts"]:
            del data["hosts"]
    return merged
