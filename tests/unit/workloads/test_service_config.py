"""Service configuration (flags > LBH_SERVICE_* > defaults), the CLI, and the session
table's bounds (with a fake clock)."""

from __future__ import annotations

import pytest

from workloads.cli import build_parser, config_from_args, main
from workloads.faults import ConfigError, FaultConfig
from workloads.service.config import ENV_NAMES, ServiceConfig
from workloads.service.sessions import SessionBusy, SessionNotFound, SessionsFull, SessionStore


def parse(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def test_defaults():
    cfg = ServiceConfig()
    assert (cfg.host, cfg.port, cfg.max_concurrency, cfg.request_timeout_seconds) == ("127.0.0.1", 8000, 16, 2.0)
    assert (cfg.max_sessions, cfg.session_idle_timeout_seconds, cfg.max_body_bytes) == (64, 300.0, 1 << 20)
    assert ServiceConfig.from_env({}) == cfg
    assert ENV_NAMES["request_timeout_seconds"] == "LBH_SERVICE_REQUEST_TIMEOUT"
    assert ENV_NAMES["max_concurrency"] == "LBH_SERVICE_MAX_CONCURRENCY"


def test_env_then_flags_take_precedence():
    env = {
        "LBH_SERVICE_PORT": "9000",
        "LBH_SERVICE_MAX_CONCURRENCY": "4",
        "LBH_SERVICE_REQUEST_TIMEOUT": "0.5",
        "LBH_SERVICE_SESSION_IDLE_TIMEOUT": "30",
        "LBH_EXTRACTOR_CACHE_SIZE": "10",
        "LBH_FAULT_EXTRA_LATENCY_MS": "150",
    }
    cfg = config_from_args(parse(), env)
    assert (cfg.port, cfg.max_concurrency, cfg.request_timeout_seconds, cfg.session_idle_timeout_seconds) == (
        9000, 4, 0.5, 30.0)
    assert cfg.extractor.cache_size == 10 and cfg.extractor.faults.extra_latency_seconds == pytest.approx(0.15)
    cfg = config_from_args(parse("--port", "9100", "--max-concurrency", "2", "--max-sessions", "5",
                                 "--fault-error-rate", "0.5", "--fault-cache-outage", "yes"), env)
    assert (cfg.port, cfg.max_concurrency, cfg.max_sessions, cfg.request_timeout_seconds) == (9100, 2, 5, 0.5)
    # Flag faults merge over the environment's.
    assert cfg.extractor.faults == FaultConfig(error_rate=0.5, extra_latency_seconds=0.15, cache_outage=True)


@pytest.mark.parametrize("env, name", [
    ({"LBH_SERVICE_MAX_CONCURRENCY": "0"}, "LBH_SERVICE_MAX_CONCURRENCY"),
    ({"LBH_SERVICE_MAX_CONCURRENCY": "many"}, "LBH_SERVICE_MAX_CONCURRENCY"),
    ({"LBH_SERVICE_REQUEST_TIMEOUT": "nan"}, "LBH_SERVICE_REQUEST_TIMEOUT"),
    ({"LBH_SERVICE_PORT": "70000"}, "LBH_SERVICE_PORT"),
    ({"LBH_SERVICE_MAX_BODY_BYTES": "10"}, "LBH_SERVICE_MAX_BODY_BYTES"),
    ({"LBH_FAULT_ERROR_RATE": "2"}, "LBH_FAULT_ERROR_RATE"),
])
def test_env_errors_name_the_variable(env, name):
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env(env)
    assert info.value.field == name and name in str(info.value)


def test_direct_construction_and_flags_are_validated():
    with pytest.raises(ConfigError, match="max_sessions"):
        ServiceConfig(max_sessions=0)
    with pytest.raises(ConfigError, match="request_timeout_seconds"):
        ServiceConfig(request_timeout_seconds="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_concurrency"):
        config_from_args(parse("--max-concurrency", "-1"), {})
    with pytest.raises(ConfigError, match="--fault-extra-latency-ms"):
        config_from_args(parse("--fault-extra-latency-ms", "slow"), {})


def test_cli_bad_value_exits_2_naming_it(capsys, monkeypatch):
    monkeypatch.setenv("LBH_SERVICE_MAX_SESSIONS", "lots")
    assert main(["serve"]) == 2
    assert "LBH_SERVICE_MAX_SESSIONS" in capsys.readouterr().err
    assert main([]) == 2


# --------------------------------------------------------------------------- sessions


def test_sessions_bounded_in_number_with_retry_after(fake_clock):
    store = SessionStore(2, idle_timeout=60, clock=fake_clock)
    a = store.create("env-a")
    fake_clock.advance(10)
    store.create("env-b")
    with pytest.raises(SessionsFull) as info:
        store.create("env-c")
    assert info.value.retry_after == 50  # when the oldest (a) would expire
    assert "session_id" in str(info.value)
    store.delete(a.id)
    store.create("env-c")
    assert len(store) == 2


def test_idle_sessions_expire_but_not_while_stepping(fake_clock):
    evicted = []
    store = SessionStore(4, idle_timeout=30, clock=fake_clock, on_evict=lambda reason, n: evicted.append((reason, n)))
    idle, busy = store.create("idle"), store.create("busy")
    stepping = store.acquire(busy.id)
    fake_clock.advance(31)
    assert store.sweep() == 1 and evicted == [("idle", 1)]
    with pytest.raises(SessionNotFound):
        store.acquire(idle.id)
    with pytest.raises(SessionBusy):
        store.acquire(busy.id)
    store.release(stepping)
    assert store.acquire(busy.id).steps == 1  # touched by the release: not idle


def test_expired_but_unswept_session_is_gone(fake_clock):
    store = SessionStore(4, idle_timeout=5, clock=fake_clock)
    s = store.create("env")
    fake_clock.advance(5)
    with pytest.raises(SessionNotFound):
        store.acquire(s.id)
    assert len(store) == 0


def test_a_full_table_sweeps_before_refusing(fake_clock):
    store = SessionStore(1, idle_timeout=5, clock=fake_clock)
    store.create("old")
    fake_clock.advance(6)
    store.check_room()
    assert store.create("new").env == "new" and len(store) == 1
