"""A scenario's ``service``: started on a free port before the load, aimed at, measured on
its own (CPU), stopped after; a service that cannot start fails with its log quoted."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import pytest

from harness.cli.main import main
from harness.config.scenario import scenario_from_dict
from harness.run.service import ManagedService, ServiceError, served

HTTP_SERVER = ["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]


def scenario(**extra):
    data = {"name": "svc", "target": "http://127.0.0.1:{port}/", "http": {"method": "GET"},
            "service": {"command": HTTP_SERVER, "ready": "http://127.0.0.1:{port}/", "start_timeout": "20s"},
            "duration": "1s", "profile": {"type": "constant", "rate": 10}, "thresholds": {"latency": "p(95)<1s"}}
    data.update(extra)
    return scenario_from_dict(data, env={})


def test_served_starts_aims_and_stops_the_service():
    sc = scenario()
    with served(sc) as (aimed, svc):
        assert svc is not None and svc.proc.poll() is None
        assert aimed.target == f"http://127.0.0.1:{svc.port}/" and "{port}" not in aimed.target
        assert svc.command[0] == sys.executable and str(svc.port) in svc.command
        assert svc.cpu_seconds() is not None
    assert svc.proc.poll() is not None  # stopped on leaving
    with served(scenario(service=None, target="noop")) as (same, none):
        assert none is None and same.target == "noop"


def test_a_service_that_cannot_start_names_its_log():
    svc = ManagedService({"command": ["{python}", "-c", "import sys; print('boom: no model'); sys.exit(3)"],
                          "ready": None, "start_timeout": 10})
    with pytest.raises(ServiceError, match=r"exited with code 3 before it was ready(.|\n)*boom: no model") as err:
        svc.start()
    # the whole log is kept where the error says (a failed start is worth reading)
    assert svc.log_path is not None and svc.log_path in str(err.value)
    with open(svc.log_path, encoding="utf-8") as fh:
        assert "boom: no model" in fh.read()
    os.unlink(svc.log_path)


def test_a_service_leaves_no_log_file_behind(tmp_path, monkeypatch):
    # its output goes to an anonymous file: nothing named is left, even if the harness is killed
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        with served(scenario()) as (_aimed, running):
            assert running is not None and running.proc.poll() is None
            assert list(tmp_path.iterdir()) == []
    finally:
        tempfile.tempdir = None
    assert list(tmp_path.iterdir()) == []


def test_harness_run_drives_the_scenarios_service(tmp_path, capsys):
    path = tmp_path / "svc.json"
    (tmp_path / "svc.yaml").write_text(json.dumps(scenario().to_dict()))  # JSON is YAML
    code = main(["run", str(tmp_path / "svc.yaml"), "--progress", "off", "--no-metrics", "--out", str(path)])
    result = json.loads(path.read_text())
    assert code == 0, capsys.readouterr().out
    assert result["summary"]["all"]["outcomes"]["ok"] == 10
    assert result["scenario"]["service"]["command"] == HTTP_SERVER
