-- The webhook retention sweep (src/webhooks/retention.rs): it finds final
-- deliveries by their last update and events by their age, and deleting an
-- event asks whether any delivery still points to it (the sweep's own
-- NOT EXISTS, and on PostgreSQL the foreign key's check), which without an
-- index on event_id would read the whole deliveries table per event.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (status, updated_at);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_events_by_age ON webhook_events (created_at);
