"""Check a benchmark run's JUnit XML: one test case per case of the run, each with its properties.

    python .ci/check_junit.py reports/junit.xml reports/<run>

Every record in <run>/results.jsonl must have a <testcase> whose properties hold its status, its
figures (junit_properties in harness/core/record.py) and the full record (harness_record), and that
record must read back as a CaseRecord equal to the one in results.jsonl. Exit 1 with the reasons
otherwise.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.core.record import RECORD_KEY, CaseRecord
from harness.report.write import load_records

EXPECTED = ("status", "correct", "latency_s", "prompt_tokens", "completion_tokens", RECORD_KEY)


def check(junit: Path, run_dir: Path) -> list[str]:
    problems = []
    cases: dict[str, dict[str, str]] = {}
    for testcase in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in testcase.iter("property")}
        if RECORD_KEY in props:
            record = CaseRecord.from_dict(json.loads(props[RECORD_KEY]))
            cases[record.case_id] = props
    records = {r.case_id: r for r in load_records(run_dir / "results.jsonl")}
    if not records:
        problems.append(f"{run_dir}: no records")
    for case_id, record in records.items():
        props = cases.get(case_id)
        if props is None:
            problems.append(f"{case_id}: no test case with its record in {junit}")
            continue
        missing = [name for name in EXPECTED if name not in props]
        if missing:
            problems.append(f"{case_id}: properties missing: {', '.join(missing)}")
        if props.get("status") != record.status:
            problems.append(f"{case_id}: status {props.get('status')!r} in the XML, {record.status!r} in the run")
        if CaseRecord.from_dict(json.loads(props[RECORD_KEY])) != record:
            problems.append(f"{case_id}: the XML's record differs from results.jsonl's")
    extra = sorted(set(cases) - set(records))
    if extra:
        problems.append(f"{len(extra)} test cases in the XML have no record in the run: {extra[:3]}")
    print(f"{junit}: {len(cases)} test cases with records; {run_dir}: {len(records)} records; "
          f"{len(problems)} problems")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(Path(argv[0]), Path(argv[1]))
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
