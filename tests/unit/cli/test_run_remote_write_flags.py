"""``harness run --remote-write URL --remote-write-header 'Name: value'``: bad values are
usage errors naming the flag (exit 2, before any load), good ones become the run's config."""

from __future__ import annotations

import pytest

from harness.cli.main import build_parser, main
from harness.cli.run import remote_write_from_args
from harness.exitcodes import ExitCode

TARGET = ["--target", "tests.support.targets_for_tests:noop", "--duration", "1s", "--progress", "off"]


@pytest.mark.parametrize("flags, message", [
    (["--remote-write", "prometheus:9090/api/v1/write"], "--remote-write: expected an http:// or https:// URL"),
    (["--remote-write", "http://:9090/api/v1/write"], "--remote-write: no host"),
    (["--remote-write", "http://p:99999/w"], "--remote-write: bad port"),
    (["--remote-write", "http://p/w", "--remote-write-header", "Bearer xyz"], "--remote-write-header: expected"),
    (["--remote-write-header", "Authorization: Bearer x"], "--remote-write-header needs --remote-write"),
])
def test_bad_values_exit_2_naming_the_flag(tmp_path, capsys, flags, message):
    out = tmp_path / "r.json"
    assert main(["run", *TARGET, "--out", str(out), *flags]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists(), "nothing ran"


def test_flags_become_the_config():
    args = build_parser().parse_args(["run", "--remote-write", "https://u:pw@rw.example/api/v1/push",
                                      "--remote-write-header", "Authorization: Bearer t0k",
                                      "--remote-write-header", "X-Scope-OrgID: a", "--prometheus-job", "ci"])
    cfg = remote_write_from_args(args)
    assert cfg.url == "https://u:pw@rw.example/api/v1/push"
    assert cfg.headers == {"Authorization": "Bearer t0k", "X-Scope-OrgID": "a"} and cfg.job == "ci"
    assert remote_write_from_args(build_parser().parse_args(["run"])) is None
