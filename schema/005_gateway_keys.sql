-- 005_gateway_keys.sql - idempotency keys that name exactly one payment.
--
-- Up to 004 the worker built the key as order_id || ':' || command_id, and both IDs may
-- contain ':', so order "shop" with command "1:pay" and order "shop:1" with command
-- "pay" shared one key. From now on the worker records "<order_id>|<command_id>" ('|' is
-- outside the ID charset [A-Za-z0-9._:-]; see payq_gateway_key in worker/gateway.c),
-- which no old key can equal.
--
-- A payment already pending or unknown keeps the key it was charged with: the channel
-- knows the charge by that key only. So this migration rewrites no key; every later
-- charge and query reads the stored one back. What it checks is that every live gateway
-- payment has a key stored, so that nothing ever has to rebuild one: the constraint
-- fails the migration if a row breaks it, and keeps future rows honest.
ALTER TABLE payq.payments
    ADD CONSTRAINT payments_live_key
    CHECK (status NOT IN ('pending', 'unknown') OR idempotency_key IS NOT NULL);
