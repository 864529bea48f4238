"""Service configuration (flags > LBH_SERVICE_* > defaults), the CLI, and the session
table's bounds (with a fake clock)."""

from __future__ import annotations

import pytest

from workloads.cli import build_parser, config_from_args, main
from workloads.faults import ConfigError, FaultConfig
from workloads.service.config import ENV_NAMES, ServiceConfig
from workloads.service.sessions import ClientSessionsFull, SessionBusy, SessionNotFound, SessionsFull, SessionStore


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


def test_robustness_settings_defaults_env_and_flags():
    cfg = ServiceConfig()
    assert (cfg.header_read_timeout_seconds, cfg.body_read_timeout_seconds, cfg.keep_alive_timeout_seconds) == (
        5.0, 2.0, 5.0)
    assert (cfg.max_header_bytes, cfg.max_headers, cfg.max_connections) == (16_384, 100, 1000)
    assert (cfg.max_sessions_per_client, cfg.session_evict_idle_seconds, cfg.drain_delay_seconds) == (32, 30.0, 6.0)
    # the drain delay exceeds the readiness probe period in deploy/k8s (5 s), and with the
    # preStop sleep (5 s) and drain_timeout it fits terminationGracePeriodSeconds (35 s)
    assert cfg.drain_delay_seconds > 5 and 5 + cfg.drain_delay_seconds + cfg.drain_timeout_seconds <= 35
    env = {"LBH_SERVICE_HEADER_READ_TIMEOUT": "1.5", "LBH_SERVICE_MAX_CONNECTIONS": "50",
           "LBH_SERVICE_DRAIN_DELAY": "0", "LBH_SERVICE_MAX_SESSIONS_PER_CLIENT": "3"}
    cfg = config_from_args(parse("--body-read-timeout", "0.5", "--max-headers", "20", "--max-header-bytes", "4096",
                                 "--keep-alive-timeout", "1", "--session-evict-idle", "10",
                                 "--max-connections", "60"), env)
    assert (cfg.header_read_timeout_seconds, cfg.body_read_timeout_seconds, cfg.keep_alive_timeout_seconds) == (
        1.5, 0.5, 1.0)
    assert (cfg.max_headers, cfg.max_header_bytes, cfg.max_connections, cfg.drain_delay_seconds) == (20, 4096, 60, 0.0)
    assert (cfg.max_sessions_per_client, cfg.session_evict_idle_seconds) == (3, 10.0)


@pytest.mark.parametrize("env, name", [
    ({"LBH_SERVICE_MAX_HEADER_BYTES": "10"}, "LBH_SERVICE_MAX_HEADER_BYTES"),
    ({"LBH_SERVICE_MAX_CONNECTIONS": "0"}, "LBH_SERVICE_MAX_CONNECTIONS"),
    ({"LBH_SERVICE_HEADER_READ_TIMEOUT": "0"}, "LBH_SERVICE_HEADER_READ_TIMEOUT"),
    ({"LBH_SERVICE_DRAIN_DELAY": "-1"}, "LBH_SERVICE_DRAIN_DELAY"),
    ({"LBH_SERVICE_BODY_READ_TIMEOUT": "inf"}, "LBH_SERVICE_BODY_READ_TIMEOUT"),
])
def test_robustness_settings_errors_name_the_variable(env, name):
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env(env)
    assert info.value.field == name


def test_one_client_cannot_take_the_whole_table(fake_clock):
    store = SessionStore(4, idle_timeout=60, max_per_client=2, clock=fake_clock)
    store.create("a1", "10.0.0.1")
    fake_clock.advance(5)
    store.create("a2", "10.0.0.1")
    with pytest.raises(ClientSessionsFull) as info:
        store.check_room("10.0.0.1")
    assert info.value.retry_after == 55 and "max_sessions_per_client" in str(info.value)
    store.create("b1", "10.0.0.2")
    assert store.held_by("10.0.0.1") == 2 and store.held_by("10.0.0.2") == 1
    fake_clock.advance(56)  # a1 expired: the client has room again
    store.create("a3", "10.0.0.1")
    assert store.held_by("10.0.0.1") == 2


def test_a_full_table_evicts_the_longest_idle_session_past_evict_idle(fake_clock):
    closed = []
    store = SessionStore(2, idle_timeout=300, evict_idle=30, clock=fake_clock,
                         on_evict=lambda reason, n: closed.append((reason, n)))
    old = store.create("old", "x")
    fake_clock.advance(10)
    used = store.create("used", "y")
    with pytest.raises(SessionsFull) as info:
        store.create("new", "z")  # nobody idle 30 s yet
    assert info.value.retry_after == 20  # when "old" becomes evictable
    fake_clock.advance(25)
    store.release(store.acquire(used.id))  # "used" is stepped: stays
    stepping = store.acquire(old.id)  # a running step is never evicted...
    with pytest.raises(SessionsFull):
        store.create("new", "z")
    store.release(stepping)
    fake_clock.advance(31)
    store.release(store.acquire(used.id))
    store.create("new", "z")  # ...but idle 31 s, it is
    assert closed == [("evicted", 1)] and len(store) == 2
    with pytest.raises(SessionNotFound):
        store.acquire(old.id)
    assert store.held_by("x") == 0
