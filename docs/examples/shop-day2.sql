-- A day in the shop (`scripts/demo.sh`): orders ship, new orders arrive,
-- a price changes, a customer changes their email, an order is cancelled.
PRAGMA foreign_keys = ON;
UPDATE "order" SET state = 'shipped' WHERE id BETWEEN 900 AND 940;
INSERT INTO "order" (id, customer_id, placed_at, state) VALUES
  (1001, 12, '2026-07-10 09:12:00', 'open'),
  (1002, 77, '2026-07-10 11:40:00', 'open');
INSERT INTO order_line (order_id, sku, qty) VALUES
  (1001, 'SKU-007', 2), (1002, 'SKU-031', 1), (1002, 'SKU-007', 1);
UPDATE product SET price = '9.99' WHERE sku = 'SKU-007';
UPDATE customer SET email = 'c42@example.org' WHERE id = 42;
DELETE FROM order_line WHERE order_id = 999;
DELETE FROM "order" WHERE id = 999;
