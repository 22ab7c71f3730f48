-- billing owns bills and the list of parents attached to each. The invariants live here, not in
-- code:
--   3. a parent is attached to at most one bill (UNIQUE (parent_qr) on attachments);
--   4. a bill never holds more parents than its capacity (CHECK on parent_count, changed only by
--      the trigger below, in the same statement as the attachment row, by a conditional update);
--   a bill is completing, completed or reopening only when full with nothing in flight.
--
-- An attachment is `pending` from the reservation until bag-registry's claim is settled
-- (confirmed, or the row is deleted), `confirmed`, or `detaching` from the start of a detach
-- until bag-registry released the parent (then the row is deleted). `parent_count` counts every
-- row (a reservation holds a place), `unsettled_count` the pending and detaching ones; users see
-- `parent_count - unsettled_count`, the confirmed parents.
--
-- Statuses: new (no confirmed parent) → processing → completing (its parents being frozen in
-- bag-registry) → completed → reopening (being unfrozen) → processing; deleting (its parents
-- being released, then the rows go; invisible to readers). The transitional ones are finished
-- by the request, or by the sweeper after a failure.

CREATE TABLE billing.bills (
    -- As entered (sanitised); unique case-insensitively through bills_bill_id_key.
    bill_id              text PRIMARY KEY,
    status               text NOT NULL DEFAULT 'new'
        CONSTRAINT bills_status_known CHECK (status IN ('new', 'processing', 'completing', 'completed', 'reopening', 'deleting')),
    capacity             integer NOT NULL CONSTRAINT bills_capacity_range CHECK (capacity BETWEEN 1 AND 500),
    parent_count         integer NOT NULL DEFAULT 0,
    unsettled_count      integer NOT NULL DEFAULT 0,
    description          text NOT NULL DEFAULT '',
    destination          text NOT NULL DEFAULT '',
    vehicle_number       text NOT NULL DEFAULT '',
    created_by           uuid,
    created_by_username  text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    status_changed_at    timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    -- Bumped by every change of the row (the events' aggregate version).
    version              bigint NOT NULL DEFAULT 1,
    CONSTRAINT bills_parent_count_within_capacity CHECK (parent_count BETWEEN 0 AND capacity),
    CONSTRAINT bills_unsettled_within_parents CHECK (unsettled_count BETWEEN 0 AND parent_count),
    CONSTRAINT bills_closed_only_when_full CHECK (
        status NOT IN ('completing', 'completed', 'reopening') OR (parent_count = capacity AND unsettled_count = 0))
);

CREATE UNIQUE INDEX bills_bill_id_key ON billing.bills (lower(bill_id));
CREATE INDEX bills_bill_id_prefix ON billing.bills (lower(bill_id) text_pattern_ops);
CREATE INDEX bills_created ON billing.bills (created_at DESC, bill_id DESC);
CREATE INDEX bills_status_created ON billing.bills (status, created_at DESC, bill_id DESC);
CREATE INDEX bills_creator_created ON billing.bills (created_by, created_at DESC, bill_id DESC);
CREATE INDEX bills_transitional ON billing.bills (status_changed_at)
    WHERE status IN ('completing', 'reopening', 'deleting');

CREATE TABLE billing.attachments (
    -- Normalised (upper-case) parent QR, as bag-registry stores it.
    parent_qr            text COLLATE "C" NOT NULL,
    bill_id              text NOT NULL REFERENCES billing.bills (bill_id),
    state                text NOT NULL
        CONSTRAINT attachments_state_known CHECK (state IN ('pending', 'confirmed', 'detaching')),
    -- Snapshotted from bag-registry's answer to the claim.
    product_line         text NOT NULL DEFAULT '',
    expected_weight_kg   double precision,
    attached_by          uuid,
    reserved_at          timestamptz NOT NULL DEFAULT now(),
    attached_at          timestamptz,
    state_changed_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT attachments_parent_on_one_bill UNIQUE (parent_qr),
    CONSTRAINT attachments_confirmed_shape CHECK (
        state = 'pending' OR (expected_weight_kg IS NOT NULL AND attached_at IS NOT NULL))
);

CREATE INDEX attachments_bill ON billing.attachments (bill_id, parent_qr);
CREATE INDEX attachments_unsettled ON billing.attachments (state_changed_at) WHERE state <> 'confirmed';

-- Keeps parent_count and unsettled_count equal to the attachment rows, in the same statement as
-- every insert, state change or delete (so even raw SQL cannot make them drift), with one
-- conditional update of the bill row: a new reservation needs an open bill (new or processing)
-- with a free place; starting a detach needs an open bill; settling (confirm, undo, finishing a
-- detach) is also allowed while the bill is being deleted. The bill row's lock serialises these
-- with the status changes (completing, reopening, deleting), which are conditional updates of
-- the same row. Refusals: TB001 bill_full, TB002 bill_completed, TB003 bill_not_found.
CREATE FUNCTION billing.maintain_bill_counts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bill       text;
    d_parents  integer := 0;
    d_unsettled integer := 0;
    allowed    text[] := ARRAY['new', 'processing', 'deleting'];
    current    text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        bill := NEW.bill_id;
        d_parents := 1;
        d_unsettled := CASE WHEN NEW.state = 'confirmed' THEN 0 ELSE 1 END;
        allowed := ARRAY['new', 'processing'];
    ELSIF TG_OP = 'DELETE' THEN
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
        d_unsettled := (CASE WHEN NEW.state = 'confirmed' THEN 0 ELSE 1 END)
                     - (CASE WHEN OLD.state = 'confirmed' THEN 0 ELSE 1 END);
        IF OLD.state = 'confirmed' AND NEW.state = 'detaching' THEN
            allowed := ARRAY['new', 'processing'];
        ELSIF NOT (NEW.state = 'confirmed' AND OLD.state IN ('pending', 'detaching')) THEN
            RAISE EXCEPTION 'attachment state % cannot become %', OLD.state, NEW.state USING ERRCODE = 'TB009';
        END IF;
    END IF;

    UPDATE billing.bills b
       SET parent_count = b.parent_count + d_parents,
           unsettled_count = b.unsettled_count + d_unsettled,
           status = CASE
               WHEN b.status IN ('new', 'processing') THEN
                   CASE WHEN (b.parent_count + d_parents) - (b.unsettled_count + d_unsettled) > 0
                        THEN 'processing' ELSE 'new' END
               ELSE b.status END,
           version = b.version + 1,
           updated_at = now()
     WHERE b.bill_id = bill
       AND b.status = ANY (allowed)
       AND (d_parents <= 0 OR b.parent_count < b.capacity);
    IF NOT FOUND THEN
        SELECT b.status INTO current FROM billing.bills b WHERE b.bill_id = bill;
        IF current IS NULL OR current = 'deleting' THEN
            RAISE EXCEPTION 'bill_not_found' USING ERRCODE = 'TB003', DETAIL = bill;
        ELSIF current IN ('new', 'processing') THEN
            RAISE EXCEPTION 'bill_full' USING ERRCODE = 'TB001', DETAIL = bill;
        ELSE
            RAISE EXCEPTION 'bill_completed' USING ERRCODE = 'TB002', DETAIL = bill;
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER attachments_maintain_bill_counts
    AFTER INSERT OR UPDATE OF state, bill_id OR DELETE ON billing.attachments
    FOR EACH ROW EXECUTE FUNCTION billing.maintain_bill_counts();
