"""The sandbox's warm worker: runs inside the jail, forks one limited child per program.

Started once per Sandbox (`python -S -c <this file's source>`, see harness/sandbox/__init__.py), it imports
the standard library only and never the harness: inside the jail the checkout is not there. It
reads requests on fd 0 and answers on fd 1 (length-prefixed JSON); its own stderr is the jail's
log, which the harness reads, never the program.

Per program: a fresh child (own session, rlimits, stdout and stderr on memfds this worker
created, stdin /dev/null, the worker's fds closed) executes the program; afterwards every other
process in reach is killed and reaped and the private folders are emptied.

Unforgeable outcome: before the program starts, the worker sends a per-run secret over a socket
only the child holds, and the runner takes it off the socket; when the program's last statement
(its tests) has run, the runner sends it back. Nothing else may arrive on that socket, and an exit
status of 0 without the secret is a failure: exit handlers, sys.exit, os._exit, signals, text on
stderr, or messages a program writes to the socket itself never make a pass. The known limit:
the runner shares the program's process, so a program that walks the runner's frames (or the
heap) finds the secret; that is the same reach that lets a program read the expected values off
its tests' frames, which no in-process runner prevents.
"""

from __future__ import annotations

import builtins
import json
import linecache
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import time
import traceback
import types

PROGRAM = "program.py"
LIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "fsize": resource.RLIMIT_FSIZE,
          "nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE}


def _frame_read(fd: int) -> dict | None:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("!I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _frame_write(fd: int, message: dict) -> None:
    body = json.dumps(message).encode()
    os.write(fd, struct.pack("!I", len(body)) + body)


# -- the child ----------------------------------------------------------------------------------


def _child(request: dict, out: int, err: int, channel: int) -> None:
    os.setsid()  # its own process group: a killpg of its own cannot reach the worker
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.dup2(channel, 3)
    os.closerange(4, 1 << 16)  # the worker's request and answer pipes among them
    try:  # the memory limit's OOM killer takes the program, never the worker
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    os.chdir(request["workdir"])
    for name, value in request["rlimits"].items():
        try:
            resource.setrlimit(LIMITS[name], (value, value))
        except (ValueError, OSError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _run(request["program"])


def _run(program: str) -> None:
    # The runner keeps its own references: a program that patches `os` changes nothing here.
    write, read, fstat, exit_now = os.write, os.read, os.fstat, os._exit
    secret = read(3, 64)  # before the program runs: from here on the channel holds nothing to take
    before = fstat(3)
    write(3, b"go")  # the setup is done: what happens from here on is the program's doing
    module = types.ModuleType("__main__")
    module.__file__ = PROGRAM
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    sys.argv = [PROGRAM]
    linecache.cache[PROGRAM] = (len(program), None, program.splitlines(True), PROGRAM)
    try:
        exec(compile(program, PROGRAM, "exec"), module.__dict__)  # noqa: S102 (running it is the point)
        # As the interpreter does at exit: wait for the threads that are not daemons.
        threads = sys.modules.get("threading")
        if threads is not None:
            threads._shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException as error:  # noqa: BLE001 (SystemExit too: an early exit is not a finished program)
        try:
            if isinstance(error, SystemExit):
                print(f"SystemExit: the program exited ({error.code!r}) before its end", file=sys.stderr)
            else:
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            exit_now(1)
    now = fstat(3)
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        os.write(2, b"\nRuntimeError: the program replaced the runner's channel\n")
        exit_now(1)
    write(3, secret)
    exit_now(0)


# -- the worker ---------------------------------------------------------------------------------


def _descendants(root: int) -> list[int]:
    """Processes below `root` (orphans come back to the worker: it is PID 1 or a subreaper)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
                parents[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: list[int] = []
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found.extend(frontier)
    return found


def _kill_everything(own_namespace: bool) -> None:
    """Kill and reap every process the program left: daemons, setsid escapees, fork bombs."""
    for _ in range(1000):
        if own_namespace:  # PID 1 of its namespace: kill(-1) reaches all the others, and only them
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            remaining = True
        else:
            victims = _descendants(os.getpid())
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            remaining = bool(victims)
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG if not own_namespace else 0)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
        if own_namespace and not reaped:
            return
        if not own_namespace and not remaining:
            return
        if not own_namespace:
            time.sleep(0.001)


def _read_output(fd: int, limit: int, tail: bool) -> tuple[str, bool]:
    size = os.fstat(fd).st_size
    start = max(0, size - limit) if tail else 0
    data = os.pread(fd, limit, start)
    return data.decode("utf-8", errors="replace"), size > limit


def _wipe(folders: list[str], keep: list[str]) -> None:
    """Empty the private folders, but not the way to the interpreter bound inside them."""
    for folder in folders:
        if os.path.islink(folder):  # a program that swapped its folder for a link: never follow it
            continue
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(folder, name)
            if path in folders or any(k == path or k.startswith(path + "/") for k in keep):
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass


def _serve_one(request: dict, own_namespace: bool) -> dict:
    out = os.memfd_create("stdout")
    err = os.memfd_create("stderr")
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            _child(request, out, err, theirs.fileno())
        finally:
            os._exit(70)
    theirs.close()
    secret = os.urandom(16).hex().encode()  # made after the fork: the child's memory never held it
    mine.send(secret)
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + request["timeout"]
    started, proof, tampered, timed_out = False, False, "", False

    def receive() -> bool | None:
        """Handle one message: None when none is waiting, False once every holder closed it."""
        nonlocal started, proof, tampered
        try:
            data = mine.recv(128)
        except BlockingIOError:
            return None
        except OSError:
            return False
        if data == b"go" and not started:
            started = True
        elif data == secret and started and not proof:
            proof = True
        elif data:
            tampered = "an unexpected message on the runner's channel"
        return bool(data)

    mine.setblocking(False)
    channel_open = True
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        watched: list[int] = [pidfd, mine.fileno()] if channel_open else [pidfd]
        ready = select.select(watched, [], [], remaining)[0]
        if mine.fileno() in ready and receive() is False:
            channel_open = False
        if pidfd in ready:
            break
    if timed_out:
        _kill_everything(own_namespace)
    try:
        _, status, usage = os.wait4(pid, 0)
    except ChildProcessError:  # reaped by the sweep above
        status, usage = 9, None
    wall = time.perf_counter() - start
    while channel_open:  # messages sent right before the exit
        handled = receive()
        if handled is None:
            break
        channel_open = handled
    _kill_everything(own_namespace)
    os.close(pidfd)
    mine.close()
    stdout, cut_out = _read_output(out, request["output_bytes"], tail=False)
    stderr, cut_err = _read_output(err, request["output_bytes"], tail=True)  # the traceback is last
    os.close(out)
    os.close(err)
    if request["wipe"]:
        _wipe(request["wipe"], request["keep"])
    return {"nonce": request["nonce"], "started": started, "status": status, "timed_out": timed_out,
            "proof": proof and not tampered, "tampered": tampered,
            "stdout": stdout, "stderr": stderr, "truncated": cut_out or cut_err, "wall_s": wall,
            "cpu_s": (usage.ru_utime + usage.ru_stime) if usage else 0.0,
            "max_rss_kb": usage.ru_maxrss if usage else None}


def main() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    # Not dumpable: a program of the same user can neither ptrace the worker nor open its pipes
    # to the harness through /proc/<pid>/fd (and so never write an answer of its own).
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    own_namespace = os.getpid() == 1
    if not own_namespace:  # orphans of the program come back here to be reaped and killed
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.chdir("/")  # the work folder is the program's; the worker holds nothing open in it
    _frame_write(1, {"ready": True, "uid": os.getuid(), "pid": os.getpid(),
                     "caps": _capabilities(), "no_new_privs": _no_new_privs()})
    while True:
        request = _frame_read(0)
        if request is None:
            return
        try:
            answer = _serve_one(request, own_namespace)
        except Exception:  # noqa: BLE001 (the worker's own failure: the harness reports a sandbox error)
            answer = {"nonce": request["nonce"], "error": traceback.format_exc()[-2000:]}
        _frame_write(1, answer)


def _status_field(name: str) -> str:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _capabilities() -> str:
    return _status_field("CapEff")


def _no_new_privs() -> bool:
    return _status_field("NoNewPrivs") == "1"


if __name__ == "__main__":
    main()
