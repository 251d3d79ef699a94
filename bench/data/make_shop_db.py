#!/usr/bin/env python3
"""Build bench/data/shop.sqlite, the sample database of the agent task suite (bench/agent_tasks.py).

Fictional data written for this benchmark (no real people), released with the repository.
Deterministic: rerunning writes the same rows. The SQL tasks' gold answers are checked against
this file by tests/bench/test_agent_tasks_data.py.

    .venv/bin/python bench/data/make_shop_db.py
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

PATH = Path(__file__).resolve().parent / "shop.sqlite"

CUSTOMERS = [
    (1, "Ana Lima", "Lisbon", "2023-02-11"),
    (2, "Ben Okafor", "Berlin", "2023-05-03"),
    (3, "Chloe Martin", "Paris", "2023-07-19"),
    (4, "Dmitri Petrov", "Berlin", "2023-09-30"),
    (5, "Emma Jansen", "Amsterdam", "2024-01-08"),
    (6, "Farah Haddad", "Paris", "2024-02-14"),
    (7, "Gustav Berg", "Berlin", "2024-03-22"),
    (8, "Hana Sato", "Lisbon", "2024-06-05"),
    (9, "Ivan Novak", "Prague", "2024-08-17"),
]
PRODUCTS = [
    (1, "Trail Backpack", "outdoor", 89.90),
    (2, "Camping Stove", "outdoor", 54.50),
    (3, "Noise-Cancelling Headphones", "electronics", 249.00),
    (4, "E-Reader", "electronics", 129.99),
    (5, "Mechanical Keyboard", "electronics", 119.00),
    (6, "The Pragmatic Programmer", "books", 42.00),
    (7, "Deep Work", "books", 18.50),
    (8, "Atlas of Remote Islands", "books", 27.40),
    (9, "Steel Water Bottle", "outdoor", 24.00),
    (10, "Desk Lamp", "home", 39.95),
]
ORDERS = [  # id, customer_id, product_id, quantity, order_date
    (1, 1, 6, 1, "2024-01-15"), (2, 2, 3, 1, "2024-01-20"), (3, 3, 1, 2, "2024-02-02"),
    (4, 4, 5, 1, "2024-02-11"), (5, 5, 7, 3, "2024-02-27"), (6, 1, 9, 4, "2024-03-03"),
    (7, 6, 4, 1, "2024-03-09"), (8, 2, 2, 1, "2024-03-14"), (9, 7, 10, 2, "2024-03-21"),
    (10, 3, 8, 1, "2024-03-30"), (11, 8, 6, 2, "2024-04-06"), (12, 4, 3, 1, "2024-04-18"),
    (13, 5, 1, 1, "2024-05-02"), (14, 6, 9, 6, "2024-05-19"), (15, 2, 7, 1, "2024-06-01"),
    (16, 7, 5, 1, "2024-06-23"), (17, 1, 4, 1, "2024-07-04"), (18, 3, 2, 2, "2024-07-15"),
    (19, 8, 10, 1, "2024-08-08"), (20, 4, 8, 2, "2024-08-29"), (21, 2, 9, 3, "2024-09-10"),
    (22, 6, 6, 1, "2024-09-25"), (23, 7, 3, 1, "2024-10-12"), (24, 5, 2, 1, "2024-11-03"),
]
SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, joined DATE NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    order_date DATE NOT NULL
);
"""


def build(path: Path = PATH) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    with con:
        con.executescript(SCHEMA)
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", CUSTOMERS)
        con.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", PRODUCTS)
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ORDERS)
    con.execute("VACUUM")
    con.close()
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(build())
