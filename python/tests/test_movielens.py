"""MovieLens (dslabs, through Rscript) as events: the conversion, and the real export end to end.

The export needs r-base-core and r-cran-dslabs, which tools/setup.sh installs: without them the
end-to-end tests fail (they are the dataset the model study reports on), they are not skipped.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sirenrope import movielens, train
from sirenrope.config import ModelConfig
from sirenrope.features import featurize

ROW = {"userId": "7", "movieId": "31", "rating": "4.5", "timestamp": "1260759144",
       "year": "1995", "genres": "Comedy|Drama"}


def test_a_rating_becomes_an_event_of_the_input_contract():
    ev = movielens.to_event(ROW)
    assert ev["event_id"] == "7-31" and ev["user_id"] == "u7"
    assert ev["ts_ms"] == 1260759144000
    assert ev["item"]["id"] == "m31" and ev["action"] == {"rating": 4.5}
    assert ev["attrs"] == {"genre": "Comedy"}
    features = ev["item"]["features"]
    assert len(features) == movielens.ITEM_DIM
    hot = [g for g, x in zip(movielens.GENRES, features) if x == 1.0]
    assert hot == ["Comedy", "Drama"] and sum(features[:-1]) == 2.0
    assert features[-1] == pytest.approx((1995 - 1990) / 30)


def test_labels_are_rating_thresholds():
    cfg = ModelConfig(schema=movielens.schema())
    events = [movielens.to_event(dict(ROW, rating=r, movieId=str(i)))
              for i, r in enumerate(["3.5", "4", "4.5", "5", "0.5"])]
    labels = featurize(events, cfg).labels
    assert labels[:, 0].tolist() == [0, 1, 1, 1, 0]  # rating >= 4
    assert labels[:, 1].tolist() == [0, 0, 1, 1, 0]  # rating >= 4.5


def test_no_genres_and_no_year_are_zeros_and_no_attribute():
    ev = movielens.to_event(dict(ROW, genres="(no genres listed)", year=""))
    assert ev["item"]["features"] == [0.0] * movielens.ITEM_DIM and "attrs" not in ev


def test_bad_input_is_refused_with_what_is_wrong(tmp_path):
    with pytest.raises(movielens.DatasetError, match="unknown genre 'Space Opera'"):
        movielens.to_event(dict(ROW, genres="Comedy|Space Opera"))
    bad = tmp_path / "ratings.csv"
    bad.write_text("userId,movieId,rating\n1,2,3\n")
    with pytest.raises(movielens.DatasetError, match="no column 'timestamp'"):
        movielens.read_events(str(bad))


def test_the_genre_schema_feeds_the_first_genre_to_the_angles():
    cfg = ModelConfig(schema=movielens.schema(with_genre=True))
    ev = movielens.to_event(ROW)
    assert featurize([ev], cfg).cat[0, 0] == 1 + movielens.GENRES.index("Comedy")
    plain = ModelConfig(schema=movielens.schema())
    assert cfg.angle_in_dim == plain.angle_in_dim + 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("movielens")
    return out, movielens.write(str(out))


def test_the_real_export_has_every_rating_in_log_order(exported):
    out, summary = exported
    # dslabs' movielens: 100,004 ratings by 671 users, 1995-2016.
    assert summary["events"] == 100004 and summary["users"] == 671
    events = [json.loads(line) for line in open(out / "events.jsonl", encoding="utf-8")]
    ts = np.array([e["ts_ms"] for e in events])
    assert (np.diff(ts) >= 0).all()
    assert summary["first_ts_ms"] == ts[0] and ts[0] // 1000 == 789652009
    assert len({e["event_id"] for e in events}) == len(events)
    # Every event passes the reference featurizer with its ids, as the daemon would take it.
    schema = train.load_schema(str(out / "schema_genre.json"))
    arr = featurize(events[:5000], ModelConfig(schema=schema), check_ids=True)
    assert 0.3 < arr.labels[:, 0].mean() < 0.7 and arr.labels[:, 1].mean() < arr.labels[:, 0].mean()


def test_a_small_model_trains_on_it_end_to_end(exported, tmp_path):
    """The study's smoke: a few users, one epoch, a bundle and metrics for both labels."""
    out, _ = exported
    small = tmp_path / "small"
    small.mkdir()
    subset = movielens.read_events(str(out / "ratings.csv"), limit_users=25)
    with open(small / "events.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e) + "\n" for e in subset)
    assert train.main(["--data", str(small / "events.jsonl"), "--schema",
                       str(out / "schema.json"), "--out", str(tmp_path / "b.safetensors"),
                       "--epochs", "1", "--d-model", "16", "--window", "8", "--chunk", "64",
                       "--seed", "1", "--metrics-out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["labels"]) == {"rating_ge_4", "rating_ge_4_5"}
    assert all(row["n"] > 0 and 0.0 < row["auc"] < 1.0 for row in metrics["labels"].values())
