"""MovieLens (Debian's r-cran-dslabs) as rotor events: a real dataset with timestamps and genres.

    python -m sirenrope.movielens --out data/movielens          # events.jsonl + schema.json

The ratings come from the ``movielens`` data frame of the R package dslabs (Debian's
``r-cran-dslabs``, installed by tools/setup.sh): 100,004 ratings of 9,066 movies by 671 users,
1995-2016, with Unix timestamps in seconds, each movie's year and its ``|``-separated genres.
``Rscript`` exports the frame to CSV once (``ratings.csv``, kept beside the events); this
module turns each rating into one event of the daemon's input contract (DESIGN section 4):

- ``user_id`` ``u<userId>``, ``event_id`` ``<userId>-<movieId>`` (a user rates a movie once),
  ``ts_ms`` the rating's timestamp x 1000;
- ``item``: ``id`` ``m<movieId>``; ``features`` the movie's genres multi-hot (GENRES, in that
  order) then its year as (year - 1990) / 30;
- ``action``: ``rating`` (0.5-5), the value the model embeds for past events;
- ``attrs``: ``genre``, the movie's first listed genre (a categorical attribute the angle
  networks may read: ``schema(with_genre=True)``).

Labels (``schema``): ``rating_ge_4`` (rating >= 4) and ``rating_ge_4_5`` (rating >= 4.5),
thresholds 3.75 and 4.25 on ratings in steps of 0.5. Events are written in log order: by
timestamp, ties by user and movie, so one user's events are in time order and the file is the
topic a producer would have written.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict

from .config import ActionSpec, CategoricalSpec, InputSchema, ItemSpec, LabelSpec

# The genres dslabs' movielens uses, in a fixed order (the multi-hot's columns). A movie with
# none lists "(no genres listed)": all zeros.
GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
          "Sci-Fi", "Thriller", "War", "Western")
ITEM_DIM = len(GENRES) + 1
COLUMNS = ("userId", "movieId", "rating", "timestamp", "year", "genres")

# Rscript's export: the columns above, one row per rating, NA written as an empty field.
_EXPORT = """
suppressPackageStartupMessages(library(dslabs))
data(movielens)
m <- movielens[, c("userId", "movieId", "rating", "timestamp", "year", "genres")]
m$genres <- as.character(m$genres)
write.csv(m, file = commandArgs(trailingOnly = TRUE)[1], row.names = FALSE, na = "")
"""


class DatasetError(RuntimeError):
    """The dataset cannot be exported or read; the message says what to do."""


def export_csv(path: str) -> str:
    """Writes dslabs' movielens ratings to `path` (CSV, COLUMNS) with Rscript, once.

    Kept when already there. DatasetError when Rscript or the dslabs package is missing
    (tools/setup.sh installs r-base-core and r-cran-dslabs) or the export fails."""
    if os.path.exists(path):
        return path
    if shutil.which("Rscript") is None:
        raise DatasetError("Rscript not found: install r-base-core and r-cran-dslabs "
                           "(tools/setup.sh does)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    proc = subprocess.run(["Rscript", "--vanilla", "-e", _EXPORT, tmp], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise DatasetError(f"Rscript could not export dslabs' movielens (is r-cran-dslabs "
                           f"installed?): {proc.stderr.strip()[-500:]}")
    os.replace(tmp, path)
    return path


def _year_feature(year: str) -> float:
    return 0.0 if year == "" else (int(year) - 1990) / 30.0


def to_event(row: dict) -> dict:
    """One CSV row (COLUMNS, as strings) as an input event."""
    genres = [] if row["genres"] in ("", "(no genres listed)") else row["genres"].split("|")
    unknown = [g for g in genres if g not in GENRES]
    if unknown:
        raise DatasetError(f"movie {row['movieId']}: unknown genre {unknown[0]!r}")
    features = [1.0 if g in genres else 0.0 for g in GENRES] + [_year_feature(row["year"])]
    event = {"event_id": f"{row['userId']}-{row['movieId']}", "user_id": f"u{row['userId']}",
             "ts_ms": int(row["timestamp"]) * 1000,
             "item": {"id": f"m{row['movieId']}", "features": features},
             "action": {"rating": float(row["rating"])}}
    if genres:
        event["attrs"] = {"genre": genres[0]}
    return event


def read_events(csv_path: str, limit_users: int = 0) -> list[dict]:
    """The ratings of `csv_path` as events in log order (timestamp, user, movie).

    `limit_users` > 0 keeps only the users with the smallest ids (a smoke-sized subset)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{csv_path}: no column {missing[0]!r} (want {', '.join(COLUMNS)})")
        rows = list(reader)
    if limit_users > 0:
        keep = set(sorted({int(r["userId"]) for r in rows})[:limit_users])
        rows = [r for r in rows if int(r["userId"]) in keep]
    rows.sort(key=lambda r: (int(r["timestamp"]), int(r["userId"]), int(r["movieId"])))
    return [to_event(r) for r in rows]


def schema(with_genre: bool = False) -> InputSchema:
    """The input schema of these events; `with_genre` feeds the first genre to the angles."""
    categorical = ([CategoricalSpec("genre", "vocab", 4, values=list(GENRES))]
                   if with_genre else [])
    return InputSchema(item=ItemSpec(kind="features", dim=ITEM_DIM),
                       actions=[ActionSpec("rating", "identity")],
                       categorical=categorical,
                       labels=[LabelSpec("rating_ge_4", "rating", 3.75),
                               LabelSpec("rating_ge_4_5", "rating", 4.25)])


def schema_json(s: InputSchema) -> dict:
    """`s` as the JSON `train --schema` reads."""
    return asdict(s)


def write(out_dir: str, limit_users: int = 0) -> dict:
    """Exports (once) and converts: out_dir/ratings.csv, events.jsonl, schema.json and
    schema_genre.json. Returns a summary (events, users, first and last ts_ms)."""
    csv_path = export_csv(os.path.join(out_dir, "ratings.csv"))
    events = read_events(csv_path, limit_users)
    with open(os.path.join(out_dir, "events.jsonl"), "w", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")
    for name, with_genre in (("schema.json", False), ("schema_genre.json", True)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(schema_json(schema(with_genre)), f, indent=1)
    return {"events": len(events), "users": len({e["user_id"] for e in events}),
            "first_ts_ms": events[0]["ts_ms"] if events else None,
            "last_ts_ms": events[-1]["ts_ms"] if events else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/movielens", help="directory for the files")
    p.add_argument("--limit-users", type=int, default=0,
                   help="keep only this many users (smallest ids; 0: all)")
    args = p.parse_args(argv)
    try:
        summary = write(args.out, args.limit_users)
    except DatasetError as e:
        print(f"movielens: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
