-- Returns (SPEC §1 "Returns (IPT)"): return tickets, and the parents returned from completed
-- bills. A bill keeps its history: a returned parent moves from the bill's attachments to its
-- returns (a snapshot of its child count and weights, the ticket, who, when).
--
-- A return is a saga like a detach (see services/billing/src/saga.rs):
--   1. intent, one transaction: the attachment `confirmed` → `returning` (the trigger moves its
--      place from parent_count to returned_count, only on a completed bill), a `returning` row in
--      billing.returns under UNIQUE(bill_id, parent_qr) whose state_changed_at is the lease, and
--      the ticket's return_count + 1 (only while the ticket is open);
--   2. bag-registry's ReturnParent (release + unfreeze, one conditional statement), no lock held;
--   3. finish, conditional on the lease: the attachment row is deleted (no count changes) and the
--      return becomes `returned` with the snapshot. On a refusal the intent is undone.
-- The sweeper finishes returns whose lease expired.
--
-- Invariants: a completed bill holds parent_count + returned_count = capacity (attached +
-- returned = capacity); only a completed bill has returns, so a bill with returns can be neither
-- reopened (reopening would break bills_returns_only_when_completed) nor deleted (only new and
-- processing bills are deleted).

CREATE SEQUENCE billing.return_ticket_seq;

CREATE TABLE billing.return_tickets (
    -- RTN-<yyyymmdd>-<n>, readable, made by the database.
    ticket_id            text PRIMARY KEY DEFAULT
        'RTN-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
               || lpad(nextval('billing.return_ticket_seq')::text, 4, '0'),
    -- The C&F location the sacks come back to (a configured area).
    area                 text NOT NULL,
    notes                text NOT NULL DEFAULT '',
    status               text NOT NULL DEFAULT 'open'
        CONSTRAINT return_tickets_status_known CHECK (status IN ('open', 'committed', 'cancelled')),
    -- Returns started on this ticket (returning or returned).
    return_count         integer NOT NULL DEFAULT 0 CONSTRAINT return_tickets_count_positive CHECK (return_count >= 0),
    created_by           uuid,
    created_by_username  text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    closed_at            timestamptz,
    closed_by_username   text NOT NULL DEFAULT '',
    version              bigint NOT NULL DEFAULT 1,
    CONSTRAINT return_tickets_committed_not_empty CHECK (status <> 'committed' OR return_count > 0)
);

CREATE INDEX return_tickets_created ON billing.return_tickets (created_at DESC, ticket_id DESC);
CREATE INDEX return_tickets_status_created ON billing.return_tickets (status, created_at DESC, ticket_id DESC);

CREATE TABLE billing.returns (
    parent_qr            text COLLATE "C" NOT NULL,
    bill_id              text NOT NULL REFERENCES billing.bills (bill_id),
    ticket_id            text NOT NULL REFERENCES billing.return_tickets (ticket_id),
    state                text NOT NULL
        CONSTRAINT returns_state_known CHECK (state IN ('returning', 'returned')),
    -- The snapshot at return: the parent's line and expected weight from its attachment, its
    -- child count and actual weight from bag-registry's answer to ReturnParent.
    product_line         text NOT NULL DEFAULT '',
    child_count          integer NOT NULL DEFAULT 0,
    expected_weight_kg   double precision NOT NULL DEFAULT 0,
    actual_weight_kg     double precision NOT NULL DEFAULT 0,
    -- The area the parent was billed from (before it took the ticket's).
    area                 text NOT NULL DEFAULT '',
    returned_by          uuid,
    returned_by_username text NOT NULL DEFAULT '',
    started_at           timestamptz NOT NULL DEFAULT now(),
    returned_at          timestamptz,
    -- The lease of the saga (see services/billing/src/store/leases.rs).
    state_changed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT returns_pkey PRIMARY KEY (bill_id, parent_qr),
    CONSTRAINT returns_returned_shape CHECK (state = 'returning' OR returned_at IS NOT NULL)
);

CREATE INDEX returns_ticket ON billing.returns (ticket_id, parent_qr);
CREATE INDEX returns_parent ON billing.returns (parent_qr);
CREATE INDEX returns_returned_at ON billing.returns (returned_at) WHERE state = 'returned';
CREATE INDEX returns_unsettled ON billing.returns (state_changed_at) WHERE state = 'returning';

ALTER TABLE billing.bills ADD COLUMN returned_count integer NOT NULL DEFAULT 0;
ALTER TABLE billing.bills DROP CONSTRAINT bills_closed_only_when_full;
ALTER TABLE billing.bills ADD CONSTRAINT bills_closed_only_when_full CHECK (
    status NOT IN ('completing', 'completed', 'reopening')
    OR (parent_count + returned_count = capacity AND unsettled_count = 0));
ALTER TABLE billing.bills ADD CONSTRAINT bills_returns_only_when_completed CHECK (
    returned_count BETWEEN 0 AND capacity AND (returned_count = 0 OR status = 'completed'));

ALTER TABLE billing.attachments DROP CONSTRAINT attachments_state_known;
ALTER TABLE billing.attachments ADD CONSTRAINT attachments_state_known
    CHECK (state IN ('pending', 'confirmed', 'detaching', 'returning'));

-- As in 0001, plus returns: confirmed → returning moves the place from parent_count to
-- returned_count on a completed bill (and back, when bag-registry refuses); deleting a returning
-- row changes no count (its place is already counted as returned).
CREATE OR REPLACE FUNCTION billing.maintain_bill_counts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bill       text;
    d_parents  integer := 0;
    d_unsettled integer := 0;
    d_returned integer := 0;
    allowed    text[] := ARRAY['new', 'processing', 'deleting'];
    current    text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        bill := NEW.bill_id;
        d_parents := 1;
        d_unsettled := CASE WHEN NEW.state = 'confirmed' THEN 0 ELSE 1 END;
        allowed := ARRAY['new', 'processing'];
        IF NEW.state = 'returning' THEN
            RAISE EXCEPTION 'an attachment starts pending or confirmed' USING ERRCODE = 'TB009';
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.state = 'returning' THEN
            RETURN NULL;
        END IF;
        bill := OLD.bill_id;
        d_parents := -1;
        d_unsettled := CASE WHEN OLD.state = 'confirmed' THEN 0 ELSE -1 END;
    ELSE
        IF NEW.bill_id IS DISTINCT FROM OLD.bill_id THEN
            RAISE EXCEPTION 'an attachment never moves to another bill' USING ERRCODE = 'TB009';
        END IF;
        IF NEW.state = OLD.state THEN
            RETURN NULL;
        END IF;
        bill := NEW.bill_id;
        IF OLD.state = 'confirmed' AND NEW.state = 'returning' THEN
            d_parents := -1;
            d_returned := 1;
            allowed := ARRAY['completed'];
        ELSIF OLD.state = 'returning' AND NEW.state = 'confirmed' THEN
            d_parents := 1;
            d_returned := -1;
            allowed := ARRAY['completed'];
        ELSE
            d_unsettled := (CASE WHEN NEW.state = 'confirmed' THEN 0 ELSE 1 END)
                         - (CASE WHEN OLD.state = 'confirmed' THEN 0 ELSE 1 END);
            IF OLD.state = 'confirmed' AND NEW.state = 'detaching' THEN
                allowed := ARRAY['new', 'processing'];
            ELSIF NOT (NEW.state = 'confirmed' AND OLD.state IN ('pending', 'detaching')) THEN
                RAISE EXCEPTION 'attachment state % cannot become %', OLD.state, NEW.state USING ERRCODE = 'TB009';
            END IF;
        END IF;
    END IF;

    UPDATE billing.bills b
       SET parent_count = b.parent_count + d_parents,
           unsettled_count = b.unsettled_count + d_unsettled,
           returned_count = b.returned_count + d_returned,
           status = CASE
               WHEN b.status IN ('new', 'processing') THEN
                   CASE WHEN (b.parent_count + d_parents) - (b.unsettled_count + d_unsettled) > 0
                        THEN 'processing' ELSE 'new' END
               ELSE b.status END,
           version = b.version + 1,
           updated_at = now()
     WHERE b.bill_id = bill
       AND b.status = ANY (allowed)
       AND (d_parents <= 0 OR d_returned < 0 OR b.parent_count < b.capacity);
    IF NOT FOUND THEN
        SELECT b.status INTO current FROM billing.bills b WHERE b.bill_id = bill;
        IF current IS NULL OR current = 'deleting' THEN
            RAISE EXCEPTION 'bill_not_found' USING ERRCODE = 'TB003', DETAIL = bill;
        ELSIF d_returned <> 0 THEN
            RAISE EXCEPTION 'bill_not_completed' USING ERRCODE = 'TB004', DETAIL = bill;
        ELSIF current IN ('new', 'processing') THEN
            RAISE EXCEPTION 'bill_full' USING ERRCODE = 'TB001', DETAIL = bill;
        ELSE
            RAISE EXCEPTION 'bill_completed' USING ERRCODE = 'TB002', DETAIL = bill;
        END IF;
    END IF;
    RETURN NULL;
END $$;
