"""A ranker's client for rotor's HTTP API (docs/api.md), standard library only.

    from sirenrope.client import RotorClient
    rotor = RotorClient("http://127.0.0.1:8470", timeout=2.0)
    scores = rotor.score("u-42", candidates, ts_ms=now_ms)   # [{"click": 0.08, ...}, ...]
    if not scores.known: ...                                  # a cold-start score

- `user(id)`: the user's metadata (rows, next_pos, last_event_ts_ms, input offset, ...).
- `tensors(id, dtype)`: the user's window as torch tensors (`k.<b>`, `v.<b>`, `pos`, in the
  wire dtype) with the snapshot's metadata and raw bytes (`UserTensors`).
- `score(id, candidates, ts_ms)`: each candidate's probability per label (`Scores`, a list).
- `score_many({user: (candidates, ts_ms)})`: many users through `POST /v1/score`.
- `ready()`, `health()`, `readiness()`, `metrics()`.

Every error the API answers (a JSON `{"error", "detail"}` body) raises `RotorError` with the
HTTP status, the code and the detail; a connection failure or a timeout raises `RotorError`
with status 0 and code ``connection`` or ``timeout``.

Lifecycle: a client holds one keep-alive connection per thread (threads never share a
connection), opened on first use and reopened when the server closed it (its idle timeout, a
408, a 413). Concurrency: one client may be used from many threads. Limitations: plain HTTP
only (the API has no TLS), no retries beyond resending once a request that found its kept-alive
connection already closed by the server.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["RotorClient", "RotorError", "Scores", "UserTensors"]


class RotorError(Exception):
    """The API refused a request, or could not be reached.

    ``status`` is the HTTP status (0 when no response came), ``code`` the API's error code
    (``not_found``, ``invalid_json``, ``schema``, ``not_ready``, ...; ``connection`` or
    ``timeout`` when no response came, ``bad_response`` for a body that is not the API's),
    ``detail`` what the API said, naming the field. ``body`` is the parsed error body.
    """

    def __init__(self, status: int, code: str, detail: str, body: Any = None):
        super().__init__(f"{status} {code}: {detail}" if status else f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class Scores(list):
    """One user's scores: a list, candidate i's ``{label: probability}`` at index i, plus what
    the response said of the state they came from."""

    user_id: str
    known: bool  # False: the user had no state; a cold-start score from the empty window.
    next_pos: int  # The position the candidates were scored at.
    input: dict | None  # {"topic", "partition", "next_offset"} the state covers.
    model_id: str
    ts_ms: int

    @classmethod
    def _of(cls, user: Mapping[str, Any], model_id: str, ts_ms: int) -> "Scores":
        out = cls(user["scores"])
        out.user_id = user["user_id"]
        out.known = bool(user["known"])
        out.next_pos = int(user["next_pos"])
        out.input = user.get("input")
        out.model_id = model_id
        out.ts_ms = ts_ms
        return out


class UserTensors(dict):
    """A user's window: ``{"k.0": Tensor[rows, d_model], ..., "v.<b>": ..., "pos":
    Tensor[rows] int64}`` in the wire dtype (float32, bfloat16 or float16), plus
    ``metadata`` (the snapshot's ``rotor.*`` strings) and ``raw`` (the safetensors bytes, as
    the daemon publishes a snapshot)."""

    metadata: dict[str, str]
    raw: bytes

    @property
    def next_pos(self) -> int:
        return int(self.metadata["rotor.next_pos"])

    @property
    def n_blocks(self) -> int:
        return sum(1 for name in self if name.startswith("k."))


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


def user_path(user_id: str) -> str:
    """``/v1/users/<id>`` with the id percent-encoded as one path segment: '/', '%', '+',
    '?', '#', spaces and non-ASCII (as UTF-8) all escaped."""
    if not isinstance(user_id, str):
        raise TypeError(f"user id must be a str, got {type(user_id).__name__}")
    return "/v1/users/" + urllib.parse.quote(user_id, safe="")


class RotorClient:
    """rotor's HTTP API at ``url`` (``http://host:port``); ``timeout`` in seconds bounds the
    connect and every read of one request."""

    def __init__(self, url: str = "http://127.0.0.1:8470", timeout: float = 5.0):
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme != "http":
            raise ValueError(f"url {url!r}: only http:// is served (the API has no TLS)")
        if not parsed.hostname:
            raise ValueError(f"url {url!r}: no host")
        self.url = f"http://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.prefix = parsed.path.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    # ---- endpoints ------------------------------------------------------------------------
    def user(self, user_id: str) -> dict:
        """``GET /v1/users/{id}``: rows, window, first_pos, next_pos, last_event_ts_ms,
        state_age_ms, model_id, input. RotorError 404 ``not_found`` when rotor holds no state
        for the user."""
        return self._json("GET", user_path(user_id))

    def tensors(self, user_id: str, dtype: str = "f32") -> UserTensors:
        """``GET /v1/users/{id}/tensors?dtype=``: the user's window (see `UserTensors`)."""
        if dtype not in ("f32", "bf16", "f16"):
            raise ValueError(f"dtype: expected f32, bf16 or f16, got {dtype!r}")
        r = self._request("GET", f"{user_path(user_id)}/tensors?dtype={dtype}")
        return parse_tensors(r.body)

    def tensors_bytes(self, user_id: str, dtype: str = "f32") -> bytes:
        """The raw safetensors bytes of `tensors`."""
        return self._request("GET", f"{user_path(user_id)}/tensors?dtype={dtype}").body

    def score(self, user_id: str, candidates: Sequence[Any], ts_ms: int) -> Scores:
        """``POST /v1/users/{id}/score``: candidate i's probability per label at index i.
        Candidates are event-shaped dicts (``item``, ``attrs``; anything else is ignored), or
        JSON strings of them (golden candidate lines, input events) sent as they are."""
        body = _score_body(ts_ms, candidates=candidates)
        doc = self._json("POST", f"{user_path(user_id)}/score", body)
        return Scores._of(doc, doc["model_id"], doc["ts_ms"])

    def score_many(self, requests: Mapping[str, tuple[Sequence[Any], int]]
                   ) -> dict[str, Scores | RotorError]:
        """``POST /v1/score``: ``{user: (candidates, ts_ms)}`` -> ``{user: Scores}``. Users
        sharing a ``ts_ms`` go in one request (the endpoint takes one request time); a user
        whose state cannot be used maps to a `RotorError` (not raised: the others are still
        scored). A refused request as a whole (400, 503, ...) raises."""
        by_ts: dict[int, list[str]] = {}
        for user, (_, ts_ms) in requests.items():
            by_ts.setdefault(ts_ms, []).append(user)
        out: dict[str, Scores | RotorError] = {}
        for ts_ms, users in by_ts.items():
            body = _score_body(ts_ms, users=[(u, requests[u][0]) for u in users])
            doc = self._json("POST", "/v1/score", body)
            got = doc.get("users")
            if not isinstance(got, list) or len(got) != len(users):
                raise RotorError(0, "bad_response", f"POST /v1/score answered {len(got or [])} "
                                 f"users for {len(users)}", doc)
            for user, one in zip(users, got):
                if "error" in one:
                    out[user] = RotorError(200, one["error"], one.get("detail", ""), one)
                else:
                    out[user] = Scores._of(one, doc["model_id"], doc["ts_ms"])
        return out

    def health(self) -> dict:
        """``GET /healthz``."""
        return self._json("GET", "/healthz")

    def readiness(self) -> dict:
        """``GET /readyz``'s body, 200 or 503 alike: ``ready``, ``partitions`` and, when not
        ready, ``error`` and ``detail`` (the reason)."""
        r = self._request("GET", "/readyz", ok=(200, 503))
        return _parse_json(r)

    def ready(self) -> bool:
        """Whether ``/readyz`` says 200 (every assigned partition restored and consuming)."""
        return self._request("GET", "/readyz", ok=(200, 503)).status == 200

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text exposition format 0.0.4."""
        return self._request("GET", "/metrics").body.decode("utf-8")

    def close(self) -> None:
        """Closes this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "RotorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- transport ------------------------------------------------------------------------
    def _json(self, method: str, path: str, body: bytes | None = None) -> Any:
        return _parse_json(self._request(method, path, body))

    def _request(self, method: str, path: str, body: bytes | None = None,
                 ok: tuple[int, ...] = (200,)) -> _Response:
        headers = {"Accept": "application/json, application/octet-stream, text/plain"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        target = self.prefix + path
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if fresh:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.conn = conn
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError, http.client.CannotSendRequest,
                    http.client.BadStatusLine) as e:
                self.close()
                # A kept-alive connection the server had already closed: send once more on a
                # new one. A fresh connection failing is an answer.
                if not fresh and attempt == 0:
                    continue
                raise RotorError(0, "connection", f"{method} {self.url}{path}: {e!r}") from None
            except socket.timeout:
                self.close()
                raise RotorError(0, "timeout", f"{method} {self.url}{path}: no answer within "
                                 f"{self.timeout} s") from None
            except OSError as e:
                self.close()
                raise RotorError(0, "connection", f"{method} {self.url}{path}: {e}") from None
            if resp.will_close:
                self.close()
            r = _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            if r.status not in ok:
                raise _error_of(r, method, path)
            return r
        raise AssertionError("unreachable")


def _score_body(ts_ms: int, candidates: Sequence[Any] | None = None,
                users: Sequence[tuple[str, Sequence[Any]]] | None = None) -> bytes:
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise TypeError(f"ts_ms must be an int (milliseconds since the epoch), got {ts_ms!r}")

    def cands(cs: Sequence[Any]) -> str:
        # Strings are JSON text already (a golden line, an input event): sent as they are.
        return "[" + ",".join(c if isinstance(c, str) else json.dumps(c, separators=(",", ":"))
                              for c in cs) + "]"

    if candidates is not None:
        text = f'{{"ts_ms":{ts_ms},"candidates":{cands(candidates)}}}'
    else:
        parts = [f'{{"user_id":{json.dumps(u)},"candidates":{cands(cs)}}}' for u, cs in users]
        text = f'{{"ts_ms":{ts_ms},"users":[{",".join(parts)}]}}'
    return text.encode("utf-8")


def _parse_json(r: _Response) -> Any:
    try:
        return json.loads(r.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RotorError(r.status, "bad_response", f"the answer is not JSON: {e}; "
                         f"{r.body[:200]!r}") from None


def _error_of(r: _Response, method: str, path: str) -> RotorError:
    """The RotorError of a non-2xx answer: code and detail from the API's JSON error body;
    ``http_<status>`` and the body's start when the body is not one (a proxy's page)."""
    try:
        doc = json.loads(r.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return RotorError(r.status, doc["error"], str(doc.get("detail", "")), doc)
    text = r.body[:200].decode("utf-8", "replace")
    return RotorError(r.status, f"http_{r.status}", f"{method} {path}: {text}", doc)


def parse_tensors(data: bytes) -> UserTensors:
    """A snapshot message's bytes (the tensors endpoint's answer, or an output-topic snapshot)
    as `UserTensors`. Needs torch (imported here, so the rest of the client does not)."""
    import numpy as np
    import torch

    from .safetensors_io import SafetensorsError, decode

    try:
        arrays, meta = decode(data)
    except SafetensorsError as e:
        raise RotorError(200, "bad_response", f"the tensors are not safetensors: {e}") from None
    wire = meta.get("rotor.dtype", "F32")
    out = UserTensors()
    for name, arr in arrays.items():
        if name == "pos":
            out[name] = torch.from_numpy(arr)
        elif wire == "BF16":
            out[name] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        else:
            out[name] = torch.from_numpy(arr)
    out.metadata = meta
    out.raw = bytes(data)
    return out
