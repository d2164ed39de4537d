"""Deterministic synthetic news-feed events for training and testing rotor.

Generative story (everything drawn from ``numpy.random.default_rng(seed)``):

* **Items.** A fixed pool of ``N_ITEMS`` articles. Each has a topic, a publisher
  (publishers specialise in a home topic and carry a reputation), and a quality
  scalar (publisher reputation + noise). Its 8 features are the topic centroid +
  noise + quality times a fixed direction, so features reveal topic and quality.
* **Users.** Heavy-tailed activity (log-normal event counts), Dirichlet topic
  affinities, a timezone, a local daily activity peak and a weekly pattern
  (weekday, weekend or even), and a base click propensity. Sessions are placed on
  days and hours drawn from the user's own cycle; a session has a few impressions
  seconds apart, partly chosen from the user's favourite topics.
* **Engagement.** ``logit P(click)`` = user base + topic affinity + item quality +
  the user's own time-of-day / day-of-week engagement cycle (peaks at the user's
  activity peak, in the local evening, or on weekends; the phase differs per user,
  so it is only learnable from the user's own past event times) + surface
  (notifications > search > feed) + a return-after-absence boost for the whole
  session + in-session fatigue + recency (a click on the same topic within ~1 h
  raises the chance again, decaying with ``exp(-dt / 1 h)``).
  Likes and shares happen only after a click (likelier for good items, liked
  topics; shares likelier after a like); dwell time grows with quality.

Output: JSONL, one event per line, in log order (ts_ms, user_id, per-user
sequence). ``write_jsonl`` writes a file, ``iter_events`` yields the same events
as dicts, ``simulate`` exposes the raw arrays and hidden user/item parameters.
CLI: ``python -m sirenrope.synth --events N --seed S --out PATH [--users U]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Iterator

import numpy as np

from .cli import parse_with_config

ITEM_DIM = 8
TOPICS = (
    "world", "politics", "business", "tech", "science", "health",
    "sports", "entertainment", "travel", "food", "local", "weather",
)
SURFACES = ("feed", "notification", "search")
ACTIONS = ("click", "like", "share", "dwell_s")
LABELS = ("click", "like", "share")
N_PUBLISHERS = 200
N_ITEMS = 5000

DEFAULT_START_MS = 1767571200000  # 2026-01-05T00:00:00Z, a Monday
DEFAULT_SPAN_DAYS = 56
EVENTS_PER_USER = 200

ENGAGEMENT_TYPES = ("peak", "evening", "weekend")
WEEKLY_TYPES = ("weekday", "weekend", "even")

_DAY_S = 86400.0
_HOUR_S = 3600.0
_SESSION_GAP_S = 1800.0  # a gap longer than this starts a new session
_RECENCY_TAU_S = 3600.0

# Logit coefficients of the click model (tuned for ~15 % clicks).
_BASE_MEAN = -3.0
_BASE_SD = 0.5
_W_AFFINITY = 1.2
_W_QUALITY = 0.6
_W_RECENCY = 1.3
_SURFACE_BONUS = np.array([0.0, 0.9, 0.5])
_W_FATIGUE = 0.04
_W_RETURN = 0.6


@dataclasses.dataclass(frozen=True)
class SynthData:
    """All arrays of one generated data set.

    Event arrays have one entry per event, in output (log) order. User arrays are
    indexed by user index (``user_id`` = "u%04d" % index); item arrays by item
    index. ``eng_peak_hour_utc`` is the UTC hour at which the user's daily click
    cycle is highest and ``eng_daily_amp`` its amplitude (logit units).
    """

    n_users: int
    # events, output order
    user: np.ndarray          # int64 user index
    seq: np.ndarray           # int64 per-user sequence number (0 = first event)
    ts_ms: np.ndarray         # int64
    item: np.ndarray          # int64 item index
    surface: np.ndarray       # int64 index into SURFACES
    click: np.ndarray         # int8
    like: np.ndarray          # int8
    share: np.ndarray         # int8
    dwell_s: np.ndarray       # float64, rounded to 0.1 s, 0 when not clicked
    click_logit: np.ndarray   # float64 logit of P(click) actually used
    # items
    item_topic: np.ndarray
    item_publisher: np.ndarray
    item_quality: np.ndarray
    item_features: np.ndarray  # [N_ITEMS, ITEM_DIM] float64 rounded to 4 decimals
    # users
    user_affinity: np.ndarray  # [n_users, len(TOPICS)] Dirichlet
    user_tz_hours: np.ndarray
    user_peak_hour_utc: np.ndarray   # activity peak
    user_weekly_type: np.ndarray     # index into WEEKLY_TYPES
    user_engagement_type: np.ndarray  # index into ENGAGEMENT_TYPES
    eng_peak_hour_utc: np.ndarray
    eng_daily_amp: np.ndarray
    user_base: np.ndarray

    @property
    def n_events(self) -> int:
        return int(self.user.shape[0])


def _wrap_hours(h: np.ndarray) -> np.ndarray:
    return np.mod(h, 24.0)


def _local_weekend(t_s: np.ndarray, tz_h: np.ndarray) -> np.ndarray:
    """True where the local day of week is Saturday or Sunday."""
    local_day = np.floor((t_s + tz_h * _HOUR_S) / _DAY_S).astype(np.int64)
    return (local_day + 3) % 7 >= 5  # 1970-01-01 was a Thursday (Mon = 0)


def simulate(
    n_events: int,
    seed: int = 0,
    n_users: int | None = None,
    start_ms: int = DEFAULT_START_MS,
    span_days: int = DEFAULT_SPAN_DAYS,
) -> SynthData:
    """Generate ``n_events`` events and return them with the hidden parameters."""
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if span_days < 1:
        raise ValueError(f"span_days must be >= 1, got {span_days}")
    if n_users is None:
        n_users = max(1, n_events // EVENTS_PER_USER)
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    n_topics = len(TOPICS)
    rng = np.random.default_rng(seed)

    # ---- items -------------------------------------------------------------
    topic_pop = rng.dirichlet(np.full(n_topics, 4.0))
    centroids = rng.normal(0.0, 1.5, size=(n_topics, ITEM_DIM))
    quality_dir = rng.normal(size=ITEM_DIM)
    quality_dir /= np.linalg.norm(quality_dir)
    pub_reputation = rng.normal(0.0, 0.6, size=N_PUBLISHERS)
    item_topic = rng.choice(n_topics, size=N_ITEMS, p=topic_pop)
    # Publisher k's home topic is k % n_topics; 85 % of items come from a home publisher.
    n_home = (N_PUBLISHERS - 1 - item_topic) // n_topics + 1
    home_pub = item_topic + n_topics * np.floor(rng.random(N_ITEMS) * n_home).astype(np.int64)
    any_pub = rng.integers(0, N_PUBLISHERS, size=N_ITEMS)
    item_publisher = np.where(rng.random(N_ITEMS) < 0.85, home_pub, any_pub)
    item_quality = pub_reputation[item_publisher] + rng.normal(0.0, 0.8, size=N_ITEMS)
    feats = (centroids[item_topic]
             + rng.normal(0.0, 0.6, size=(N_ITEMS, ITEM_DIM))
             + 1.0 * item_quality[:, None] * quality_dir[None, :])
    item_features = np.round(np.clip(feats, -10.0, 10.0), 4)
    # items of each topic, for sampling by topic; popularity skew inside a topic
    items_by_topic = np.argsort(item_topic, kind="stable")
    topic_start = np.searchsorted(item_topic[items_by_topic], np.arange(n_topics))
    topic_count = np.bincount(item_topic, minlength=n_topics)

    # ---- users -------------------------------------------------------------
    affinity = rng.dirichlet(np.full(n_topics, 0.4), size=n_users)
    tz = rng.integers(-8, 10, size=n_users).astype(np.float64)
    peak_local = (rng.choice(np.array([8.0, 12.5, 19.5, 22.0]), size=n_users)
                  + rng.normal(0.0, 1.0, size=n_users))
    peak_utc = _wrap_hours(peak_local - tz)
    weekly_type = rng.choice(3, size=n_users, p=[0.45, 0.25, 0.30])
    eng_type = rng.choice(3, size=n_users, p=[0.55, 0.25, 0.20])
    daily_amp = np.where(eng_type == 2, 0.3, rng.uniform(0.9, 1.6, size=n_users))
    eng_peak_local = np.where(eng_type == 1, 21.0, peak_local)
    eng_peak_utc = _wrap_hours(eng_peak_local - tz)
    # weekly engagement: weekend-type users click much more on weekends
    weekly_sign = np.select([weekly_type == 0, weekly_type == 1], [-1.0, 1.0], 0.0)
    wk_on = np.where(eng_type == 2, 0.9, 0.15 * weekly_sign)
    wk_off = np.where(eng_type == 2, -0.35, -0.15 * weekly_sign)
    user_base = rng.normal(_BASE_MEAN, _BASE_SD, size=n_users)
    like_bias = rng.normal(0.0, 0.5, size=n_users)
    activity = rng.lognormal(0.0, 1.2, size=n_users)

    if n_events >= n_users:
        n_per_user = 1 + rng.multinomial(n_events - n_users, activity / activity.sum())
    else:
        n_per_user = rng.multinomial(n_events, activity / activity.sum())

    # ---- sessions ----------------------------------------------------------
    mean_size = np.clip(2.0 + n_per_user / (3.0 * span_days), 2.0, 40.0)
    n_sess = np.where(n_per_user > 0,
                      np.maximum(1, np.rint(n_per_user / mean_size)), 0).astype(np.int64)
    total_sess = int(n_sess.sum())
    sess_user = np.repeat(np.arange(n_users), n_sess)
    # local day: weighted by the user's weekly activity pattern
    day_rel = np.arange(span_days)
    day_local_abs = np.floor(start_ms / 1000.0 / _DAY_S) + day_rel
    day_is_weekend = (day_local_abs.astype(np.int64) + 3) % 7 >= 5
    wk_mult = np.array([[1.0, 0.45], [0.8, 2.0], [1.0, 1.0]])  # [weekly_type, weekend?]
    day_w = wk_mult[weekly_type][:, day_is_weekend.astype(np.int64)]  # [n_users, span_days]
    day_cdf = np.cumsum(day_w, axis=1)
    day_cdf /= day_cdf[:, -1:]
    u_day = rng.random(total_sess)
    sess_day = np.minimum(
        (day_cdf[sess_user] < u_day[:, None]).sum(axis=1), span_days - 1)
    # local time of day: mostly near the activity peak, some uniform background
    near_peak = rng.random(total_sess) < 0.7
    tod_h = np.where(near_peak,
                     peak_local[sess_user] + rng.normal(0.0, 2.0, size=total_sess),
                     rng.uniform(0.0, 24.0, size=total_sess))
    tod_ms = np.floor(_wrap_hours(tod_h) * _HOUR_S * 1000.0).astype(np.int64)
    span_ms = span_days * 86_400_000
    start_midnight = (start_ms // 86_400_000) * 86_400_000
    local_ms = sess_day * 86_400_000 + tod_ms - (tz[sess_user] * _HOUR_S * 1000).astype(np.int64)
    sess_start_ms = start_ms + np.mod(start_midnight + local_ms - start_ms, span_ms)
    sess_weight = rng.exponential(1.0, size=total_sess)

    # ---- assign events to sessions ---------------------------------------------
    ev_user = np.repeat(np.arange(n_users), n_per_user)
    sess_off = np.concatenate([[0], np.cumsum(n_sess)])
    wcum = np.concatenate([[0.0], np.cumsum(sess_weight)])
    w_lo = wcum[sess_off[ev_user]]
    w_hi = wcum[sess_off[ev_user + 1]]
    target = w_lo + rng.random(n_events) * (w_hi - w_lo)
    ev_sess = np.searchsorted(wcum, target, side="right") - 1
    ev_sess = np.clip(ev_sess, sess_off[ev_user], sess_off[ev_user + 1] - 1)
    order = np.argsort(ev_sess, kind="stable")
    ev_user = ev_user[order]
    ev_sess = ev_sess[order]
    first_of_sess = np.ones(n_events, dtype=bool)
    first_of_sess[1:] = ev_sess[1:] != ev_sess[:-1]
    gaps = 1500 + np.floor(rng.exponential(7000.0, size=n_events)).astype(np.int64)
    gaps[first_of_sess] = 0
    csum = np.cumsum(gaps)
    sess_first_idx = np.maximum.accumulate(np.where(first_of_sess, np.arange(n_events), 0))
    within_ms = csum - csum[sess_first_idx]
    ev_ts = sess_start_ms[ev_sess] + within_ms

    # user-major, time order: this defines the per-user sequence number
    um = np.lexsort((np.arange(n_events), ev_ts, ev_user))
    ev_user = ev_user[um]
    ev_ts = ev_ts[um]
    user_off = np.concatenate([[0], np.cumsum(n_per_user)])
    seq = np.arange(n_events) - user_off[ev_user]

    # post-hoc sessions (gap > 30 min) for fatigue and return-after-absence
    t_s = ev_ts / 1000.0
    gap_s = np.full(n_events, np.inf)
    same_user = np.zeros(n_events, dtype=bool)
    same_user[1:] = ev_user[1:] == ev_user[:-1]
    gap_s[1:] = np.where(same_user[1:], t_s[1:] - t_s[:-1], np.inf)
    new_sess = gap_s > _SESSION_GAP_S
    sess_head = np.maximum.accumulate(np.where(new_sess, np.arange(n_events), 0))
    pos_in_sess = np.arange(n_events) - sess_head
    gap_h_head = np.minimum(gap_s[sess_head], 30 * _DAY_S) / _HOUR_S
    return_term = _W_RETURN * (1.0 - np.exp(-gap_h_head / 48.0)) - 0.3

    # ---- impressions: surface, topic, item ------------------------------------
    surface = np.where(new_sess & (rng.random(n_events) < 0.3), 1, 0)
    surface = np.where((surface == 0) & (rng.random(n_events) < 0.12), 2, surface)
    p_personal = np.array([0.5, 0.6, 0.9])[surface]
    aff_cdf = np.cumsum(affinity, axis=1)
    aff_cdf[:, -1] = 1.0
    u_t = rng.random(n_events)
    topic_personal = (aff_cdf[ev_user] < u_t[:, None]).sum(axis=1)
    pop_cdf = np.cumsum(topic_pop)
    pop_cdf[-1] = 1.0
    topic_global = np.searchsorted(pop_cdf, rng.random(n_events), side="right")
    topic_global = np.minimum(topic_global, n_topics - 1)
    ev_topic = np.where(rng.random(n_events) < p_personal, topic_personal, topic_global)
    within = np.floor(topic_count[ev_topic] * rng.random(n_events) ** 2).astype(np.int64)
    ev_item = items_by_topic[topic_start[ev_topic] + within]
    ev_topic = item_topic[ev_item]

    # ---- click logit (all but recency) -----------------------------------------
    aff = affinity[ev_user, ev_topic]
    aff_term = np.clip(_W_AFFINITY * np.log((aff + 0.02) / (1.0 / n_topics + 0.02)), -2.5, 2.5)
    local_h = _wrap_hours(t_s / _HOUR_S + tz[ev_user])
    daily = daily_amp[ev_user] * np.cos(2 * np.pi * (local_h - eng_peak_local[ev_user]) / 24.0)
    weekend = _local_weekend(t_s, tz[ev_user])
    weekly = np.where(weekend, wk_on[ev_user], wk_off[ev_user])
    q = item_quality[ev_item]
    logit = (user_base[ev_user] + aff_term + _W_QUALITY * q + daily + weekly
             + _SURFACE_BONUS[surface] + return_term
             - _W_FATIGUE * np.minimum(pos_in_sess, 25))

    # ---- sequential part: recency of same-topic clicks --------------------------
    u_click = rng.random(n_events)
    click = np.zeros(n_events, dtype=bool)
    final_logit = logit.copy()
    lengths = n_per_user
    by_len = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[by_len]
    starts = user_off[:-1][by_len]
    last_click = np.full((n_users, n_topics), -np.inf)
    n_active = int((sorted_len > 0).sum())
    max_len = int(sorted_len[0]) if n_users else 0
    for k in range(max_len):
        while n_active > 0 and sorted_len[n_active - 1] <= k:
            n_active -= 1
        users = by_len[:n_active]
        idx = starts[:n_active] + k
        tp = ev_topic[idx]
        tk = t_s[idx]
        lg = logit[idx] + _W_RECENCY * np.exp((last_click[users, tp] - tk) / _RECENCY_TAU_S)
        final_logit[idx] = lg
        c = u_click[idx] * (1.0 + np.exp(-lg)) < 1.0  # u < sigmoid(lg)
        click[idx] = c
        last_click[users[c], tp[c]] = tk[c]

    # ---- likes, shares, dwell ---------------------------------------------------
    like_logit = -1.7 + 0.8 * q + 0.5 * aff_term + like_bias[ev_user]
    like = click & (rng.random(n_events) < 1.0 / (1.0 + np.exp(-like_logit)))
    share_logit = -3.3 + 0.7 * q + 0.3 * aff_term + 1.2 * like
    share = click & (rng.random(n_events) < 1.0 / (1.0 + np.exp(-share_logit)))
    mu = 3.0 + 0.35 * q + 0.15 * aff_term + 0.3 * like
    dwell_raw = np.exp(mu + rng.normal(0.0, 0.7, size=n_events))
    dwell = np.where(click, np.maximum(0.1, np.round(np.minimum(dwell_raw, 3600.0), 1)), 0.0)

    # ---- log order -------------------------------------------------------------
    out = np.lexsort((seq, ev_user, ev_ts))
    return SynthData(
        n_users=n_users,
        user=ev_user[out], seq=seq[out], ts_ms=ev_ts[out], item=ev_item[out],
        surface=surface[out], click=click[out].astype(np.int8),
        like=like[out].astype(np.int8), share=share[out].astype(np.int8),
        dwell_s=dwell[out], click_logit=final_logit[out],
        item_topic=item_topic, item_publisher=item_publisher, item_quality=item_quality,
        item_features=item_features,
        user_affinity=affinity, user_tz_hours=tz, user_peak_hour_utc=peak_utc,
        user_weekly_type=weekly_type, user_engagement_type=eng_type,
        eng_peak_hour_utc=eng_peak_utc, eng_daily_amp=daily_amp, user_base=user_base,
    )


def _float_str(x: float, ndigits: int) -> str:
    return repr(round(float(x), ndigits) + 0.0)  # + 0.0 turns -0.0 into 0.0


def _format_lines(data: SynthData, chunk: int = 200_000) -> Iterator[str]:
    """Yields JSONL text in chunks (each ending with a newline)."""
    n = data.n_events
    id_width = max(8, len(str(max(n - 1, 0))))
    user_width = max(4, len(str(data.n_users - 1)))
    user_str = [f"u{u:0{user_width}d}" for u in range(data.n_users)]
    item_str = [
        '{"id": "i%05d", "features": [%s]}'
        % (i, ", ".join(_float_str(v, 4) for v in data.item_features[i]))
        for i in range(N_ITEMS)
    ]
    attrs_str = [
        '{"topic": "%s", "surface": "%s", "publisher": "pub%d"}'
        % (TOPICS[data.item_topic[i]], s, data.item_publisher[i])
        for i in range(N_ITEMS) for s in SURFACES
    ]
    no_action = '{"click": 0, "like": 0, "share": 0, "dwell_s": 0.0}'
    prefix = '{"event_id": "e%0' + str(id_width) + 'd", "user_id": "'
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        users = data.user[lo:hi].tolist()
        ts = data.ts_ms[lo:hi].tolist()
        items = data.item[lo:hi].tolist()
        attr_idx = (data.item[lo:hi] * len(SURFACES) + data.surface[lo:hi]).tolist()
        clicks = data.click[lo:hi].tolist()
        likes = data.like[lo:hi].tolist()
        shares = data.share[lo:hi].tolist()
        dwells = data.dwell_s[lo:hi].tolist()
        actions = [
            '{"click": 1, "like": %d, "share": %d, "dwell_s": %.1f}' % (lk, sh, dw)
            if c else no_action
            for c, lk, sh, dw in zip(clicks, likes, shares, dwells)
        ]
        lines = [
            f'{prefix % eid}{user_str[u]}", "ts_ms": {t}, "item": {item_str[it]}, '
            f'"action": {act}, "attrs": {attrs_str[ai]}}}\n'
            for eid, u, t, it, act, ai in zip(
                range(lo, hi), users, ts, items, actions, attr_idx)
        ]
        yield "".join(lines)


def _summary(data: SynthData) -> dict:
    n = data.n_events

    def rate(a: np.ndarray) -> float:
        return round(float(a.mean()), 6) if n else float("nan")

    return {
        "n_events": n,
        "n_users": int(np.unique(data.user).size),
        "click_rate": rate(data.click),
        "like_rate": rate(data.like),
        "share_rate": rate(data.share),
        "first_ts_ms": int(data.ts_ms[0]) if n else None,
        "last_ts_ms": int(data.ts_ms[-1]) if n else None,
    }


def write_jsonl(
    path,
    n_events: int,
    seed: int = 0,
    n_users: int | None = None,
    start_ms: int = DEFAULT_START_MS,
    span_days: int = DEFAULT_SPAN_DAYS,
) -> dict:
    """Writes ``n_events`` events to ``path`` (JSONL) and returns a summary dict:
    n_events, n_users (users with at least one event), click_rate, like_rate,
    share_rate, first_ts_ms, last_ts_ms (rates are nan and times None when empty).
    The last session may run a few minutes past ``start_ms + span_days``."""
    data = simulate(n_events, seed, n_users, start_ms, span_days)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for text in _format_lines(data):
            f.write(text)
    return _summary(data)


def iter_events(
    n_events: int,
    seed: int = 0,
    n_users: int | None = None,
    start_ms: int = DEFAULT_START_MS,
    span_days: int = DEFAULT_SPAN_DAYS,
) -> Iterator[dict]:
    """Yields the events ``write_jsonl`` would write with the same arguments, as dicts."""
    data = simulate(n_events, seed, n_users, start_ms, span_days)
    for text in _format_lines(data, chunk=10_000):
        for line in text.splitlines():
            yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sirenrope.synth",
                                 description="Write deterministic synthetic news-feed events (JSONL).")
    ap.add_argument("--events", type=int, default=0, help="number of events to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="output JSONL path")
    ap.add_argument("--users", type=int, default=None,
                    help=f"number of users (default: events // {EVENTS_PER_USER})")
    ap.add_argument("--start-ms", type=int, default=DEFAULT_START_MS)
    ap.add_argument("--span-days", type=int, default=DEFAULT_SPAN_DAYS)
    args = parse_with_config(ap, argv, "synth")
    if args.events <= 0 or not args.out:
        ap.error("--events (> 0) and --out are required")
    summary = write_jsonl(args.out, args.events, args.seed, args.users,
                          args.start_ms, args.span_days)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
