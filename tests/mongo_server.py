"""A real MongoDB wire-protocol server for tests: nx-27017 on a free loopback port.

Importable (tests/ is on pythonpath): tests/store/conftest.py brings in its fixtures.

One server per test session (it starts in about a second); each test gets its own database, so
tests stay apart without restarting it. The server keeps its data in the session's temp folder
and is stopped (terminate, then kill) on teardown.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_MISSING = [name for name in ("pymongo", "nx_27017") if importlib.util.find_spec(name) is None]
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class MongoServer:
    host: str
    port: int
    log: Path

    def uri(self, database: str) -> str:
        return f"mongodb://{self.host}:{self.port}/{database}"


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_ping(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    import pymongo

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # it exited: most likely the port was taken meanwhile
        client: pymongo.MongoClient = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            time.sleep(0.05)
        finally:
            client.close()
    raise RuntimeError(f"nx-27017 did not answer a ping within {START_TIMEOUT_S:g} s; see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    if _MISSING:
        pytest.skip(f"the MongoDB store tests need {' and '.join(_MISSING)}: pip install -e '.[dev]'")
    folder = tmp_path_factory.mktemp("nx27017")
    log = folder / "server.log"
    for _attempt in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "nx_27017.nx_27017", "--host", "127.0.0.1", "--port", str(port),
                 "--data-dir", str(folder / "data"), "--log-file", str(folder / "nx.log"),
                 "--pid-file", str(folder / "nx.pid")],
                cwd=folder, stdout=output, stderr=subprocess.STDOUT,
            )
        try:
            if _wait_for_ping(process, port, log):
                break
        except BaseException:
            _stop(process)
            raise
    else:
        raise RuntimeError(f"nx-27017 would not start on a free port; see {log}")
    try:
        yield MongoServer("127.0.0.1", port, log)
    finally:
        _stop(process)


@pytest.fixture
def mongo_uri(mongo_server: MongoServer) -> str:
    """A URI of a database no other test uses, on the session's server."""
    return mongo_server.uri(f"t_{uuid.uuid4().hex[:12]}")
