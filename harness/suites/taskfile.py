"""Tasks from a file, no Python: a TOML or YAML file declares a suite (README: "Task files").

    name = "capitals"                      # the suite's name: records, markers, reports
    [data]
    path = "capitals.csv"                  # CSV (a header row, or `columns`) or JSONL; or hf:NAME[@CONFIG][:SPLIT]
    id = "capital-{index}"                 # item ids: a template over the row ({index} 0-based, {number} 1-based)
    reference = "answer"                   # the field holding the reference answer
    [prompt]
    template = "Q: {question}\\nA:"         # {field} placeholders; {shots} where the examples go
    [mode]
    kind = "generate"                      # or loglikelihood, over `choices`
    [answer]
    extract = "regex"                      # none, regex, number, choice or json
    pattern = "(\\\\w+)"
    score = "exact"                        # exact, numeric, contains or extraction

Every key, its meaning and its default is in KEYS below; harness/suites/task.py gives a Task its
behaviour (items, prompts, answers, scores). A file with an error stops the run naming the file,
the key and what the key takes. Relative paths are relative to the task file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES = (".toml", ".yaml", ".yml")
MODES = ("loglikelihood", "generate")
EXTRACTORS = ("none", "regex", "number", "choice", "json")
SCORERS = ("exact", "numeric", "contains", "extraction")
PICKS = ("first", "sample")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# section -> key -> what it takes (the message of an error about it)
KEYS: dict[str, dict[str, str]] = {
    "": {"name": "the suite's name: letters, digits and underscores",
         "description": "a line saying what the task measures", "data": "a table", "prompt": "a table",
         "mode": "a table", "answer": "a table"},
    "data": {"path": "the data file: a .csv or .jsonl path, or hf:NAME[@CONFIG][:SPLIT]",
             "columns": "the CSV's column names, for a CSV without a header row",
             "id": "a template of item ids over the row's fields, {index} (0-based) and {number} (1-based)",
             "reference": "the field holding the reference answer (not with extract = \"json\")",
             "tags": "fields whose values every record carries in record.tags",
             "constants": "a table of fields added to every row",
             "strip": "true: strip the whitespace around every cell (default false)",
             "splits": "a table of named data files (few-shot examples come from one)",
             "derive": "an array of tables: fields derived from others by regex"},
    "derive": {"name": "the new field's name", "from": "the field it is derived from",
               "search": "a regex: the value is its group 1 (or the whole match)",
               "remove": "a regex: every match is removed", "number": "true: the value is a normalized number",
               "strip": "true (default): strip surrounding whitespace"},
    "prompt": {"template": "the prompt: {field} placeholders, {shots} for the examples",
               "template_file": "a file holding the template", "chat_template": "the prompt for chat models",
               "shot": "the template of one example, over the example's fields",
               "shots": "how many examples (an integer >= 0)", "shots_split": "the named split they come from",
               "pick": "first (the split's first rows) or sample (a seeded sample)",
               "seed": "the seed of `pick = \"sample\"` (an integer)"},
    "mode": {"kind": "loglikelihood (score each of `choices`) or generate",
             "choices": "the continuations scored by log-likelihood", "labels": "the prediction for each choice",
             "max_tokens": "most tokens of an answer (an integer >= 1)",
             "stop": "strings that end a base model's answer"},
    "answer": {"extract": "none, regex, number (the last or stated number), choice (an option letter) or json",
               "pattern": "the regex of extract = \"regex\": group 1, or the group named answer",
               "fields": "the JSON answer's fields (extract = \"json\"); their reference is the row's columns",
               "score": "exact, numeric, contains, or extraction (every JSON field exact, as the extraction suite)"},
}


class TaskError(ValueError):
    """A bad task file: the message names the file, the key and what the key takes."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path, self.key = path, key


@dataclass(frozen=True)
class Derive:
    name: str
    source: str
    search: re.Pattern[str] | None = None
    remove: re.Pattern[str] | None = None
    number: bool = False
    strip: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """A task file, read and checked."""

    path: Path
    name: str
    description: str
    data: str  # a resolved path, or hf:...
    columns: tuple[str, ...] | None
    id_template: str
    reference: str
    tags: tuple[str, ...]
    constants: Mapping[str, str]
    strip: bool
    splits: Mapping[str, str]
    derive: tuple[Derive, ...]
    template: str
    chat_template: str | None
    shot: str
    shots: int
    shots_split: str | None
    pick: str
    seed: int
    mode: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    max_tokens: int
    stop: tuple[str, ...]
    extract: str
    pattern: re.Pattern[str] | None
    fields: tuple[str, ...]
    score: str


def task_files(paths: tuple[str, ...] | list[str], base: Path) -> list[Path]:
    """The task files named (files, or folders of *.toml / *.yaml / *.yml), relative to `base`."""
    found: list[Path] = []
    for given in paths:
        path = Path(given) if Path(given).is_absolute() else base / given
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise TaskError(path, "--task", "no such task file or folder")
    return found


def read(path: Path) -> TaskSpec:
    raw = _parse(path)
    _known(path, "", raw)
    name = _text(path, "name", raw.get("name"))
    if not _NAME.fullmatch(name):
        raise TaskError(path, "name", f"{name!r} is not {KEYS['']['name']}")
    data, prompt, mode, answer = (_table(path, key, raw.get(key)) for key in ("data", "prompt", "mode", "answer"))
    for section, table in (("data", data), ("prompt", prompt), ("mode", mode), ("answer", answer)):
        _known(path, section, table)
    folder = path.parent
    kind = _choice(path, "mode.kind", mode.get("kind", "generate"), MODES)
    choices = _texts(path, "mode.choices", mode.get("choices", []))
    labels = _texts(path, "mode.labels", mode.get("labels", [c.strip() for c in choices]))
    if kind == "loglikelihood" and not choices:
        raise TaskError(path, "mode.choices", "kind = \"loglikelihood\" needs " + KEYS["mode"]["choices"])
    if len(labels) != len(choices):
        raise TaskError(path, "mode.labels", f"{len(labels)} labels for {len(choices)} choices: one label per choice")
    extract = _choice(path, "answer.extract", answer.get("extract", "none"), EXTRACTORS)
    pattern = _regex(path, "answer.pattern", answer.get("pattern")) if "pattern" in answer else None
    if extract == "regex" and pattern is None:
        raise TaskError(path, "answer.pattern", "extract = \"regex\" needs " + KEYS["answer"]["pattern"])
    fields = _texts(path, "answer.fields", answer.get("fields", []))
    score = _choice(path, "answer.score", answer.get("score", "extraction" if extract == "json" else "exact"), SCORERS)
    if (extract == "json") != (score == "extraction") or (extract == "json" and not fields):
        raise TaskError(path, "answer.score", "extract = \"json\" goes with score = \"extraction\" and a list of "
                                              "fields, and score = \"extraction\" with extract = \"json\"")
    if "template_file" in prompt:
        template_path = _path(folder, _text(path, "prompt.template_file", prompt["template_file"]))
        try:
            template = Path(template_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TaskError(path, "prompt.template_file", f"cannot read {template_path}: {exc.strerror}") from None
    else:
        template = _text(path, "prompt.template", prompt.get("template"))
    splits = {str(k): _path(folder, _text(path, f"data.splits.{k}", v))
              for k, v in _table(path, "data.splits", data.get("splits", {})).items()}
    shots = _integer(path, "prompt.shots", prompt.get("shots", 0), 0)
    shots_split = prompt.get("shots_split")
    if shots and (not isinstance(shots_split, str) or shots_split not in splits):
        raise TaskError(path, "prompt.shots_split", f"{shots_split!r} is not a split of data.splits "
                                                    f"({', '.join(splits) or 'none declared'}); {shots} shots need one")
    spec = TaskSpec(
        path=path, name=name, description=str(raw.get("description", "")),
        data=_path(folder, _text(path, "data.path", data.get("path"))),
        columns=_texts(path, "data.columns", data["columns"]) if "columns" in data else None,
        id_template=_text(path, "data.id", data.get("id", "{index}")),
        # extract = "json": the reference is the JSON of the answer's fields, from their columns
        reference=_text(path, "data.reference", data.get("reference")) if extract != "json" else "",
        tags=_texts(path, "data.tags", data.get("tags", [])),
        constants={str(k): str(v) for k, v in _table(path, "data.constants", data.get("constants", {})).items()},
        strip=_flag(path, "data.strip", data.get("strip", False)),
        splits=splits, derive=_derive(path, data.get("derive", [])),
        template=template, chat_template=_text(path, "prompt.chat_template", prompt["chat_template"])
        if "chat_template" in prompt else None,
        shot=_text(path, "prompt.shot", prompt["shot"]) if "shot" in prompt else "", shots=shots,
        shots_split=shots_split if isinstance(shots_split, str) else None,
        pick=_choice(path, "prompt.pick", prompt.get("pick", "first"), PICKS),
        seed=_integer(path, "prompt.seed", prompt.get("seed", 0), 0),
        mode=kind, choices=choices, labels=labels,
        max_tokens=_integer(path, "mode.max_tokens", mode.get("max_tokens", 256), 1),
        stop=_texts(path, "mode.stop", mode.get("stop", [])),
        extract=extract, pattern=pattern, fields=fields, score=score,
    )
    if shots and not spec.shot:
        raise TaskError(path, "prompt.shot", f"{shots} shots need {KEYS['prompt']['shot']}")
    return spec


# -- reading and checking values ------------------------------------------------------------------
def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskError(path, "(file)", f"cannot read: {exc.strerror}") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TaskError(path, "(file)", f"not valid TOML: {exc}") from None
    try:
        import yaml  # optional: only YAML task files need it (the `yaml` extra)
    except ImportError:
        raise TaskError(path, "(file)", "YAML task files need PyYAML: pip install 'llm-bench-harness[yaml]'") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaskError(path, "(file)", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TaskError(path, "(file)", "a task file is a mapping of keys (name, data, prompt, mode, answer)")
    return data


def _known(path: Path, section: str, table: Mapping[str, Any]) -> None:
    unknown = sorted(set(table) - set(KEYS[section]))
    if unknown:
        where = f"{section}.{unknown[0]}" if section else unknown[0]
        raise TaskError(path, where, f"unknown key; {section or 'the top level'} takes "
                                     f"{', '.join(sorted(KEYS[section]))}")


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TaskError(path, key, f"expected a table, found {type(value).__name__}")
    return dict(value)


def _what(key: str) -> str:
    section, _, name = key.rpartition(".")
    return KEYS.get(section.split(".")[-1] if section else "", {}).get(name, "a value")


def _text(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TaskError(path, key, f"{'missing' if value is None else repr(value)}: takes {_what(key)} (a string)")
    return value


def _texts(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskError(path, key, f"{value!r}: takes {_what(key)} (a list of strings)")
    return tuple(value)


def _integer(path: Path, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TaskError(path, key, f"{value!r}: takes {_what(key)}")
    return value


def _flag(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TaskError(path, key, f"{value!r}: takes {_what(key)}")
    return value


def _choice(path: Path, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise TaskError(path, key, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _regex(path: Path, key: str, value: Any) -> re.Pattern[str]:
    try:
        return re.compile(_text(path, key, value), re.MULTILINE)
    except re.error as exc:
        raise TaskError(path, key, f"not a valid regular expression: {exc}") from None


def _path(folder: Path, given: str) -> str:
    return given if given.startswith("hf:") or Path(given).is_absolute() else str(folder / given)


def _derive(path: Path, value: Any) -> tuple[Derive, ...]:
    if not isinstance(value, list):
        raise TaskError(path, "data.derive", f"takes {KEYS['data']['derive']}")
    found = []
    for index, entry in enumerate(value):
        key = f"data.derive[{index}]"
        table = _table(path, key, entry)
        unknown = sorted(set(table) - set(KEYS["derive"]))
        if unknown:
            raise TaskError(path, f"{key}.{unknown[0]}", f"unknown key; takes {', '.join(sorted(KEYS['derive']))}")
        found.append(Derive(
            name=_text(path, f"{key}.name", table.get("name")), source=_text(path, f"{key}.from", table.get("from")),
            search=re.compile(_text(path, f"{key}.search", table["search"]), re.DOTALL) if "search" in table else None,
            remove=re.compile(_text(path, f"{key}.remove", table["remove"]), re.DOTALL) if "remove" in table else None,
            number=bool(table.get("number", False)), strip=bool(table.get("strip", True))))
    return tuple(found)
