"""Materialize users' K/V windows from rotor's output topic and score candidates with them.

A ranker that would rather not call the API per request can keep every user's window itself:
read the output topic (deltas and snapshots, `docs/daemon.md` "One micro-batch";
`encoders/ready_tensors.h`), keep per user the rows the daemon holds, and score candidates
with the PyTorch model of the same bundle (`sirenrope.bundle`). With ``output.dtype: f32``
the scores equal the daemon's ``POST /v1/users/{id}/score`` (the same rows, the same model);
with bf16 or f16 the rows are the daemon's rounded to the wire dtype and widened back, so the
scores are close, not equal.

Two layers:

- `WindowStore` is pure logic, no Kafka: `apply(message_bytes)` places one output message
  into its user's window, by the rules below, and says what it did (`Applied`). Unit tests
  drive it with messages built from the model's own outputs (`encode_message`).
- `OutputTopicReader` is the Kafka loop (Debian's ``python3-confluent-kafka``, imported only
  when one is made, so the rest of the package works without it): it reads the output topic
  with ``isolation.level=read_committed`` (in exactly-once mode, never a row of an aborted
  transaction) and feeds the store, remembering the offset it reached per output partition.

Rules, per user (a window holds the rows at positions ``next_pos - rows .. next_pos - 1``,
``rows = min(next_pos, W)`` for a complete window; every history starts at position 0):

- **Snapshot**: the whole window; it replaces what was held. A snapshot that ends before the
  held window does and whose rows equal the held rows where both hold some is a stale repeat
  (an at-least-once redo): kept out (``stale``).
- **Delta** (the rows a batch appended, at most the newest W): placed by position. Rows at
  positions already held must equal them: then the delta is a repeat (``duplicate``, dropped)
  or continues the window (``applied``; rows older than ``next_pos - W`` are dropped).
- **Restarted history** (``state.user_ttl_ms``): a delta starting at position 0, or one that
  holds a whole window (W rows), whose rows differ from what was held, replaces the window
  (``restarted``).
- **Gap**: a delta starting after the held ``next_pos`` (a message lost to retention, a reader
  that started mid-topic), or one whose rows contradict the held ones and is not a whole
  window: the user is marked as needing a snapshot (``gap``); nothing is guessed. Its rows
  are kept, and later deltas extend them; the window is usable again once they cover a whole
  window (W rows, or back to position 0) or a snapshot comes. `score` of such a user raises
  `WindowIncomplete`.
- A message of another model (``rotor.model_id``) is refused (``model_mismatch``); one that
  does not decode is refused (``malformed``). Neither changes any window.

Rows are kept as float32 (bf16 and f16 widen exactly), compared bit for bit.

Concurrency: a `WindowStore` is not thread-safe; `OutputTopicReader` uses it from its
caller's thread. Limitations: windows live in memory (W x n_blocks x 2 x d_model x 4 bytes a
user); no persistence, a restart reads the topic again from the beginning (or from saved
offsets, when snapshots are frequent enough).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .safetensors_io import SafetensorsError, bf16_to_f32, decode, encode, f32_to_bf16

FORMAT = "rotor-ready-tensors/1"
WIRE_DTYPES = ("F32", "BF16", "F16")


class MessageError(ValueError):
    """Bytes that are not a ready-tensors message; the message names the field."""


class WindowIncomplete(LookupError):
    """The user's window has a gap (a lost delta) and no snapshot has filled it yet."""


class Applied(str, enum.Enum):
    """What `WindowStore.apply` did with one message."""

    NEW = "new"  # The user's first rows.
    APPLIED = "applied"  # Rows appended (or a snapshot taken).
    DUPLICATE = "duplicate"  # Every row was held already (an at-least-once repeat).
    STALE = "stale"  # A snapshot older than the held window, equal where they overlap.
    RESTARTED = "restarted"  # A fresh history (TTL) replaced the held one.
    GAP = "gap"  # Positions skipped or contradicted: the user needs a snapshot.
    MODEL_MISMATCH = "model_mismatch"
    MALFORMED = "malformed"


@dataclass
class Message:
    """A decoded output message; rows widened to float32."""

    kind: str  # "delta" or "snapshot"
    user_id: str
    model_id: str
    next_pos: int
    last_ts_ms: int
    source_topic: str
    source_partition: int
    source_offset: int
    dtype: str  # "F32", "BF16", "F16"
    pos: np.ndarray  # [rows] int64
    k: list[np.ndarray]  # n_blocks x [rows, d_model] float32
    v: list[np.ndarray]

    @property
    def rows(self) -> int:
        return int(self.pos.shape[0])


def _meta_int(meta: Mapping[str, str], key: str) -> int:
    if key not in meta:
        raise MessageError(f"metadata '{key}' is missing")
    text = meta[key]
    try:
        if text.strip() != text or text.startswith("+"):
            raise ValueError
        return int(text, 10)
    except ValueError:
        raise MessageError(f"metadata '{key}' = {text!r} is not an integer") from None


def _meta_str(meta: Mapping[str, str], key: str) -> str:
    if key not in meta:
        raise MessageError(f"metadata '{key}' is missing")
    return meta[key]


def decode_message(data: bytes) -> Message:
    """Parses and checks a delta or snapshot as `encoders::DecodeReadyTensors` does: the
    format, every metadata field, k.<b>/v.<b> [rows, d_model] for consecutive b, pos
    consecutive and ending at next_pos - 1. Raises `MessageError`."""
    try:
        arrays, meta = decode(data)
    except SafetensorsError as e:
        raise MessageError(str(e)) from None
    if meta.get("rotor.format") != FORMAT:
        raise MessageError(f"rotor.format {meta.get('rotor.format')!r}, want {FORMAT!r}")
    kind = _meta_str(meta, "rotor.kind")
    if kind not in ("delta", "snapshot"):
        raise MessageError(f"rotor.kind {kind!r}, want delta or snapshot")
    dtype = _meta_str(meta, "rotor.dtype")
    if dtype not in WIRE_DTYPES:
        raise MessageError(f"rotor.dtype {dtype!r}, want F32, BF16 or F16")
    pos = arrays.pop("pos", None)
    if pos is None or pos.dtype != np.dtype("<i8") or pos.ndim != 1:
        raise MessageError("tensor 'pos' missing or not a 1-d I64 tensor")
    n_blocks = len(arrays) // 2
    ks, vs = [], []
    want_dt = {"F32": np.dtype("<f4"), "BF16": np.dtype("<u2"), "F16": np.dtype("<f2")}[dtype]
    d_model = None
    for b in range(n_blocks):
        for kv, out in (("k", ks), ("v", vs)):
            name = f"{kv}.{b}"
            arr = arrays.get(name)
            if arr is None:
                raise MessageError(f"tensor '{name}' missing")
            if arr.dtype != want_dt:
                raise MessageError(f"tensor '{name}': dtype {arr.dtype}, rotor.dtype says {dtype}")
            if arr.ndim != 2 or arr.shape[0] != pos.shape[0] or (
                    d_model is not None and arr.shape[1] != d_model):
                raise MessageError(f"tensor '{name}': shape {list(arr.shape)}, want "
                                   f"[{pos.shape[0]}, d_model]")
            d_model = arr.shape[1]
            if dtype == "BF16":
                arr = bf16_to_f32(arr)
            out.append(np.ascontiguousarray(arr, dtype=np.float32))
    if len(arrays) != 2 * n_blocks or n_blocks == 0:
        raise MessageError(f"tensors {sorted(arrays)}: want k.<b> and v.<b> for b = 0..n-1")
    next_pos = _meta_int(meta, "rotor.next_pos")
    rows = int(pos.shape[0])
    if rows and not np.array_equal(pos, np.arange(next_pos - rows, next_pos, dtype=np.int64)):
        raise MessageError(f"positions {pos.tolist()[:4]}... are not consecutive ending at "
                           f"next_pos - 1 = {next_pos - 1}")
    return Message(kind=kind, user_id=_meta_str(meta, "rotor.user_id"),
                   model_id=_meta_str(meta, "rotor.model_id"), next_pos=next_pos,
                   last_ts_ms=_meta_int(meta, "rotor.last_ts_ms"),
                   source_topic=_meta_str(meta, "rotor.source_topic"),
                   source_partition=_meta_int(meta, "rotor.source_partition"),
                   source_offset=_meta_int(meta, "rotor.source_offset"), dtype=dtype,
                   pos=pos.astype(np.int64), k=ks, v=vs)


def _wire(arr: np.ndarray, dtype: str) -> tuple[np.ndarray, bool]:
    if dtype == "F32":
        return np.ascontiguousarray(arr, dtype="<f4"), False
    if dtype == "F16":
        return np.ascontiguousarray(arr, dtype="<f4").astype("<f2"), False
    return f32_to_bf16(arr), True


def encode_message(kind: str, user_id: str, model_id: str, k: Sequence[np.ndarray],
                   v: Sequence[np.ndarray], pos: np.ndarray, last_ts_ms: int,
                   source_topic: str = "rotor.events", source_partition: int = 0,
                   source_offset: int = 0, dtype: str = "F32") -> bytes:
    """A delta or snapshot as the daemon writes one (`encoders/ready_tensors.h`): rows (float32,
    rounded to ``dtype`` to nearest even) at positions ``pos`` (consecutive), next_pos =
    pos[-1] + 1. For tests and tools; the daemon's bytes come from its own encoder."""
    pos = np.asarray(pos, dtype=np.int64)
    tensors: dict[str, np.ndarray] = {"pos": pos}
    bf16 = set()
    for b, (kb, vb) in enumerate(zip(k, v)):
        for name, arr in ((f"k.{b}", kb), (f"v.{b}", vb)):
            tensors[name], is_bf16 = _wire(np.asarray(arr), dtype)
            if is_bf16:
                bf16.add(name)
    next_pos = int(pos[-1]) + 1 if pos.size else 0
    meta = {"rotor.format": FORMAT, "rotor.kind": kind, "rotor.model_id": model_id,
            "rotor.user_id": user_id, "rotor.next_pos": str(next_pos),
            "rotor.last_ts_ms": str(last_ts_ms), "rotor.source_topic": source_topic,
            "rotor.source_partition": str(source_partition),
            "rotor.source_offset": str(source_offset), "rotor.dtype": dtype}
    return encode(tensors, meta, bf16=bf16)


@dataclass
class UserWindow:
    """The rows held of one user: positions ``next_pos - rows .. next_pos - 1``, oldest first."""

    user_id: str
    k: list[np.ndarray]  # n_blocks x [rows, d_model] float32
    v: list[np.ndarray]
    next_pos: int
    last_ts_ms: int
    complete: bool  # False: a gap; rows before them are missing (needs a snapshot).
    dtype: str = "F32"  # The wire dtype of the last message applied.
    source: tuple[str, int, int] = ("", 0, -1)  # (topic, partition, offset) of that message.
    restarts: int = 0  # Restarted histories seen.

    @property
    def rows(self) -> int:
        return int(self.k[0].shape[0])

    @property
    def first_pos(self) -> int:
        return self.next_pos - self.rows

    @property
    def pos(self) -> np.ndarray:
        return np.arange(self.first_pos, self.next_pos, dtype=np.int64)

    def rows_at(self, first: int, last: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The held rows at positions first..last-1 (within the window)."""
        a, b = first - self.first_pos, last - self.first_pos
        return [t[a:b] for t in self.k], [t[a:b] for t in self.v]


def _equal_rows(w: UserWindow, m: Message, lo: int, hi: int) -> bool:
    """Whether w and m hold bit-identical rows at positions lo..hi-1 (both hold them)."""
    wk, wv = w.rows_at(lo, hi)
    a, b = lo - int(m.pos[0]), hi - int(m.pos[0])
    same = lambda x, y: np.array_equal(x.view(np.uint32), np.ascontiguousarray(y).view(np.uint32))  # noqa: E731
    return all(same(x, y[a:b]) for x, y in zip(wk, m.k)) and all(
        same(x, y[a:b]) for x, y in zip(wv, m.v))


@dataclass
class StoreStats:
    counts: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Applied})

    def __getitem__(self, outcome: Applied | str) -> int:
        return self.counts[Applied(outcome).value]


class WindowStore:
    """Every user's window, built from output messages (the rules in the module docstring).

    ``window`` is the model's W and ``model_id`` the bundle's id (messages of another model
    are refused; None accepts any). `from_bundle` takes both from a `sirenrope.bundle.Bundle`,
    whose model `score` then uses.
    """

    def __init__(self, window: int, model_id: str | None = None, model: Any = None):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.model_id = model_id
        self.model = model
        self.users: dict[str, UserWindow] = {}
        self.stats = StoreStats()

    @classmethod
    def from_bundle(cls, bundle: Any) -> "WindowStore":
        return cls(bundle.config.window, bundle.model_id, bundle.model)

    # ---- applying messages ---------------------------------------------------------------
    def apply(self, data: bytes) -> tuple[Applied, str | None]:
        """Applies one output message's bytes; returns what it did and the user (None when
        the bytes do not decode)."""
        try:
            m = decode_message(data)
        except MessageError:
            self.stats.counts[Applied.MALFORMED.value] += 1
            return Applied.MALFORMED, None
        return self.apply_message(m), m.user_id

    def apply_message(self, m: Message) -> Applied:
        out = self._apply(m)
        self.stats.counts[out.value] += 1
        return out

    def _apply(self, m: Message) -> Applied:
        W = self.window
        if self.model_id is not None and m.model_id != self.model_id:
            return Applied.MODEL_MISMATCH
        if m.rows > W:
            return Applied.MALFORMED
        held = self.users.get(m.user_id)
        if m.kind == "snapshot":
            if m.rows != min(m.next_pos, W):
                return Applied.MALFORMED  # A snapshot is always a whole window.
            if held is not None and held.complete and held.next_pos > m.next_pos and m.rows:
                lo, hi = max(int(m.pos[0]), held.first_pos), m.next_pos
                if lo < hi and _equal_rows(held, m, lo, hi):
                    return Applied.STALE
            restarted = held is not None and not self._continues(held, m)
            self._replace(m, complete=True, restarts=(held.restarts if held else 0) + restarted)
            return Applied.NEW if held is None else (
                Applied.RESTARTED if restarted else Applied.APPLIED)
        if m.rows == 0:  # Nothing to place (a delta holds at least one row in practice).
            return Applied.DUPLICATE if held is not None else Applied.NEW
        first, nxt = int(m.pos[0]), m.next_pos
        whole = first == 0 or m.rows == W  # The delta alone is a complete window.
        if held is None:
            self._replace(m, complete=whole)
            return Applied.NEW if whole else Applied.GAP
        lo, hi = max(first, held.first_pos), min(nxt, held.next_pos)
        agrees = lo >= hi or _equal_rows(held, m, lo, hi)
        if agrees and nxt <= held.next_pos and (lo < hi or not whole):
            # Every row is held already, or a part of a window older than the held rows: an
            # at-least-once repeat. (A whole window older than the held one is a restarted
            # history, or a redo that the redo's next deltas bring forward again.)
            return Applied.DUPLICATE
        if agrees and held.first_pos <= first <= held.next_pos:
            self._extend(held, m)
            return Applied.APPLIED
        if whole:
            # A fresh history (TTL restart), or a whole window after a gap: it stands alone.
            restarted = not agrees or first == 0 or nxt < held.next_pos
            self._replace(m, complete=True, restarts=held.restarts + restarted)
            return Applied.RESTARTED if restarted else Applied.APPLIED
        # A gap (positions skipped) or rows that contradict ours: keep only what the delta
        # says and wait for a snapshot (or a whole window of deltas).
        self._replace(m, complete=False, restarts=held.restarts)
        return Applied.GAP

    def _continues(self, held: UserWindow, m: Message) -> bool:
        """Whether snapshot m is the same history as the held rows (they agree where both
        hold rows, and it does not go back to a shorter history)."""
        if m.rows == 0 or held.rows == 0:
            return m.next_pos >= held.next_pos
        lo, hi = max(int(m.pos[0]), held.first_pos), min(m.next_pos, held.next_pos)
        if lo < hi:
            return _equal_rows(held, m, lo, hi)
        return m.next_pos >= held.next_pos

    def _replace(self, m: Message, complete: bool, restarts: int = 0) -> None:
        self.users[m.user_id] = UserWindow(
            user_id=m.user_id, k=[t.copy() for t in m.k], v=[t.copy() for t in m.v],
            next_pos=m.next_pos, last_ts_ms=m.last_ts_ms, complete=complete, dtype=m.dtype,
            source=(m.source_topic, m.source_partition, m.source_offset), restarts=restarts)

    def _extend(self, w: UserWindow, m: Message) -> None:
        """Appends m's rows past the held ones (m starts within or right after them)."""
        first = int(m.pos[0])
        keep = first - w.first_pos  # Held rows before the delta's first position.
        if m.next_pos > w.next_pos:
            for b in range(len(w.k)):
                w.k[b] = np.concatenate([w.k[b][:keep], m.k[b]])[-self.window:]
                w.v[b] = np.concatenate([w.v[b][:keep], m.v[b]])[-self.window:]
            w.next_pos = m.next_pos
            w.last_ts_ms = m.last_ts_ms
        # A window whose rows reach back to position 0 or fill W is complete again.
        if not w.complete and (w.first_pos == 0 or w.rows == self.window):
            w.complete = True
        w.dtype = m.dtype
        w.source = (m.source_topic, m.source_partition, m.source_offset)

    # ---- reading ---------------------------------------------------------------------------
    def get(self, user_id: str) -> UserWindow | None:
        return self.users.get(user_id)

    def needs_snapshot(self) -> list[str]:
        """Users whose windows have a gap."""
        return sorted(u for u, w in self.users.items() if not w.complete)

    def kv_cache(self, user_id: str) -> Any:
        """The user's window as a `sirenrope.model.KvCache` (the empty window at position 0
        for a user never seen, as the daemon scores one). Raises `WindowIncomplete`."""
        import torch

        from .model import KvCache

        w = self.users.get(user_id)
        if w is None:
            if self.model is None:
                raise ValueError("no model: make the store with WindowStore.from_bundle")
            return self.model.new_cache(0)
        if not w.complete:
            raise WindowIncomplete(f"user {user_id!r}: rows before position {w.first_pos} are "
                                   f"missing (a delta was lost); waiting for a snapshot")
        return KvCache(k=[torch.from_numpy(t.copy()) for t in w.k],
                       v=[torch.from_numpy(t.copy()) for t in w.v],
                       pos=torch.from_numpy(w.pos), next_pos=w.next_pos,
                       last_ts_ms=w.last_ts_ms, events_seen=w.rows)

    def score(self, user_id: str, candidates: Sequence[Mapping[str, Any]],
              ts_ms: int) -> list[dict[str, float]]:
        """Candidate i's probability per label, as ``POST /v1/users/{id}/score`` answers:
        every candidate at ``ts_ms`` and position ``next_pos`` against the user's rows (the
        empty window for a user never seen). Candidates are event-shaped dicts; their own
        ``ts_ms``, ids and actions are ignored. Raises `WindowIncomplete`, or
        `sirenrope.features.EventError` for a candidate the schema refuses."""
        return score_cache(self.model, self.kv_cache(user_id), candidates, ts_ms)


def score_cache(model: Any, cache: Any, candidates: Sequence[Mapping[str, Any]],
                ts_ms: int) -> list[dict[str, float]]:
    """`GenerativeRecommender.score_candidates` as probabilities by label name."""
    import torch

    from .features import featurize

    cfg = model.cfg
    cands = featurize([dict(c, ts_ms=ts_ms) for c in candidates], cfg, need_actions=False)
    with torch.no_grad():
        probs = torch.sigmoid(model.score_candidates(cache, cands)).numpy()
    names = [lab.name for lab in cfg.schema.labels]
    return [{n: float(p) for n, p in zip(names, row)} for row in probs]


# ---- the Kafka loop ------------------------------------------------------------------------
class OutputTopicReader:
    """Reads rotor's output topic into a `WindowStore` with confluent-kafka (Debian's
    ``python3-confluent-kafka``), ``isolation.level=read_committed``.

    Without ``group_id`` it assigns itself every partition of ``topic`` from the beginning (a
    ranker replica that wants every user); with one it joins that group and reads the
    partitions it is given, from the group's committed offsets (committing none itself:
    windows are in memory, so a restart must read from the beginning or from a snapshot).
    ``properties`` are extra librdkafka settings.

    Lifecycle: `poll` or `run_until` from one thread, then `close`. ``offsets`` holds, per
    output partition, the offset after the last message applied.
    """

    def __init__(self, store: WindowStore, bootstrap_servers: str, topic: str,
                 group_id: str | None = None, properties: Mapping[str, str] | None = None):
        try:
            import confluent_kafka
        except ImportError as e:
            raise ImportError("OutputTopicReader needs confluent-kafka (Debian: apt-get install "
                              "python3-confluent-kafka)") from e
        self._kafka = confluent_kafka
        self.store = store
        self.topic = topic
        conf = {"bootstrap.servers": bootstrap_servers, "isolation.level": "read_committed",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "group.id": group_id or "sirenrope-materialize", "enable.partition.eof": False}
        conf.update(properties or {})
        self.consumer = confluent_kafka.Consumer(conf)
        self.offsets: dict[int, int] = {}
        if group_id:
            self.consumer.subscribe([topic])
        else:
            meta = self.consumer.list_topics(topic, timeout=30)
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None or not tmeta.partitions:
                raise RuntimeError(f"topic {topic!r}: not found ({tmeta and tmeta.error})")
            self.consumer.assign([confluent_kafka.TopicPartition(
                topic, p, confluent_kafka.OFFSET_BEGINNING) for p in sorted(tmeta.partitions)])

    def poll(self, timeout_s: float = 1.0, max_messages: int = 500) -> int:
        """Applies what arrives within ``timeout_s``; returns how many messages."""
        msgs = self.consumer.consume(num_messages=max_messages, timeout=timeout_s)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == self._kafka.KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"reading {self.topic}: {err}")
            self.store.apply(msg.value() or b"")
            self.offsets[msg.partition()] = msg.offset() + 1
        return len(msgs)

    def end_offsets(self) -> dict[int, int]:
        """Each assigned partition's end: the last stable offset under read_committed (what
        a read_committed reader can reach), per partition."""
        out = {}
        for tp in self.consumer.assignment():
            _, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            out[tp.partition] = high
        return out

    def caught_up(self, targets: Mapping[int, int]) -> bool:
        """Whether the consumer's position reached ``targets`` (partition -> offset) on every
        partition. Positions count transaction markers, which carry no message."""
        tps = [self._kafka.TopicPartition(self.topic, p) for p in targets]
        positions = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
        return all(positions.get(p, -1) >= off or (off == 0) for p, off in targets.items())

    def run_until(self, targets: Mapping[int, int] | None = None, timeout_s: float = 60.0) -> None:
        """Polls until the position reaches ``targets`` (default: the partitions' ends now)
        on every partition; TimeoutError after ``timeout_s``."""
        import time

        if targets is None:
            deadline0 = time.monotonic() + timeout_s
            while not self.consumer.assignment():  # A group assignment takes a poll or two.
                self.poll(0.2)
                if time.monotonic() > deadline0:
                    raise TimeoutError(f"no partition of {self.topic} assigned in {timeout_s} s")
            targets = self.end_offsets()
        deadline = time.monotonic() + timeout_s
        while not self.caught_up(targets):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {self.topic}: did not reach {dict(targets)} in "
                                   f"{timeout_s} s (offsets applied: {self.offsets})")
            self.poll(0.2)

    def close(self) -> None:
        self.consumer.close()
