"""report.html: self-contained, with its sections and data; rendered in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import BenchRun

from harness.core.record import CaseRecord
from harness.report import html
from harness.report.hooks import RunData

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADINGS = ["Verdicts", "Scoreboard", "Paired statistics", "Suites", "Suite: mmlu", "Items", "Run"]


def _record(item: str, model: str, correct: bool, text: str = "What is 2+2?") -> CaseRecord:
    return CaseRecord(run_id="r", case_id=f"{model}-{item}", suite="mmlu", item_id=item, model=model,
                      backend="fake", prediction="A" if correct else "B", reference="A", correct=correct,
                      status="ok" if correct else "wrong", input_text=text, timings={"wall_s": 0.5})


def test_page_is_self_contained_and_escapes_item_text(tmp_path: Path) -> None:
    plot = tmp_path / "mmlu" / "heatmap.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"\x89PNG\r\n\x1a\nnot-really")
    hostile = "</script><script>alert(1)</script><b>bold</b>"
    records = [_record("1", "m1", True, hostile), _record("1", "m2", False, hostile), _record("2", "m1", False),
               _record("2", "m2", True)]
    page = html.write(RunData.of(tmp_path, records, {"run_id": "r"})).read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f">{heading}</h2>" in page
    assert page.count("data:image/png;base64,") == 1
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "nothing may be fetched at view time"
    # the item text sits in the JSON data block, its </script> neutralized
    data = re.search(r'<script type="application/json" id="item-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None
    items = json.loads(data.group(1))["items"]
    assert [(i["id"], len(i["answers"]), i["input"]) for i in items] == [("1", 2, hostile), ("2", 2, "What is 2+2?")]
    assert "<b>bold</b>" not in page.replace(data.group(1), "")
    assert "single:m1" in page and "single:m2" in page  # the paired statistics table


def _chromium(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={run_dir / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
                           *args, (run_dir / html.REPORT_FILE).as_uri()],
                          check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(bench: BenchRun) -> None:
    registry = bench.pytester.path / "scripted.toml"
    registry.write_text('[[models]]\nname = "always-a"\nbackend = "scripted"\nmodel = "script"\n'
                        'options = { steps = ["A"], then = "repeat" }\n')
    result = bench("--models-file", str(registry), "--models", "oracle,always-a", "--samples", "8",
                   "--run-id", "page")
    assert result.ret == 0, result.stdout.str()
    run_dir = bench.reports / "page"
    assert (run_dir / html.REPORT_FILE).is_file()

    dom = _chromium(run_dir, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", dom.stdout)
    assert [h for h in HEADINGS if h not in headings] == []
    # the script ran: the browser built one box per item and filled the filters
    assert dom.stdout.count('class="item"') == 8
    assert '<option value="always-a">always-a</option>' in dom.stdout
    assert "8 items" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console

    shot = run_dir / "screenshot.png"
    taken = _chromium(run_dir, f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the screenshot is blank"


def test_the_page_is_written_after_the_other_reports(tmp_path: Path) -> None:
    from harness.report.hooks import report_manager, reports_of, run_reports

    records = [_record("1", "m1", True), _record("1", "m2", False), _record("2", "m1", True),
               _record("2", "m2", True)]
    # The run's suites name their reports in its metadata (the MMLU Suite: its analysis).
    metadata = {"run_id": "r", "suites": {"mmlu": {"tags": ["subject"], "reports": ["harness.report.mmlu_analysis"]}}}
    manager = report_manager(reports=reports_of(metadata))
    assert run_reports(manager, RunData.of(tmp_path, records, metadata)) == []
    page = (tmp_path / html.REPORT_FILE).read_text(encoding="utf-8")
    pytest.importorskip("matplotlib")
    assert (tmp_path / "comparison" / "mmlu" / "comparison.png").is_file()
    # every plot the other reports wrote before the page (the MMLU analysis's), but comparison.png:
    # the frontier panels (inline SVG) replace it
    captions = re.findall(r'<figcaption class="muted">(.*?)</figcaption>', page)
    assert sorted(captions) == ["accuracy.png", "efficiency.png", "heatmap.png", "time.png"]
    assert page.count("data:image/png;base64,") == 4
    assert page.count('<svg class="frontier"') == 1  # latency only: no cost, CPU or memory was measured
