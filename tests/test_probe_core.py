"""The readiness core, stepped by hand: thresholds, timers, reasons, events, the health.wait
verdict and what a look at a container means for its probing. No sleeps, no clock."""

from __future__ import annotations

import pytest

from edgenode._probe import (
    PENDING_REASON,
    TRANSITIONS,
    ContainerHealth,
    ExecProbe,
    HealthVerdict,
    HttpProbe,
    ProbeSpec,
    ProbeStateError,
    Readiness,
    ReadinessChanged,
    TcpProbe,
    describe,
    health_verdict,
    http_outcome,
    track,
    wait_bound,
)

HTTP = HttpProbe("/healthz", 8080)
REFUSED = "connection refused"


def spec(**kw: float) -> ProbeSpec:
    settings: dict[str, float] = {"period_s": 1.0, "timeout_s": 1.0} | kw
    return ProbeSpec(
        HTTP,
        initial_delay_s=settings.get("initial_delay_s", 0.0),
        period_s=settings["period_s"],
        timeout_s=settings["timeout_s"],
        failure_threshold=int(settings.get("failure_threshold", 3)),
        success_threshold=int(settings.get("success_threshold", 1)),
    )


def outcome(core: Readiness, now: float, error: str | None = None) -> list[ReadinessChanged]:
    core.probe_started(now=now)
    if error is None:
        core.probe_succeeded(now=now + 0.01)
    else:
        core.probe_failed(error, now=now + 0.01)
    events = []
    while (event := core.next_event()) is not None:
        events.append(event)
    return events


def test_every_state_answers_every_outcome_and_only_enough_failures_leave_ready() -> None:
    events = {"success", "enough-successes", "failure", "enough-failures"}
    assert all(set(row) == events for row in TRANSITIONS.values())
    assert {e for e, s in TRANSITIONS["ready"].items() if s != "ready"} == {"enough-failures"}
    assert {s for row in TRANSITIONS.values() for s in row.values()} <= set(TRANSITIONS)


def test_a_new_run_is_not_ready_and_its_first_check_is_due_after_the_initial_delay() -> None:
    core = Readiness(spec(initial_delay_s=5.0), started_at=100.0)
    assert (core.ready, core.reason) == (False, PENDING_REASON)
    assert core.get_timer() == 105.0


def test_one_pass_makes_it_ready_and_says_so_once() -> None:
    core = Readiness(spec(), started_at=0.0)
    assert outcome(core, 0.0) == [ReadinessChanged(True, None, 0.01)]
    assert outcome(core, 1.0) == []
    assert core.ready and core.reason is None


def test_successes_in_a_row_are_needed_after_a_failure_breaks_the_run() -> None:
    core = Readiness(spec(success_threshold=3), started_at=0.0)
    outcome(core, 0.0)
    outcome(core, 1.0)
    outcome(core, 2.0, REFUSED)
    outcome(core, 3.0)
    outcome(core, 4.0)
    assert not core.ready and core.successes == 2
    assert outcome(core, 5.0) == [ReadinessChanged(True, None, 5.01)]


def test_a_ready_container_stays_ready_until_failure_threshold_failures_in_a_row() -> None:
    core = Readiness(spec(), started_at=0.0)
    outcome(core, 0.0)
    assert outcome(core, 1.0, REFUSED) == [] and outcome(core, 2.0, REFUSED) == []
    outcome(core, 3.0)  # a pass in between starts the count again
    assert outcome(core, 4.0, REFUSED) == [] and outcome(core, 5.0, REFUSED) == []
    [event] = outcome(core, 6.0, REFUSED)
    assert event == ReadinessChanged(
        False, "http GET /healthz on port 8080: connection refused (3 failures in a row)", 6.01
    )


def test_failing_the_same_way_again_changes_nothing_a_new_error_changes_the_reason() -> None:
    core = Readiness(spec(), started_at=0.0)
    [first] = outcome(core, 0.0, REFUSED)
    assert first.reason == "http GET /healthz on port 8080: connection refused"
    assert [outcome(core, t, REFUSED) for t in (1.0, 2.0, 3.0)] == [[], [], []]
    assert core.failures == 4 and core.failing
    [changed] = outcome(core, 4.0, "HTTP 503 Service Unavailable")
    assert changed.reason == (
        "http GET /healthz on port 8080: HTTP 503 Service Unavailable (5 failures in a row)"
    )
    assert core.failure() == changed.reason


def test_the_next_check_is_a_period_after_the_last_began_or_at_once_when_it_overran() -> None:
    core = Readiness(spec(period_s=2.0, timeout_s=5.0), started_at=0.0)
    core.probe_started(now=0.0)
    assert core.get_timer() is None  # one check at a time
    core.probe_succeeded(now=0.5)
    assert core.get_timer() == 2.0
    core.probe_started(now=2.0)
    core.probe_failed("no answer within 5s", now=7.0)
    assert core.get_timer() == 4.0  # in the past: due at once


def test_an_outcome_without_a_check_in_flight_is_refused_and_changes_nothing() -> None:
    core = Readiness(spec(), started_at=0.0)
    with pytest.raises(ProbeStateError):
        core.probe_succeeded(now=0.0)
    core.probe_started(now=0.0)
    with pytest.raises(ProbeStateError):
        core.probe_started(now=0.1)
    assert (core.ready, core.reason) == (False, PENDING_REASON)


def test_a_run_that_was_ready_before_the_node_restarted_starts_out_ready() -> None:
    core = Readiness(spec(), started_at=0.0, ready=True)
    assert core.ready and core.next_event() is None
    assert outcome(core, 50.0, REFUSED) == []


def test_new_timings_apply_from_the_next_check_and_keep_readiness() -> None:
    core = Readiness(spec(period_s=10.0), started_at=0.0)
    outcome(core, 0.0)
    core.reconfigure(spec(period_s=2.0, failure_threshold=1), now=1.0)
    assert core.ready and core.get_timer() == 2.0 and core.next_event() is None
    assert outcome(core, 2.0, REFUSED)[0].ready is False


def test_a_different_check_is_judged_afresh_and_the_old_checks_answer_is_dropped() -> None:
    core = Readiness(spec(), started_at=0.0)
    outcome(core, 0.0)
    core.probe_started(now=1.0)
    core.reconfigure(ProbeSpec(TcpProbe(9000), period_s=1.0), now=1.2)
    assert core.next_event() == ReadinessChanged(False, PENDING_REASON, 1.2)
    core.probe_succeeded(now=1.5)  # the old check's answer
    assert not core.ready and core.next_event() is None
    assert outcome(core, 2.0)[0].ready is True


def test_describe_names_each_kind_of_check() -> None:
    assert describe(ExecProbe(("test", "-f", "/tmp/ready"))) == "exec test -f /tmp/ready"
    assert describe(HTTP) == "http GET /healthz on port 8080"
    assert describe(TcpProbe(5432)) == "tcp connect to port 5432"


def test_explain_gives_live_counts_and_what_it_takes_to_be_ready() -> None:
    core = Readiness(spec(initial_delay_s=3.0, success_threshold=2), started_at=0.0)
    assert core.explain(now=1.0) == (
        "waiting for its first check (http GET /healthz on port 8080, due in 2.0 s)"
    )
    outcome(core, 3.0, REFUSED)
    outcome(core, 4.0, REFUSED)
    assert core.explain(now=4.51) == (
        "http GET /healthz on port 8080 failed 2 times in a row, the last 0.5 s ago: "
        "connection refused; it needs 2 passes in a row to be ready (checked every 1s, "
        "timeout 1s)"
    )


@pytest.mark.parametrize(
    ("probing", "state", "started_at", "action"),
    [
        (None, "running", 5.0, "start"),
        (None, "starting", None, "none"),
        (None, "backoff", 5.0, "none"),
        (5.0, "running", 5.0, "keep"),
        (5.0, "running", 9.0, "start"),  # a new run: judged afresh
        (5.0, "stopping", 5.0, "stop"),
        (5.0, "exited", 5.0, "stop"),
        (5.0, "starting", 5.0, "stop"),
    ],
)
def test_only_the_current_run_of_a_running_container_is_probed(
    probing: float | None, state: str, started_at: float | None, action: str
) -> None:
    assert track(probing, state, started_at) == action


def running(ready: bool, reason: str | None = None, failing: bool = False) -> ContainerHealth:
    return ContainerHealth("running", ready, reason, failing)


def test_health_waits_for_every_container_and_names_what_it_waits_for() -> None:
    verdict = health_verdict({"web": running(True), "db": running(False, PENDING_REASON)})
    assert verdict == HealthVerdict("waiting", f"db: {PENDING_REASON}")
    assert health_verdict({"web": running(True), "db": running(True)}) == HealthVerdict("ready")


def test_health_fails_once_a_check_has_failed_its_threshold_in_a_row() -> None:
    failing = running(False, "tcp connect to port 9000: connection refused", failing=True)
    assert health_verdict({"db": failing, "web": running(False, PENDING_REASON)}) == (
        HealthVerdict("failed", "db: not ready: tcp connect to port 9000: connection refused")
    )


def test_health_fails_for_a_container_that_stopped_and_not_for_a_finished_job() -> None:
    crashed = ContainerHealth("backoff", False, exit_code=3)
    assert health_verdict({"main": crashed}) == HealthVerdict(
        "failed", "main: exited with code 3 before it was ready"
    )
    failed_start = ContainerHealth("backoff", False, message="exec: sleeep: not found")
    assert health_verdict({"main": failed_start}).reason == (
        "main: exec: sleeep: not found before it was ready"
    )
    done = ContainerHealth("exited", False, exit_code=0)
    assert health_verdict({"job": done, "web": running(True)}) == HealthVerdict("ready")


def test_health_waits_at_most_long_enough_for_the_slowest_check_to_decide() -> None:
    slow = ProbeSpec(HTTP, initial_delay_s=5.0, period_s=10.0, timeout_s=2.0)
    fast = ProbeSpec(HTTP, period_s=1.0)
    assert wait_bound([slow, fast]) == 5.0 + (3 + 1) * 10.0 + 2.0
    assert wait_bound([]) == 10.0


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", None),
        (b"HTTP/1.0 302 Found\r\n", None),
        (b"HTTP/1.1 404 Not Found\r\n", "HTTP 404 Not Found"),
        (b"HTTP/1.1 500\r\n", "HTTP 500"),
        (b"", "the connection was closed without an answer"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer: 'SSH-2.0-OpenSSH_9.2'"),
    ],
)
def test_an_http_answer_passes_with_2xx_or_3xx(head: bytes, error: str | None) -> None:
    assert http_outcome(head) == error
