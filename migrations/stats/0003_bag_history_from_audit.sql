-- A bag's history is read from the audit trail itself (issue 18 direction 1: write each fact
-- once). `stats.audit_bags` names the QRs an event is about, exactly those the consumer used to
-- copy into stats.bag_history (services/stats/src/apply.rs); a GIN index over it, declared on the
-- partitioned parent, exists on every monthly partition (present and future).
CREATE FUNCTION stats.audit_bags(event_type text, payload jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN event_type IN ('registry.bag_registered', 'registry.bag_deleted')
            THEN ARRAY[payload->>'bag']
        WHEN event_type IN ('registry.child_linked', 'registry.child_unlinked')
            THEN ARRAY[payload->>'child_qr', payload->>'parent_qr']
        WHEN event_type = 'registry.child_moved'
            THEN array_remove(ARRAY[payload->>'child_qr', payload->>'to_parent_qr',
                                    payload->>'from_parent_qr'], NULL)
        WHEN event_type IN ('registry.parent_claimed', 'registry.parent_released',
                            'registry.parent_returned')
            THEN ARRAY[payload->>'parent_qr']
        WHEN event_type LIKE 'billing.%' AND payload->>'parent_qr' IS NOT NULL
            THEN ARRAY[payload->>'parent_qr']
    END
$$;
CREATE INDEX audit_events_bags ON stats.audit_events USING gin (stats.audit_bags(event_type, payload))
    WHERE stats.audit_bags(event_type, payload) IS NOT NULL;
-- stats.bag_history is no longer written nor read; it stays (so a stats binary of the previous
-- release still runs during a rolling upgrade) and is dropped by a later migration.
COMMENT ON TABLE stats.bag_history IS 'Unused since 0003 (history read from audit_events); dropped later.';
