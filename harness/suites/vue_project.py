"""The Vue suite's real tools: a throwaway copy of the target project, vue-tsc, and the SFC parser.

A model's component is never written into the fixture project itself: each answer gets its own
copy (node_modules linked, not copied), so nothing needs restoring and parallel runs don't collide.
Paths a model names are confined to that copy; anything that resolves outside it is refused.
The Node tools come from the fixture's own package-lock.json: `npm ci --prefix fixtures/vue/project`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vue"
INSTALL_HINT = "run npm ci --prefix fixtures/vue/project"
# Where a model may write: the sources, not the project's configuration (a tsconfig that turns
# strict mode off would make any answer "compile").
WRITABLE = "src"
MAX_READ_CHARS = 100_000
MAX_WRITE_CHARS = 200_000
# vue-tsc --pretty false: `src/App.vue(12,5): error TS2322: Type 'string' is not ...`
_ERROR_LINE = re.compile(r"^(?P<file>.+?)\((?P<line>\d+),(?P<column>\d+)\): "
                         r"error (?P<code>TS\d+): (?P<message>.*)$")


class NodeToolsMissing(RuntimeError):
    """Node.js or the fixture project's node_modules is missing; the message says how to install."""


class PathRefused(ValueError):
    """A path outside the project copy (or outside what may be written there)."""


@dataclass(frozen=True)
class CompileError:
    file: str
    line: int
    column: int
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TypeCheck:
    """One vue-tsc run over a project copy."""

    passed: bool
    returncode: int
    seconds: float
    output: str
    errors: list[CompileError] = field(default_factory=list)

    def report(self, limit: int = 4000) -> str:
        """What the model is told: a pass, or vue-tsc's own error lines (cut at `limit`)."""
        if self.passed:
            return "vue-tsc: no type errors."
        text = self.output.strip() or f"vue-tsc failed with exit code {self.returncode} and printed nothing"
        head = f"vue-tsc found {len(self.errors)} error(s):\n" if self.errors else "vue-tsc failed:\n"
        return head + (text if len(text) <= limit else text[:limit] + "\n... (cut)")


def parse_errors(output: str) -> list[CompileError]:
    """vue-tsc's error lines; indented continuation lines join the message before them."""
    errors: list[CompileError] = []
    for line in output.splitlines():
        match = _ERROR_LINE.match(line)
        if match:
            errors.append(CompileError(match["file"], int(match["line"]), int(match["column"]),
                                       match["code"], match["message"]))
        elif errors and line.startswith(" ") and line.strip():
            last = errors[-1]
            errors[-1] = CompileError(last.file, last.line, last.column, last.code,
                                      f"{last.message} {line.strip()}")
    return errors


class VueProject:
    """The fixture project (read-only) and the Node tools installed in it."""

    def __init__(self, root: Path = FIXTURES / "project", parser: Path = FIXTURES / "parse_sfc.mjs",
                 *, timeout_s: float = 180.0, keep_failed: bool = False) -> None:
        self.root = root.resolve()
        self.keep_failed = keep_failed  # failing workspaces stay on disk (--keep-failed)
        self.parser = parser.resolve()
        self.timeout_s = timeout_s
        self.node = shutil.which("node")

    @property
    def vue_tsc(self) -> Path:
        return self.root / "node_modules" / "vue-tsc" / "bin" / "vue-tsc.js"

    def check_installed(self) -> None:
        if self.node is None:
            raise NodeToolsMissing("Node.js is not installed (the Vue suite runs vue-tsc); "
                                   f"install it, then {INSTALL_HINT}")
        for needed in (self.vue_tsc, self.root / "node_modules" / "@vue" / "compiler-sfc"):
            if not needed.exists():
                raise NodeToolsMissing(f"{needed} not found: {INSTALL_HINT}")

    def workspace(self) -> Workspace:
        self.check_installed()
        return Workspace(self)

    def facts(self, paths: list[Path]) -> list[dict[str, Any]]:
        """The parser's facts about each component (see fixtures/vue/parse_sfc.mjs)."""
        self.check_installed()
        assert self.node is not None
        done = subprocess.run([self.node, str(self.parser), *map(str, paths)], check=False,
                              capture_output=True, text=True, timeout=self.timeout_s)
        if done.returncode != 0:
            problem = done.stderr.strip()[-2000:]
            raise RuntimeError(f"{self.parser.name} failed ({done.returncode}): {problem}")
        return json.loads(done.stdout)


class Workspace:
    """A temporary copy of the project; `with project.workspace() as ws:` removes it afterwards."""

    def __init__(self, project: VueProject) -> None:
        self.project = project
        self.root = Path(tempfile.mkdtemp(prefix="harness-vue-")).resolve()
        shutil.copytree(project.root, self.root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("node_modules", "dist", "*.tsbuildinfo"))
        # A link, not a copy: 80 MB of packages, read-only here. Paths through it resolve
        # outside the copy, so the confinement below refuses them as well.
        os.symlink(project.root / "node_modules", self.root / "node_modules", target_is_directory=True)
        self.version = 0  # bumped by every write; a type check is reused while it stands
        self.keep = False  # set by grading under --keep-failed: close() leaves the copy
        self._checked: tuple[int, TypeCheck] | None = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path of `path` (relative to the copy's root), refused if it leaves the copy."""
        if not isinstance(path, str) or not path.strip():
            raise PathRefused("the path must be a non-empty string relative to the project root")
        target = (self.root / path).resolve()  # an absolute `path` replaces the root: refused below
        if not target.is_relative_to(self.root):
            raise PathRefused(f"{path!r} is outside the project")
        if write and not target.is_relative_to(self.root / WRITABLE):
            raise PathRefused(f"{path!r}: only files under {WRITABLE}/ may be written")
        return target

    def read(self, path: str) -> str:
        target = self.resolve(path)
        if target.is_dir():
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
            return "\n".join(entries)
        if not target.is_file():
            raise FileNotFoundError(f"{path!r} does not exist")
        text = target.read_text(encoding="utf-8", errors="replace")
        return text if len(text) <= MAX_READ_CHARS else text[:MAX_READ_CHARS] + "\n... (cut)"

    def write(self, path: str, text: str) -> int:
        target = self.resolve(path, write=True)
        if not isinstance(text, str):
            raise PathRefused("the content must be a string")
        if len(text) > MAX_WRITE_CHARS:
            raise PathRefused(f"content of {len(text)} characters is over the limit of {MAX_WRITE_CHARS}")
        if target.is_dir():
            raise PathRefused(f"{path!r} is a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self.version += 1
        return len(text)

    def type_check(self) -> TypeCheck:
        """vue-tsc --noEmit over the copy; the result of the last run while nothing was written."""
        if self._checked is not None and self._checked[0] == self.version:
            return self._checked[1]
        node = self.project.node
        assert node is not None
        start = time.perf_counter()
        try:
            command = [node, str(self.project.vue_tsc), "--noEmit", "--pretty", "false", "-p",
                       "tsconfig.json"]
            done = subprocess.run(command, check=False, cwd=self.root, capture_output=True, text=True,
                                  timeout=self.project.timeout_s, env={**os.environ, "NO_COLOR": "1"})
            output = (done.stdout + done.stderr).replace(str(self.root) + os.sep, "")
            result = TypeCheck(done.returncode == 0, done.returncode, time.perf_counter() - start,
                               output, parse_errors(output))
        except subprocess.TimeoutExpired:
            result = TypeCheck(False, -1, time.perf_counter() - start,
                               f"vue-tsc ran past {self.project.timeout_s:g} s and was stopped")
        self._checked = (self.version, result)
        return result
