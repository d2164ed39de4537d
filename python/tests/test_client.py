"""sirenrope.client without a daemon: how answers map to RotorError, user id encoding, and
the tensors' parsing. The client against the real `rotor serve` (every route, every error
code over the wire, scores against the PyTorch reference) is integration_tests/api_test.py.

The only server here is Python's http.server answering canned error bodies: it stands in for
nothing the client's success paths rely on.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.parse

import numpy as np
import pytest
import torch

from sirenrope.client import RotorClient, RotorError, parse_tensors, user_path
from sirenrope.materialize import encode_message
from sirenrope.safetensors_io import bf16_to_f32, f32_to_bf16


class Canned(http.server.BaseHTTPRequestHandler):
    """Answers each request from ``server.answers[path]``: (status, content type, body,
    close); records the raw request paths."""

    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, body))
        path = self.path.split("?")[0]
        status, ctype, data, close = self.server.answers.get(
            path, (404, "application/json",
                   b'{"error":"not_found","detail":"no route GET ' + path.encode() + b'"}',
                   False))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if close:
            self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    srv.answers, srv.seen = {}, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client_of(srv, timeout=5.0):
    return RotorClient(f"http://127.0.0.1:{srv.server_address[1]}", timeout=timeout)


def error_body(code, detail):
    return json.dumps({"error": code, "detail": detail}).encode()


@pytest.mark.parametrize("status,code,detail", [
    (400, "invalid_json", "expected a value at byte 0"),
    (400, "schema", "candidates[3].item.features[2]: expected a number"),
    (404, "not_found", "no state for user 'u-9'"),
    (405, "method_not_allowed", "GET /v1/score: the route takes POST"),
    (409, "model_mismatch", "the user's state was computed with model ab"),
    (413, "body_too_large", "a body of 9000000 bytes, more than 8388608"),
    (500, "corrupt_state", "loading user 'u': bad metadata"),
    (503, "not_ready", "partition rotor.events/1 is restoring"),
])
def test_error_bodies_become_rotor_errors(server, status, code, detail):
    server.answers["/v1/users/u-9"] = (status, "application/json", error_body(code, detail),
                                       status == 413)
    with pytest.raises(RotorError) as e:
        client_of(server).user("u-9")
    assert (e.value.status, e.value.code, e.value.detail) == (status, code, detail)
    assert e.value.body == {"error": code, "detail": detail}
    assert str(e.value) == f"{status} {code}: {detail}"


def test_a_body_that_is_not_the_apis_still_says_the_status(server):
    server.answers["/v1/users/u"] = (502, "text/html", b"<html>Bad Gateway</html>", False)
    with pytest.raises(RotorError) as e:
        client_of(server).user("u")
    assert e.value.status == 502 and e.value.code == "http_502"
    assert "Bad Gateway" in e.value.detail


def test_a_200_that_is_not_json_is_a_bad_response(server):
    server.answers["/v1/users/u"] = (200, "application/json", b"{half", False)
    with pytest.raises(RotorError) as e:
        client_of(server).user("u")
    assert e.value.code == "bad_response"


def test_score_many_maps_each_users_error_and_keeps_the_others(server):
    doc = {"model_id": "m", "ts_ms": 5, "users": [
        {"user_id": "a", "known": True, "next_pos": 3, "input": None, "scores": [{"click": 0.5}]},
        {"user_id": "b", "error": "corrupt_state", "detail": "loading user 'b': ..."}]}
    server.answers["/v1/score"] = (200, "application/json", json.dumps(doc).encode(), False)
    got = client_of(server).score_many({"a": ([{"item": {}}], 5), "b": ([], 5)})
    assert got["a"] == [{"click": 0.5}] and got["a"].known and got["a"].next_pos == 3
    assert isinstance(got["b"], RotorError) and got["b"].code == "corrupt_state"
    [(method, path, body)] = server.seen
    assert (method, path) == ("POST", "/v1/score")
    assert json.loads(body) == {"ts_ms": 5, "users": [
        {"user_id": "a", "candidates": [{"item": {}}]}, {"user_id": "b", "candidates": []}]}


def test_readiness_answers_503_without_raising(server):
    body = {"error": "not_ready", "detail": "restoring", "ready": False, "partitions": []}
    server.answers["/readyz"] = (503, "application/json", json.dumps(body).encode(), False)
    c = client_of(server)
    assert c.ready() is False
    assert c.readiness()["detail"] == "restoring"


def test_no_server_and_a_silent_server_are_connection_and_timeout_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RotorError) as e:
        RotorClient(f"http://127.0.0.1:{port}", timeout=2).health()
    assert (e.value.status, e.value.code) == (0, "connection")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(RotorError) as e:
            RotorClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3).health()
        assert (e.value.status, e.value.code) == (0, "timeout")


def test_a_closed_keep_alive_connection_is_reopened_once(server):
    server.answers["/healthz"] = (200, "application/json", b'{"status":"ok"}', False)
    c = client_of(server)
    assert c.health() == {"status": "ok"}
    c._local.conn.sock.close()  # As if the server's idle timeout closed it.
    c._local.conn.sock = socket.socket()  # A dead socket the next send fails on.
    assert c.health() == {"status": "ok"}


@pytest.mark.parametrize("user", ["u-42", "a/b", "with space", "plus+sign", "pct%2F",
                                  "q?x#y", "ünïcødé", "日本", "..", "."])
def test_user_ids_are_one_percent_encoded_segment(user):
    path = user_path(user)
    segment = path[len("/v1/users/"):]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert all(ord(ch) < 128 and ch not in " +" for ch in segment)
    assert urllib.parse.unquote(segment, errors="strict") == user


def test_tensors_parse_into_torch_in_the_wire_dtype():
    rng = np.random.default_rng(0)
    k = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2)]
    v = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2)]
    for dtype, torch_dtype in (("F32", torch.float32), ("BF16", torch.bfloat16),
                               ("F16", torch.float16)):
        raw = encode_message("snapshot", "u", "m", k, v, np.arange(5, 8), 123, dtype=dtype)
        t = parse_tensors(raw)
        assert t.raw == raw and t.next_pos == 8 and t.n_blocks == 2
        assert t.metadata["rotor.dtype"] == dtype and t.metadata["rotor.user_id"] == "u"
        assert t["pos"].tolist() == [5, 6, 7] and t["k.1"].dtype == torch_dtype
        want = {"F32": k[1], "F16": k[1].astype(np.float16).astype(np.float32),
                "BF16": bf16_to_f32(f32_to_bf16(k[1]))}[dtype]
        assert np.array_equal(t["k.1"].float().numpy(), want)


def test_bad_arguments_are_refused_before_sending():
    c = RotorClient("127.0.0.1:1")
    assert c.url == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match="dtype"):
        c.tensors("u", dtype="f64")
    with pytest.raises(TypeError, match="ts_ms"):
        c.score("u", [], ts_ms=1.5)
    with pytest.raises(ValueError, match="TLS"):
        RotorClient("https://x")
