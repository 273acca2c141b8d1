"""MBPP (Austin et al., 2021): short Python programming tasks, each checked by three asserts.

Data comes from the authors' JSON lines (task_id, text, code, test_list, test_setup_code,
challenge_test_list): a folder holding them (one file, or one per split), a single file, or
Hugging Face (`hf:mbpp` for the full config, `hf:mbpp@sanitized`; any dataset id before the @). The standard
splits go by
task_id: 1-10 few-shot prompts, 11-510 test, 511-600 validation, 601-974 train.

The prompt is the paper's (and lm-evaluation-harness's): the task text with its tests, so the
function name is known, answered between [BEGIN] and [DONE]; few-shot examples are tasks 2, 3
and 4 of the prompt split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.settings import option
from harness.suites.base import DataError, Item, json_lines, sample
from harness.suites.code import CodeTask, extract_code, function_under_test
from harness.suites.unit import LoadContext, Suite

SPLITS: dict[str, tuple[int, int]] = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600),
                                      "train": (601, 974)}
SHOT_IDS = (2, 3, 4)  # the paper's few-shot examples
STYLES = ("base", "chat")
STOPS = ("[DONE]",)
HF_DEFAULT = "mbpp"
SUITE_NAME = "mbpp"  # also the suite key of its tasks in a store
CHAT_INSTRUCTION = "Write the Python function in a ```python code block, with no test code."


def load(source: str | Path, *, split: str = "test", samples: int | None = None, seed: int = 0) -> list[Item]:
    """Items of one split, in task_id order; `samples` draws the same seeded sample for every model."""
    if split not in SPLITS:
        raise ValueError(f"unknown MBPP split {split!r}; expected one of {', '.join(SPLITS)}")
    if isinstance(source, str) and (source == "hf" or source.startswith("hf:")):
        rows = list(_load_hf(source.partition(":")[2] or HF_DEFAULT, split))
    else:
        rows = list(_read_source(Path(source), split))
    return select(rows, source, split, samples, seed)


def select(rows: Iterable[Item], source: str | Path, split: str, samples: int | None = None,
           seed: int = 0) -> list[Item]:
    """The rows of one split, in task_id order, then the seeded sample."""
    low, high = SPLITS[split]
    items = sorted((item for item in rows if low <= item.input["task_id"] <= high),
                   key=lambda item: item.input["task_id"])
    if not items:
        raise DataError(source, f"no tasks of split {split!r} (task_id {low}-{high})")
    return sample(items, samples, seed)


def few_shot(source: str | Path, k: int = 3) -> list[Item]:
    """The paper's few-shot examples (tasks 2, 3, 4, then the rest of the prompt split)."""
    if k <= 0:
        return []
    return pick_shots(load(source, split="prompt"), k, source)


def pick_shots(shots: Sequence[Item], k: int, source: str | Path) -> list[Item]:
    """Tasks 2, 3, 4 first, then the rest of the prompt split, k of them."""
    if k <= 0:
        return []
    ordered = sorted(shots, key=lambda s: (s.input["task_id"] not in SHOT_IDS, s.input["task_id"]))
    if len(ordered) < k:
        raise DataError(source, f"asked for {k} shots, the prompt split has {len(ordered)}")
    return ordered[:k]


def _task_block(item: Item) -> str:
    tests = "\n".join(item.input["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {item.input['text']} "
            f"Your code should pass these tests:\n\n{tests}\n")


def prompt(item: Item, shots: Sequence[Item] = (), style: str = "base") -> str:
    """base: shots and the task, ending in "[BEGIN]" (the answer ends at "[DONE]").
    chat: the task and its tests with an instruction to answer in a code block."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {STYLES}")
    if style == "chat":
        return _task_block(item) + "\n" + CHAT_INSTRUCTION
    text = "".join(f"{_task_block(shot)}[BEGIN]\n{shot.reference.rstrip()}\n[DONE]\n" for shot in shots)
    return text + _task_block(item) + "[BEGIN]\n"


def router_instructions() -> str:
    """The delegation router's system message for MBPP (the large model's brief)."""
    return ("You write Python functions that pass the given tests. You may call the tool ask_small_model "
            "to hand the task or a part of it to a small, cheap coding model; its code can be wrong, so "
            "check it. End with the complete function in one ```python code block, with no test code.")


def delegated_prompt(text: str, shots: Sequence[Item] = (), style: str = "base") -> str:
    """The small model's prompt for a task the router hands it: the suite's own prompt form (the
    shots and "[BEGIN]" for a base model, the code-block instruction for a chat model)."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {STYLES}")
    block = f"You are an expert Python programmer, and here is your task: {text.strip()}\n"
    if style == "chat":
        return block + "\n" + CHAT_INSTRUCTION
    examples = "".join(f"{_task_block(shot)}[BEGIN]\n{shot.reference.rstrip()}\n[DONE]\n" for shot in shots)
    return examples + block + "[BEGIN]\n"


def program(item: Item, code: str, challenge: bool = False) -> str:
    """The solution, then the setup code (it may use the solution's classes), then the asserts."""
    tests = list(item.input["test_list"]) + (list(item.input["challenge_test_list"]) if challenge else [])
    parts = [code.rstrip(), item.input["test_setup_code"].rstrip(), "\n".join(tests)]
    return "\n\n".join(part for part in parts if part) + "\n"


def task(item: Item, shots: Sequence[Item] = (), style: str = "base", max_tokens: int = 256) -> CodeTask:
    return CodeTask(item_id=item.id, prompt=prompt(item, shots, style), stops=STOPS, reference=item.reference,
                    program=lambda answer: program(item, extract_code(answer, STOPS)), max_tokens=max_tokens)


# -- reading the data ---------------------------------------------------------------------------


def _read_source(path: Path, split: str) -> Iterable[Item]:
    if path.is_file():
        return _read_jsonl(path)
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    own = path / f"{split}.jsonl"
    # One file per split (as in ../shared/datasets/mbpp): read only that one. Otherwise every
    # .jsonl in the folder (the authors' single mbpp.jsonl), filtered by task_id below.
    files = [own] if own.is_file() else sorted(path.glob("*.jsonl"))
    if not files:
        raise DataError(path, "no .jsonl files")
    return (item for file in files for item in _read_jsonl(file))


def _read_jsonl(path: Path) -> Iterable[Item]:
    seen: set[int] = set()
    for line_number, row in json_lines(path):
        item = _item(row, path, line_number)
        if item.input["task_id"] in seen:
            raise DataError(path, f"task_id {item.input['task_id']} appears twice", line=line_number,
                            field="task_id")
        seen.add(item.input["task_id"])
        yield item


def _field(row: dict[str, Any], name: str, kind: type, path: Path | str, line: int | None,
           default: Any = None) -> Any:
    value = row.get(name, default)
    if value is None:
        raise DataError(path, "missing", line=line, field=name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(path, f"expected {kind.__name__}, found {type(value).__name__}", line=line, field=name)
    return value


def _item(row: dict[str, Any], path: Path | str, line: int | None) -> Item:
    task_id = _field(row, "task_id", int, path, line)
    text = _field(row, "text", str, path, line)
    code = _field(row, "code", str, path, line)
    tests = _field(row, "test_list", list, path, line)
    setup = _field(row, "test_setup_code", str, path, line, default="")
    challenge = _field(row, "challenge_test_list", list, path, line, default=[])
    for name, values in (("test_list", tests), ("challenge_test_list", challenge)):
        if not all(isinstance(t, str) for t in values):
            raise DataError(path, "expected a list of strings", line=line, field=name)
    if not tests:
        raise DataError(path, "no tests", line=line, field="test_list")
    if not text.strip():
        raise DataError(path, "empty task text", line=line, field="text")
    # The authors' files use Windows line ends; a program is assembled with "\n".
    normalize = lambda s: s.replace("\r\n", "\n")  # noqa: E731
    tests = [normalize(t) for t in tests]
    return Item(
        id=str(task_id),
        input={"task_id": task_id, "text": text.strip(), "test_list": tests,
               "test_setup_code": normalize(setup), "challenge_test_list": [normalize(t) for t in challenge],
               "function": function_under_test(tests)},
        reference=normalize(code),
        meta={"file": str(path), "line": line},
    )


def _load_hf(name: str, split: str) -> Iterable[Item]:
    """`mbpp` (config full) or `mbpp@sanitized`; the sanitized config names its fields differently."""
    try:
        from datasets import load_dataset  # heavy and optional: only this path needs it
    except ImportError as error:
        raise ImportError(f"loading hf:{name} needs the 'datasets' package (pip install datasets)") from error
    dataset, _, config = name.partition("@")
    rows: Any = load_dataset(dataset, config or "full", split=split)
    for index, row in enumerate(rows):
        row = dict(row)
        if "prompt" in row and "text" not in row:  # sanitized: prompt, test_imports
            row["text"] = row.pop("prompt")
            row["test_setup_code"] = "\n".join(row.pop("test_imports", None) or [])
        yield _item(row, f"hf:{name} {split} row {index}", None)


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "mbpp"


@dataclass(frozen=True)
class Options:
    data: str | None = option("MBPP data: a folder or file of the authors' JSON lines, hf:mbpp / "
                              "hf:mbpp@sanitized, or a mongodb:// store holding the tasks `harness "
                              "import-tasks --suite mbpp` wrote", shown_default="the project's sample in fixtures/mbpp")
    split: str = option("MBPP split by task_id: test (11-510), validation, train or prompt", "test",
                        choices=("test", "validation", "train", "prompt"))
    shots: int = option("MBPP few-shot examples for base models, tasks 2, 3, 4", 3, minimum=0)

    @property
    def source(self) -> str:
        return self.data or str(SAMPLE)


def is_store(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("mongodb://", "mongodb+srv://"))


def stored(documents: Iterable[dict[str, Any]]) -> list[Item]:
    """Items from the documents `harness import-tasks` wrote (store/mongo.py, task_document)."""
    return [Item(id=str(d["item_id"]), input=dict(d["input"]), reference=d["reference"],
                 meta=dict(d.get("meta") or {})) for d in documents]


def _load(options: Options, context: LoadContext) -> list[Item]:
    if is_store(options.source):  # the tasks `harness import-tasks` put there: import once, then work from it
        if context.tasks is None:
            raise DataError(options.source, "reading tasks from a store needs the run's store reader")
        documents = context.tasks(options.source, SUITE_NAME, options.split)
        return select(stored(documents), options.source, options.split, context.samples, context.seed)
    return load(options.source, split=options.split, samples=context.samples, seed=context.seed)


SUITE = Suite(SUITE_NAME, load=_load, options=Options, reports=("harness.report.passk",),
              description="MBPP: short Python tasks run against their asserts")
