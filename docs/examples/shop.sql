-- A small shop, the sample database of `scripts/demo.sh`: customers,
-- products, orders and order lines, with foreign keys, an autoincrement
-- id, a text key, a composite key, money as NUMERIC, blobs and NULLs.
PRAGMA foreign_keys = ON;

CREATE TABLE customer (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  name    TEXT NOT NULL,
  email   TEXT UNIQUE,
  joined  TIMESTAMP NOT NULL,
  referred_by INTEGER REFERENCES customer(id)
);

CREATE TABLE product (
  sku    TEXT PRIMARY KEY,
  title  TEXT NOT NULL,
  price  NUMERIC(10, 2) NOT NULL,
  photo  BLOB
);

CREATE TABLE "order" (
  id          INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customer(id),
  placed_at   TIMESTAMP NOT NULL,
  state       TEXT NOT NULL DEFAULT 'open',
  note        TEXT
);

CREATE TABLE order_line (
  order_id INTEGER NOT NULL REFERENCES "order"(id),
  sku      TEXT NOT NULL REFERENCES product(sku),
  qty      INTEGER NOT NULL,
  PRIMARY KEY (order_id, sku)
);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO customer (name, email, joined, referred_by)
SELECT 'customer ' || i, 'c' || i || '@example.com',
       datetime('2026-01-01', '+' || (i * 7) || ' hours'),
       CASE WHEN i % 5 = 0 THEN i - 3 END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
INSERT INTO product (sku, title, price, photo)
SELECT printf('SKU-%03d', i), 'product ' || i, printf('%.2f', 1.5 + i * 0.75),
       CASE WHEN i % 4 = 0 THEN CAST(printf('PNG%061d', i) AS BLOB) END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO "order" (id, customer_id, placed_at, state, note)
SELECT i, 1 + (i * 37) % 200, datetime('2026-03-01', '+' || (i * 3) || ' hours'),
       CASE WHEN i < 900 THEN 'shipped' ELSE 'open' END,
       CASE WHEN i % 10 = 0 THEN 'gift wrap' END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO order_line (order_id, sku, qty)
SELECT i, printf('SKU-%03d', 1 + (i * 13) % 40), 1 + i % 3 FROM n
UNION ALL
SELECT i, printf('SKU-%03d', 1 + (i * 17 + 5) % 40), 1 FROM n WHERE i % 2 = 0 AND (i * 13) % 40 <> (i * 17 + 5) % 40;
