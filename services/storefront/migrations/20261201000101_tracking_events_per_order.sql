-- Carrier tracking events are deduplicated per order and waybill: the carrier's uniqueKey is
-- only unique within its own waybill, so the same key on another order (or on another waybill
-- of the same order) is a different event.
ALTER TABLE tracking_events DROP CONSTRAINT tracking_events_pkey;
ALTER TABLE tracking_events ADD PRIMARY KEY (order_code, waybill_code, unique_key);
