-- The attempt log's foreign key ran a lookup per settled try. The settlement statement logs
-- attempts only for delivery rows it holds locked, and deleting a subscription deletes its
-- deliveries' attempts explicitly after the deliveries (see postgres/subscriptions.rs).
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_delivery_id_fkey;
