"""The shipped systemd unit runs the daemon so that stopping it leaves the pods running."""

from __future__ import annotations

import configparser
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "docs" / "edgenode.service"


def test_the_unit_runs_edgenode_up_and_signals_only_the_daemon() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:2] == ["up"]
    assert service["KillMode"] == "process"  # monitors and containers survive a stop
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
