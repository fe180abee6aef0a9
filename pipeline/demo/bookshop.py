"""The demo's sample application: a small bookshop on Flask with a real SQLite database.

It is written the way such apps are written, problems included, so that the dashboard has something to show:

- ``/reports/sales`` is slow: a heavy aggregate whose time is long-tailed (p99 around a second);
- ``/authors/<int:author_id>`` has an N+1 query pattern: one query for the author's books, then one rating
  query per book;
- ``/cart/checkout`` fails a few percent of the time (the payment provider times out: a 502);
- ``/recommendations/<int:user_id>`` leaks memory into a module-level cache (bounded by ``leak_cap_bytes``
  so that the demo never eats the machine);
- a scanner probes ``/wp-login.php``, which no rule matches (recorded once as ``<unmatched>``).

Latency is simulated, and said so: the handlers' own work ("rendering", "calling the payment provider") sleeps
for a log-normally distributed time, and the database waits inside a SQL function ``simulated_io_ms(ms)``
registered on every connection (called once per statement, from a scalar subquery), so a slow query is slow
inside ``execute``, where the DB-API integration times it. Each thread gets its own SQLite connection (WAL
mode, so readers never wait for the checkout's writes), wrapped by ``pipeline.integrations.dbapi.instrument``.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request

from ..integrations.dbapi import instrument
from ..integrations.flask import DuckPulse
from ..monitor import Monitor

SCHEMA = """
CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author_id INTEGER NOT NULL REFERENCES authors(id),
                    price_cents INTEGER NOT NULL, stock INTEGER NOT NULL);
CREATE TABLE reviews (id INTEGER PRIMARY KEY, book_id INTEGER NOT NULL REFERENCES books(id),
                      stars INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, created_at REAL NOT NULL,
                     total_cents INTEGER NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id), book_id INTEGER NOT NULL,
                          quantity INTEGER NOT NULL);
CREATE INDEX books_author ON books(author_id);
CREATE INDEX reviews_book ON reviews(book_id);
CREATE INDEX items_order ON order_items(order_id);
"""
AUTHORS, BOOKS, REVIEWS, ORDERS = 60, 500, 3_000, 1_500
WORDS = ("Duck", "River", "Night", "Garden", "Silent", "Iron", "Paper", "Winter", "Glass", "Harbor", "Lantern",
         "Orchard", "Storm", "Velvet", "Copper", "Hollow", "North", "Amber", "Salt", "Signal")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tony")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Hoare")
MB = 1024 * 1024


def seed(path: Path, rng: random.Random) -> Path:
    """Create the bookshop's SQLite database at ``path`` and fill it (about 5,000 rows, well under a second)."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.executescript(SCHEMA)
        con.executemany("INSERT INTO authors VALUES (?, ?)",
                        [(i, f"{rng.choice(FIRST)} {rng.choice(LAST)}") for i in range(1, AUTHORS + 1)])
        con.executemany("INSERT INTO books VALUES (?, ?, ?, ?, ?)",
                        [(i, f"The {rng.choice(WORDS)} {rng.choice(WORDS)}", rng.randint(1, AUTHORS),
                          rng.randint(499, 4999), rng.randint(0, 40)) for i in range(1, BOOKS + 1)])
        con.executemany("INSERT INTO reviews VALUES (?, ?, ?, ?)",
                        [(i, rng.randint(1, BOOKS), rng.randint(1, 5), "A fine read.")
                         for i in range(1, REVIEWS + 1)])
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                        [(i, f"customer-{rng.randint(1, 400)}", time.time() - rng.uniform(0, 30 * 86_400),
                          rng.randint(500, 20_000)) for i in range(1, ORDERS + 1)])
        con.executemany("INSERT INTO order_items VALUES (?, ?, ?)",
                        [(rng.randint(1, ORDERS), rng.randint(1, BOOKS), rng.randint(1, 3))
                         for _ in range(ORDERS * 3)])
        con.commit()
    finally:
        con.close()
    return path


class PaymentDeclined(Exception):
    """The (simulated) payment provider did not answer in time."""


class Bookshop:
    """The bookshop's state: its database, one instrumented connection per thread, and the leaky cache."""

    def __init__(self, db_path: Path, monitor: Monitor, seed_value: int = 7, *,
                 leak_cap_bytes: int = 96 * MB, latency_scale: float = 1.0) -> None:
        self.db_path = db_path
        self.monitor = monitor
        self.leak_cap_bytes = leak_cap_bytes
        self.latency_scale = latency_scale
        self._seed = seed_value
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        # The leak: a cache nobody ever evicts from (the bug the memory chart shows).
        self.recommendation_cache: list[bytes] = []
        self.leaked_bytes = 0

    # -- per-thread state ----------------------------------------------------------------------------------
    def rng(self) -> random.Random:
        rng: random.Random | None = getattr(self._local, "rng", None)
        if rng is None:
            rng = self._local.rng = random.Random(f"{self._seed}-{threading.get_ident()}")
        return rng

    def db(self) -> Any:
        """This thread's SQLite connection, instrumented so that every statement is a query row."""
        con = getattr(self._local, "con", None)
        if con is None:
            raw = sqlite3.connect(self.db_path, timeout=10, check_same_thread=False)
            rng = self.rng()
            scale = self.latency_scale

            def simulated_io_ms(median_ms: float) -> int:
                time.sleep(min(rng.lognormvariate(0.0, 0.6) * median_ms * scale, 3_000.0) / 1000.0)
                return 1

            raw.create_function("simulated_io_ms", 1, simulated_io_ms)
            con = self._local.con = instrument(raw, self.monitor)
            with self._lock:
                self._connections.append(raw)
        return con

    def work(self, median_ms: float, sigma: float = 0.5) -> None:
        """The handler's own time (templates, serialization, calls to other services): log-normal."""
        time.sleep(min(self.rng().lognormvariate(0.0, sigma) * median_ms * self.latency_scale, 3_000.0) / 1000.0)

    def leak(self, size: int) -> None:
        if self.leaked_bytes + size <= self.leak_cap_bytes:
            self.recommendation_cache.append(bytes(size) + self.rng().randbytes(64))
            self.leaked_bytes += size

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for con in connections:
            con.close()


def create_app(shop: Bookshop) -> Flask:
    """The bookshop's Flask app, instrumented with ``DuckPulse`` on ``shop.monitor``."""
    app = Flask("duckpulse-bookshop")
    DuckPulse(app, monitor=shop.monitor)

    @app.errorhandler(PaymentDeclined)
    def payment_declined(exc: PaymentDeclined) -> tuple[dict[str, str], int]:
        return {"error": str(exc)}, 502

    @app.get("/")
    def home() -> Any:
        rows = shop.db().execute("SELECT id, title, price_cents FROM books WHERE stock > 0 "
                                 "ORDER BY stock DESC LIMIT 10").fetchall()
        shop.work(4.0)
        return jsonify(featured=[{"id": r[0], "title": r[1], "price_cents": r[2]} for r in rows])

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> Any:
        db = shop.db()
        row = db.execute("SELECT b.id, b.title, a.name, b.price_cents FROM books b JOIN authors a "
                         "ON a.id = b.author_id WHERE b.id = ?", (book_id,)).fetchone()
        if row is None:
            abort(404)
        reviews = db.execute("SELECT stars, body FROM reviews WHERE book_id = ? ORDER BY id DESC LIMIT 5",
                             (book_id,)).fetchall()
        shop.work(6.0)
        return jsonify(id=row[0], title=row[1], author=row[2], price_cents=row[3], reviews=len(reviews))

    @app.get("/search")
    def search() -> Any:
        q = request.args.get("q", "")
        # A leading-wildcard LIKE scans the whole table: the slowest of the everyday queries.
        rows = shop.db().execute("SELECT id, title FROM books WHERE title LIKE ? AND (SELECT simulated_io_ms(12)) "
                                 "LIMIT 20", (f"%{q}%",)).fetchall()
        shop.work(5.0)
        return jsonify(results=[r[1] for r in rows])

    @app.get("/authors/<int:author_id>")
    def author(author_id: int) -> Any:
        db = shop.db()
        books = db.execute("SELECT id, title FROM books WHERE author_id = ?", (author_id,)).fetchall()
        # The N+1 pattern: one rating query per book instead of one GROUP BY for all of them.
        ratings = [db.execute("SELECT avg(stars) FROM reviews WHERE book_id = ?", (book_id,)).fetchone()[0]
                   for book_id, _ in books]
        shop.work(3.0)
        return jsonify(author=author_id, books=[{"title": t, "rating": r} for (_, t), r in
                                                zip(books, ratings, strict=True)])

    @app.post("/cart/checkout")
    def checkout() -> Any:
        db = shop.db()
        items = [(shop.rng().randint(1, BOOKS), shop.rng().randint(1, 3)) for _ in range(shop.rng().randint(1, 4))]
        prices = dict(db.execute("SELECT id, price_cents FROM books WHERE id IN (?, ?, ?, ?)",
                                 ([i for i, _ in items] + [0, 0, 0])[:4]).fetchall())
        total = sum(prices.get(i, 0) * q for i, q in items)
        shop.work(25.0, sigma=0.4)  # the payment provider's round trip
        if shop.rng().random() < 0.06:
            raise PaymentDeclined("the payment provider did not answer within 2 s")
        cur = db.cursor()
        cur.execute("INSERT INTO orders (customer, created_at, total_cents) VALUES (?, ?, ?)",
                    (f"customer-{shop.rng().randint(1, 400)}", time.time(), total))
        order_id = cur.lastrowid
        cur.executemany("INSERT INTO order_items VALUES (?, ?, ?)", [(order_id, i, q) for i, q in items])
        db.commit()
        return jsonify(order=order_id, total_cents=total), 201

    @app.get("/reports/sales")
    def sales_report() -> Any:
        rows = shop.db().execute(
            "SELECT b.title, sum(i.quantity) AS sold, sum(i.quantity * b.price_cents) AS revenue_cents "
            "FROM order_items i JOIN books b ON b.id = i.book_id JOIN orders o ON o.id = i.order_id "
            "WHERE (SELECT simulated_io_ms(260)) GROUP BY b.title ORDER BY revenue_cents DESC LIMIT 10").fetchall()
        shop.work(40.0)
        return jsonify(top=[{"title": r[0], "sold": r[1], "revenue_cents": r[2]} for r in rows])

    @app.get("/recommendations/<int:user_id>")
    def recommendations(user_id: int) -> Any:
        rows = shop.db().execute("SELECT id, title FROM books WHERE author_id = ? % 60 + 1 LIMIT 5",
                                 (user_id,)).fetchall()
        shop.leak(512 * 1024)  # "cache" the rendered page: never evicted
        shop.work(8.0)
        return jsonify(user=user_id, books=[r[1] for r in rows])

    return app
