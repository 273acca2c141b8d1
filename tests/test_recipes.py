"""The recipes in recipes/ parse, and the variables each scheduler sets reach the shard selection.

Each recipe's own command runs (narrowed to the MMLU sample, `--collect-only`), with the
environment its scheduler would give each copy: the copies' cases are disjoint, cover the whole
run, and are the ones harness/run/shard.py assigns to their index.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import PROJECT

from harness.models.registry import load_registry
from harness.run.shard import shard_of

yaml = pytest.importorskip("yaml", reason="the recipe tests parse YAML with PyYAML (the dev extra)")

RECIPES = PROJECT / "recipes"
TARGET = "benchmarks/test_mmlu.py"  # the recipes run `benchmarks`; one suite keeps the test quick
_CASE = re.compile(r"^(benchmarks/\S+::\S+)$", re.M)


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment without any harness or scheduler variable, the venv first on PATH, a
    store in the test's folder, and the scheduler's variables given."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HARNESS_", "SLURM_", "PYTEST_")) and k != "JOB_COMPLETION_INDEX"}
    env["PATH"] = os.pathsep.join([str(tmp / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(PROJECT)
    env.update(extra)
    return env


def collected(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return set(_CASE.findall(result.stdout))


def assert_sharded(per_copy: dict[int, set[str]], whole: set[str]) -> None:
    count = len(per_copy)
    assert set().union(*per_copy.values()) == whole and sum(map(len, per_copy.values())) == len(whole)
    for index, cases in per_copy.items():
        assert cases and all(shard_of(case, count) == index for case in cases), index


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every case of the recipes' model on the target: the run the shards must add up to."""
    tmp = tmp_path_factory.mktemp("whole")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "--models", "served", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--models-file", str(RECIPES / "models.servers.toml"), "--store", str(tmp / "s.sqlite")],
        cwd=PROJECT, env=clean_env(tmp), capture_output=True, text=True, timeout=300)
    cases = collected(result)
    assert len(cases) == 32
    return cases


def test_the_models_file_lists_a_pool() -> None:
    [spec] = load_registry([RECIPES / "models.servers.toml"]).values()
    assert spec.name == "served" and len(spec.options["base_urls"]) == 2


def test_kubernetes_indexed_job(tmp_path: Path, whole: set[str]) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((RECIPES / "kubernetes-indexed-job.yaml").read_text())}
    job = docs["Job"]["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"] == 3
    [container] = job["template"]["spec"]["containers"]
    env: dict[str, Any] = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert int(env["HARNESS_SHARD_COUNT"]) == job["completions"]  # the count Kubernetes does not pass
    assert env["HARNESS_RESUME"] == env["HARNESS_RUN_ID"]
    assert env["HARNESS_STORE"] == {"secretKeyRef": {"name": "harness-store", "key": "uri"}}
    # The models file is the ConfigMap's key, where the volume mounts it.
    [mount] = container["volumeMounts"]
    [volume] = job["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"] and mount["name"] == volume["name"]
    [(key, text)] = docs["ConfigMap"]["data"].items()
    assert env["HARNESS_MODELS_FILE"] == f"{mount['mountPath']}/{key}"
    models = tmp_path / key
    models.write_text(text)
    assert list(load_registry([models])) == ["served"]
    env.update(HARNESS_MODELS_FILE=str(models), HARNESS_STORE=str(tmp_path / "store.sqlite"))
    command = [TARGET if part == "benchmarks" else part for part in container["command"]]
    assert command[:3] == ["python", "-m", "pytest"]
    per_pod = {}
    for index in range(job["completions"]):  # what Kubernetes sets in pod `index`
        result = subprocess.run([sys.executable, *command[1:], "--collect-only", "-q"], cwd=PROJECT,
                                env=clean_env(tmp_path, **env, JOB_COMPLETION_INDEX=str(index)),
                                capture_output=True, text=True, timeout=300)
        per_pod[index] = collected(result)
    assert_sharded(per_pod, whole)


def test_slurm_array_script(tmp_path: Path, whole: set[str]) -> None:
    script = RECIPES / "slurm-array.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    found = re.search(r"^#SBATCH --array=(\d+)-(\d+)$", text, re.M)
    assert found is not None
    tasks = range(int(found.group(1)), int(found.group(2)) + 1)
    # srun runs its command in the allocation; here, in place.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (tmp_path / "bin" / "srun").chmod(0o755)
    per_task = {}
    for task in tasks:  # what SLURM sets in array task `task`
        env = clean_env(tmp_path, SLURM_ARRAY_JOB_ID="4242", SLURM_ARRAY_TASK_ID=str(task),
                        SLURM_ARRAY_TASK_MIN=str(tasks[0]), SLURM_ARRAY_TASK_COUNT=str(len(tasks)),
                        SLURM_CPUS_PER_TASK="2", HARNESS_STORE=str(tmp_path / "store.sqlite"), BENCH_TARGET=TARGET)
        result = subprocess.run(["bash", str(script), "--collect-only", "-q"], cwd=PROJECT, env=env,
                                capture_output=True, text=True, timeout=300)
        per_task[task - tasks[0]] = collected(result)
    assert_sharded(per_task, whole)
    # Without a store the script stops at once, naming the variable.
    result = subprocess.run(["bash", str(script)], cwd=PROJECT, env=clean_env(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "set HARNESS_STORE to the shared mongodb:// URI" in result.stderr


def _expand(text: str, values: dict[str, str]) -> str:
    """GitHub Actions' ${{ expr }} for the expressions the recipe uses; any other is an error."""
    def one(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression in values, f"the test does not know ${{{{ {expression} }}}}"
        return values[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


def test_ci_matrix(tmp_path: Path, whole: set[str]) -> None:
    workflow = yaml.safe_load((RECIPES / "ci-matrix.yml").read_text())
    shards = workflow["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(len(shards)))
    expressions = {"github.run_id": "777", "secrets.HARNESS_STORE": str(tmp_path / "store.sqlite"),
                   "strategy.job-total": str(len(shards))}
    env = {k: _expand(str(v), expressions) for k, v in workflow["env"].items()}
    assert env["HARNESS_RUN_ID"] == env["HARNESS_RESUME"] == "gh-777"
    steps = workflow["jobs"]["shard"]["steps"]
    [run] = [s["run"] for s in steps if s.get("name", "").startswith("run shard")]
    per_job = {}
    for shard in shards:  # what the matrix expands into job `shard`
        command = _expand(run, {**expressions, "matrix.shard": str(shard)})
        assert f"--shard {shard}/{len(shards)}" in command
        command = command.replace(" benchmarks ", f" {TARGET} ") + " --collect-only -q"
        result = subprocess.run(["bash", "-c", command], cwd=PROJECT, env=clean_env(tmp_path, **env),
                                capture_output=True, text=True, timeout=300)
        per_job[shard] = collected(result)
    assert_sharded(per_job, whole)
    # The endpoints step puts the servers' URLs into the models file.
    [pool] = [s for s in steps if s.get("name") == "the servers of the pool"]
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "models.servers.toml").write_text((RECIPES / "models.servers.toml").read_text())
    urls = "http://a:8080/v1,http://b:8080/v1,http://c:8080/v1"
    subprocess.run(["bash", "-c", pool["run"]], cwd=tmp_path, env={**clean_env(tmp_path), "E": urls}, check=True)
    [spec] = load_registry([tmp_path / "recipes" / "models.servers.toml"]).values()
    assert spec.options["base_urls"] == urls.split(",")
    # The merge job reads the run back from the store under the same run id.
    merge = " ".join(s.get("run", "") for s in workflow["jobs"]["merge"]["steps"])
    assert 'harness report --store "$HARNESS_STORE" "$HARNESS_RUN_ID"' in merge
    assert workflow["jobs"]["merge"]["needs"] == "shard"
