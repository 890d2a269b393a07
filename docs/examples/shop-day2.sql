-- The next day: one new customer and order, a price change, a removed line.
INSERT INTO customer (email, name, vip, joined) VALUES ('dee@example.com', 'Dee', 0, '2026-11-23 07:00:00');
INSERT INTO "order" (customer_id, placed, note) VALUES (4, '2026-11-23 07:05:00', 'first order');
INSERT INTO order_line VALUES (4, 'tee', 3);
UPDATE product SET price = 17.99 WHERE sku = 'tee';
DELETE FROM order_line WHERE order_id = 1 AND sku = 'tee';
