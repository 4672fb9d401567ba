"""`bench/run`: every benchmark in one table, each figure beside its target."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench._all import BENCHES, Bench, Outcome, missed, rows, run_one

ROOT = Path(__file__).resolve().parent.parent


def figure(name: str, value: float, *, met: bool | None, ref: float | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "name": name,
        "value": value,
        "unit": "ms",
        "target": "≤ 2",
        "met": met,
        "reference": None if ref is None else f"{name}_ref",
        "reference_value": ref,
    }


def test_every_benchmark_script_is_run_by_bench_run() -> None:
    scripts = {p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")}
    assert scripts == {b.script for b in BENCHES}


def test_rows_put_each_figure_beside_its_target_and_its_ratio_to_the_reference() -> None:
    out = {"quick": False, "figures": [figure("a_ms", 3.0, met=False, ref=1.5)]}
    [row] = rows([Outcome(Bench("x", "x.py"), out, None, 1.0)])
    assert row == ["x", "a_ms", "3.000", "ms", "≤ 2", "NO", "a_ms_ref = 1.500", "2.00×"]


def test_a_quick_run_judges_no_target() -> None:
    out = {"quick": True, "figures": [figure("a_ms", 3.0, met=False)]}
    outcome = Outcome(Bench("x", "x.py"), out, None, 1.0)
    assert rows([outcome])[0][5] == "—"
    assert missed([outcome]) == []


def test_missed_names_each_benchmark_figure_that_missed_its_target() -> None:
    out = {"figures": [figure("a_ms", 3.0, met=False), figure("b_ms", 1.0, met=True)]}
    assert missed([Outcome(Bench("x", "x.py"), out, None, 1.0)]) == ["x:a_ms"]


def fake(code: int, stdout: str, stderr: str = ""):  # type: ignore[no-untyped-def]
    def runner(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), code, stdout, stderr)

    return runner


def test_a_failing_benchmark_is_one_row_saying_why() -> None:
    bench = Bench("x", "x.py")
    failed = run_one(bench, quick=True, timeout=5, runner=fake(1, "", "boom\nno runc here"))
    assert failed.output is None and failed.error == "exit status 1: boom no runc here"
    assert rows([failed])[0][:2] == ["x", "FAILED"]
    garbage = run_one(bench, quick=True, timeout=5, runner=fake(0, "not json"))
    assert garbage.error is not None and "not one JSON object" in garbage.error
    bare = run_one(bench, quick=True, timeout=5, runner=fake(0, '{"a_ms": 1}'))
    assert bare.error == "its JSON has no list of figures"


def test_bench_run_prints_one_json_object_with_each_benchmarks_figures() -> None:
    done = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick", "--json", "--only", "store"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    combined = json.loads(done.stdout)
    assert combined["failed"] == {} and combined["quick"] is True
    names = {f["name"] for f in combined["store"]["figures"]}
    assert {"local_commit_ms_p50", "batch_apply_changes_per_s", "history_10k_ms"} <= names
    target = {f["name"]: f["target"] for f in combined["store"]["figures"]}
    assert target["batch_apply_changes_per_s"] == "≥ 50,000"


def test_an_unknown_benchmark_name_is_refused_with_the_known_ones() -> None:
    done = subprocess.run(
        [str(ROOT / "bench" / "run"), "--only", "stor"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no benchmark named stor" in done.stderr and "store" in done.stderr
