-- A small shop as SQLite: the sample scripts/demo.sh snapshots.
CREATE TABLE customer (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE,
  name TEXT, vip bool NOT NULL DEFAULT 0, joined datetime NOT NULL);
CREATE TABLE product (sku TEXT PRIMARY KEY, title TEXT NOT NULL, price decimal(10, 2), photo BLOB);
CREATE TABLE "order" (id INTEGER PRIMARY KEY AUTOINCREMENT,
  customer_id INTEGER NOT NULL REFERENCES customer(id), placed datetime NOT NULL, note TEXT);
CREATE TABLE order_line (order_id INTEGER NOT NULL REFERENCES "order"(id),
  sku TEXT NOT NULL REFERENCES product(sku), qty INTEGER NOT NULL, PRIMARY KEY (order_id, sku));
CREATE INDEX order_customer ON "order"(customer_id);
INSERT INTO customer (email, name, vip, joined) VALUES
  ('ada@example.com', 'Ada', 1, '2026-01-05 09:00:00'),
  ('bob@example.com', 'Bob', 0, '2026-02-11 17:30:00'),
  ('cyd@example.com', 'Cyd', 0, '2026-03-02 08:15:00');
INSERT INTO product VALUES ('mug', 'Mug', 8.5, x'89504e47'), ('tee', 'T-shirt', 19.99, NULL),
  ('cap', 'Cap', 12, NULL);
INSERT INTO "order" (customer_id, placed, note) VALUES (1, '2026-11-20 10:00:00', NULL),
  (2, '2026-11-21 12:00:00', 'gift wrap'), (1, '2026-11-22 15:45:00', NULL);
INSERT INTO order_line VALUES (1, 'mug', 2), (1, 'tee', 1), (2, 'cap', 1), (3, 'mug', 1);
