"""The keep-alive pool against a scripted raw server on loopback: reuse, chunked and HEAD
answers, ``Connection: close``, bad answers, disconnects, refusals, the connection limit,
cancellation and TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess

import pytest

from tests.support.ci import require_binary
from harness.targets.http_client import BAD_RESPONSE, SERVER_DISCONNECTED, ConnectionPool


class C:
    """A call as the pool sees one."""

    def __init__(self, name=""):
        self.name, self.handle, self.finished, self.result = name, None, False, None


def req(path="/", method="GET"):
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Server:
    """Answers each request by ``answer(path, method)`` -> raw bytes (None: no answer)."""

    def __init__(self, answer, delay=0.0):
        self.answer, self.delay = answer, delay
        self.connections = self.open = self.peak = 0
        self.eof_seen = asyncio.Event()

    async def handle(self, reader, writer):
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.split(b" ")[:2]
                if self.delay:
                    await asyncio.sleep(self.delay)
                out = self.answer(path.decode(), method.decode())
                if out is None:
                    continue
                if out == b"CLOSE":
                    break
                writer.write(out)
                await writer.drain()
                if b"Connection: close" in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof_seen.set()
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self):
        self.srv = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=getattr(self, "ssl", None))
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.srv.close()




def make_pool(port, limit=4, **kw):
    def on_response(call, status, body):
        call.result = (status, body)
        _resolve(call)

    def on_error(call, name):
        call.result = name
        _resolve(call)

    return ConnectionPool("127.0.0.1", port, limit=limit, on_response=on_response, on_error=on_error, **kw)


_FUTS = {}


def _resolve(call):
    fut = _FUTS.pop(id(call), None)
    if fut is not None and not fut.done():
        fut.set_result(None)


async def run_calls(pool, calls, data, timeout=5.0):
    loop = asyncio.get_running_loop()
    futs = []
    for c in calls:
        _FUTS[id(c)] = f = loop.create_future()
        futs.append(f)
        pool.send(c, data(c) if callable(data) else data)
    await asyncio.wait_for(asyncio.gather(*futs), timeout)
    return [c.result for c in calls]


def test_sequential_requests_reuse_one_connection():
    async def main():
        async with Server(lambda p, m: OK) as srv:
            pool = make_pool(srv.port)
            for _ in range(50):
                assert await run_calls(pool, [C()], req()) == [(200, b"ok")]
            await pool.close()
            return srv.connections, pool.connects

    assert asyncio.run(main()) == (1, 1)


def test_chunked_body_is_joined_and_status_is_reported():
    chunked = (b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n4\r\ntrue\r\n1\r\n}\r\n0\r\n\r\n")

    async def main():
        async with Server(lambda p, m: chunked) as srv:
            pool = make_pool(srv.port)
            out = await run_calls(pool, [C(), C()], req())
            await pool.close()
            return out, srv.connections

    out, conns = asyncio.run(main())
    assert out == [(503, b'{"a":true}')] * 2


def test_head_answer_has_no_body_and_the_connection_stays_usable():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

    async def main():
        async with Server(lambda p, m: head if m == "HEAD" else OK) as srv:
            pool = make_pool(srv.port, limit=1)
            loop = asyncio.get_running_loop()
            c = C()
            _FUTS[id(c)] = f = loop.create_future()
            pool.send(c, req(method="HEAD"), True)
            await asyncio.wait_for(f, 2)
            after = await run_calls(pool, [C()], req())
            await pool.close()
            return c.result, after, srv.connections

    assert asyncio.run(main()) == ((200, b""), [(200, b"ok")], 1)


def test_connection_close_answer_opens_a_new_connection_next_time():
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    async def main():
        async with Server(lambda p, m: closing) as srv:
            pool = make_pool(srv.port, limit=1)
            outs = [await run_calls(pool, [C()], req()) for _ in range(3)]
            await pool.close()
            return outs, srv.connections

    outs, conns = asyncio.run(main())
    assert outs == [[(200, b"ok")]] * 3 and conns == 3


def test_garbage_and_disconnects_are_named_errors():
    def answer(path, method):
        return b"NOT HTTP AT ALL\r\n\r\n" if path == "/garbage" else b"CLOSE"

    async def main():
        async with Server(answer) as srv:
            pool = make_pool(srv.port)
            a = await run_calls(pool, [C()], req("/garbage"))
            b = await run_calls(pool, [C()], req("/hangup"))
            c = await run_calls(pool, [C()], req("/hangup"))
            await pool.close()
            return a, b, c

    a, b, c = asyncio.run(main())
    assert a == [BAD_RESPONSE]
    assert b == c == [SERVER_DISCONNECTED]


def test_refused_connections_fail_every_waiting_call():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        pool = make_pool(port, limit=2)
        out = await run_calls(pool, [C() for _ in range(5)], req())
        await pool.close()
        return out

    assert asyncio.run(main()) == ["connection refused"] * 5


def test_never_more_connections_than_the_limit_and_waiters_are_served_in_order():
    order = []

    def answer(path, method):
        order.append(path)
        return OK

    async def main():
        async with Server(answer, delay=0.02) as srv:
            pool = make_pool(srv.port, limit=3)
            out = await run_calls(pool, [C(str(i)) for i in range(12)], lambda c: req("/" + c.name))
            await pool.close()
            return out, srv.peak, srv.connections

    out, peak, conns = asyncio.run(main())
    assert out == [(200, b"ok")] * 12 and peak <= 3 and conns == 3
    assert [int(p[1:]) for p in order[3:]] == sorted(int(p[1:]) for p in order[3:])


def test_cancel_aborts_the_connection_and_reports_nothing():
    async def main():
        async with Server(lambda p, m: None) as srv:  # never answers
            pool = make_pool(srv.port, limit=1)
            c = C()
            _FUTS[id(c)] = asyncio.get_running_loop().create_future()
            pool.send(c, req())
            await asyncio.sleep(0.1)
            c.finished = True
            pool.cancel(c)
            await asyncio.wait_for(srv.eof_seen.wait(), 2)  # the server saw the connection go
            await asyncio.sleep(0.05)
            # the next call gets a fresh connection
            srv.answer = lambda p, m: OK
            after = await run_calls(pool, [C()], req())
            await pool.close()
            return c.result, after, srv.connections

    assert asyncio.run(main()) == (None, [(200, b"ok")], 2)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    require_binary("openssl", "openssl")
    d = tmp_path_factory.mktemp("tls")
    key, cert = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    return key, cert


def test_tls_with_and_without_certificate_checks(tls_files):
    key, cert = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    async def main():
        srv = Server(lambda p, m: OK)
        srv.ssl = server_ctx
        async with srv:
            strict = make_pool(srv.port, ssl=ssl.create_default_context())
            lax_ctx = ssl.create_default_context()
            lax_ctx.check_hostname, lax_ctx.verify_mode = False, ssl.CERT_NONE
            lax = make_pool(srv.port, ssl=lax_ctx)
            a = await run_calls(strict, [C()], req())
            b = await run_calls(lax, [C(), C()], req())
            await strict.close()
            await lax.close()
            return a, b

    a, b = asyncio.run(main())
    assert a == ["TLS: certificate verify failed"]
    assert b == [(200, b"ok")] * 2
    assert os.path.exists(key)


def test_an_idempotent_request_is_sent_again_when_an_idle_connection_was_closed_under_it():
    # the server closes every reused connection on reading its 2nd request, as an idle
    # timeout racing the request would: a GET goes out once more on a new connection, a
    # POST is reported (it may have been acted on)
    class Racy(Server):
        async def handle(self, reader, writer):
            self.connections += 1
            n = 0
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    n += 1
                    if n == 2:
                        break  # close without answering
                    writer.write(OK)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

    async def main():
        async with Racy(lambda p, m: OK) as srv:
            pool = make_pool(srv.port, limit=1)
            out = []
            for method, retry in (("GET", True), ("GET", True), ("POST", False), ("POST", False)):
                c = C()
                _FUTS[id(c)] = f = asyncio.get_running_loop().create_future()
                pool.send(c, req(method=method), False, retry)
                await asyncio.wait_for(f, 2)
                out.append(c.result)
            await pool.close()
            return out, srv.connections

    out, conns = asyncio.run(main())
    # GET 1 on conn 1; GET 2 on conn 1 is dropped -> sent again on conn 2; POST 1 on conn 2 is its
    # 2nd request -> dropped and reported; POST 2 on a fresh conn 3
    assert out == [(200, b"ok"), (200, b"ok"), SERVER_DISCONNECTED, (200, b"ok")]
    assert conns == 3
