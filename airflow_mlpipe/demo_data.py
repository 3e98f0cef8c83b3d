"""Synthetic ``user_events`` for demos and tests: realistic enough that a recommender can learn it.

The generator draws users and items from ``n_clusters`` latent taste groups. Each event picks,
with probability ``taste_strength``, an item of the user's own group, otherwise any item; in both
cases items are weighted by a Zipf popularity, so a few items are very popular (what a popularity
baseline exploits) while the groups give matrix factorisation structure to learn. Users' activity
is heavy-tailed too (log-normal, or a Zipf power law with ``user_zipf_exponent``). Each event is
a ``view``, ``click`` or ``purchase`` (purchases are likelier within the user's taste), whose
``value`` is the dwell time in seconds for views and clicks and the item's price for purchases.
Timestamps are uniform over the ``days`` before ``end_date``.

The table written is ``user_events(user_id INTEGER, item_id INTEGER, event_type TEXT, value REAL,
date TEXT)``, ``date`` as ``YYYY-MM-DD HH:MM:SS`` (UTC), indexed. Only the stdlib ``sqlite3`` and
numpy are used::

    python -m airflow_mlpipe.demo_data /tmp/analytics.db
    AIRFLOW_CONN_ANALYTICS_DB=sqlite:////tmp/analytics.db
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
from pathlib import Path

EVENT_TYPES = ("view", "click", "purchase")
TABLE = "user_events"

#: Rows converted to Python objects and inserted at a time.
_INSERT_CHUNK = 500_000

_DDL = f"""
CREATE TABLE {TABLE} (
    user_id INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    value REAL NOT NULL,
    date TEXT NOT NULL
)
"""


def generate_user_events(
    path: str | Path,
    n_users: int = 3_000,
    n_items: int = 1_000,
    n_events: int = 300_000,
    seed: int = 0,
    end_date: datetime.date | datetime.datetime | str | None = None,
    days: int = 60,
    n_clusters: int = 16,
    taste_strength: float = 0.8,
    zipf_exponent: float = 0.9,
    user_zipf_exponent: float | None = None,
) -> int:
    """Write ``n_events`` synthetic events into the ``user_events`` table of the SQLite file ``path``.

    An existing ``user_events`` table is replaced; other tables are left alone. ``end_date``
    (default: today, UTC) is exclusive: events fall in ``[end_date - days, end_date)``. The same
    arguments always give the same rows. Returns the number of rows written.

    User activity is log-normal by default; with ``user_zipf_exponent`` it follows a Zipf law
    instead (a power law, as in real event logs: a few users generate a large share of events).
    """
    import numpy as np

    if min(n_users, n_items, n_events, days, n_clusters) <= 0:
        raise ValueError("n_users, n_items, n_events, days and n_clusters must be positive")
    if not 0.0 <= taste_strength <= 1.0:
        raise ValueError("taste_strength must be between 0 and 1")
    if user_zipf_exponent is not None and user_zipf_exponent < 0:
        raise ValueError("user_zipf_exponent must not be negative")
    end = _end_datetime(end_date)
    rng = np.random.default_rng(seed)

    # Items: a taste group each, a Zipf popularity over a random ranking, and a price.
    item_cluster = rng.integers(0, n_clusters, size=n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf_exponent
    popularity = popularity[rng.permutation(n_items)]
    price = np.round(rng.lognormal(mean=3.0, sigma=0.7, size=n_items), 2)

    # Users: a taste group each and a heavy-tailed activity level.
    user_cluster = rng.integers(0, n_clusters, size=n_users)
    if user_zipf_exponent is None:
        activity = rng.lognormal(mean=0.0, sigma=0.8, size=n_users)
    else:
        ranks = np.arange(1, n_users + 1, dtype=np.float64)
        activity = np.power(ranks, -user_zipf_exponent)[rng.permutation(n_users)]
    event_user = rng.choice(n_users, size=n_events, p=activity / activity.sum())

    # Items per event: from the user's taste group with probability taste_strength, else from all.
    event_item = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    in_taste = rng.random(n_events) < taste_strength
    for cluster in range(n_clusters):
        members = np.flatnonzero(item_cluster == cluster)
        chosen = in_taste & (user_cluster[event_user] == cluster)
        if len(members) and chosen.any():
            weights = popularity[members] / popularity[members].sum()
            event_item[chosen] = rng.choice(members, size=int(chosen.sum()), p=weights)

    # Event types: purchases and clicks are likelier when the item matches the user's taste.
    matches = user_cluster[event_user] == item_cluster[event_item]
    roll = rng.random(n_events)
    purchase_p = np.where(matches, 0.08, 0.02)
    click_p = np.where(matches, 0.25, 0.10)
    event_type = np.where(roll < purchase_p, 2, np.where(roll < purchase_p + click_p, 1, 0))
    dwell = np.round(rng.lognormal(mean=np.where(matches, 3.4, 2.8), sigma=0.8), 1)
    value = np.where(event_type == 2, price[event_item], dwell)

    offsets = np.sort(rng.integers(0, days * 86_400, size=n_events)).astype("timedelta64[s]")
    start = np.datetime64(end - datetime.timedelta(days=days), "s")
    names = np.array(EVENT_TYPES)

    with sqlite3.connect(str(path)) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {TABLE}")
        connection.execute(_DDL)
        # Python objects and date strings exist for one chunk at a time, so tens of millions of
        # events fit in memory; the index is built once at the end, which is faster than per row.
        for first in range(0, n_events, _INSERT_CHUNK):
            chunk = slice(first, first + _INSERT_CHUNK)
            timestamps = np.char.replace(np.datetime_as_string(start + offsets[chunk], unit="s"), "T", " ")
            rows = zip(
                event_user[chunk].tolist(),
                event_item[chunk].tolist(),
                names[event_type[chunk]].tolist(),
                value[chunk].tolist(),
                timestamps.tolist(),
                strict=True,
            )
            connection.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?)", rows)
        connection.execute(f"CREATE INDEX {TABLE}_date ON {TABLE} (date)")
    connection.close()
    return n_events


def _end_datetime(end_date: datetime.date | datetime.datetime | str | None) -> datetime.datetime:
    if end_date is None:
        return datetime.datetime.combine(datetime.datetime.now(datetime.timezone.utc).date(), datetime.time())
    if isinstance(end_date, str):
        end_date = datetime.datetime.fromisoformat(end_date)
    if isinstance(end_date, datetime.datetime):
        if end_date.tzinfo is not None:
            end_date = end_date.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return end_date
    return datetime.datetime.combine(end_date, datetime.time())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_mlpipe.demo_data", description="Write synthetic user_events into SQLite."
    )
    parser.add_argument("path", help="SQLite database file (created if missing)")
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--user-zipf-exponent", type=float, default=None, help="power-law user activity (default log-normal)"
    )
    parser.add_argument("--end-date", default=None, help="exclusive end, ISO date (default: today, UTC)")
    args = parser.parse_args(argv)
    rows = generate_user_events(
        args.path,
        n_users=args.users,
        n_items=args.items,
        n_events=args.events,
        seed=args.seed,
        end_date=args.end_date,
        days=args.days,
        user_zipf_exponent=args.user_zipf_exponent,
    )
    print(f"wrote {rows} rows into {TABLE} of {args.path}; use it with")
    print(f"AIRFLOW_CONN_ANALYTICS_DB=sqlite:///{Path(args.path).resolve()}")


if __name__ == "__main__":
    main()
