-- bag-registry owns bags, parent-child links, product lines and areas, and each parent's bill
-- attachment and frozen flag. The invariants live here, not in code:
--   1. a child has at most one parent (one parent_qr column);
--   2. a parent never holds more than its capacity (CHECK on child_count, kept by the trigger);
--   5. child_count always equals the links (only the trigger changes it, in the same statement).

CREATE TABLE registry.areas (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registry.product_lines (
    name              text PRIMARY KEY,
    parent_pattern    text NOT NULL,
    capacity          integer NOT NULL CHECK (capacity BETWEEN 1 AND 1000),
    parent_weight_kg  double precision NOT NULL CHECK (parent_weight_kg >= 0),
    child_weight_kg   double precision NOT NULL CHECK (child_weight_kg >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registry.bags (
    -- Normalised (upper-case) ids: uniqueness is case-insensitive by construction. "C" collation
    -- makes prefix search an index range scan.
    qr                text COLLATE "C" PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('parent', 'child')),
    product_line      text REFERENCES registry.product_lines (name),
    area              text NOT NULL REFERENCES registry.areas (name),
    -- Parents: snapshotted from their line at creation.
    capacity          integer,
    parent_weight_kg  double precision,
    child_weight_kg   double precision NOT NULL DEFAULT 1,
    child_count       integer NOT NULL DEFAULT 0,
    -- Children: their parent.
    parent_qr         text COLLATE "C" REFERENCES registry.bags (qr),
    linked_by         uuid,
    linked_at         timestamptz,
    -- Parents: the bill holding them and whether that bill is completed.
    bill_id           text,
    frozen            boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        uuid,
    status            text GENERATED ALWAYS AS (
        CASE WHEN kind = 'parent' THEN CASE WHEN child_count >= capacity THEN 'full' ELSE 'open' END
             WHEN parent_qr IS NULL THEN 'unlinked' ELSE 'linked' END) STORED,
    CONSTRAINT bags_child_count_within_capacity CHECK (child_count BETWEEN 0 AND coalesce(capacity, 0)),
    CONSTRAINT bags_parent_shape CHECK (kind = 'child' OR (capacity IS NOT NULL AND product_line IS NOT NULL
                                                           AND parent_weight_kg IS NOT NULL AND parent_qr IS NULL)),
    CONSTRAINT bags_child_shape CHECK (kind = 'parent' OR (capacity IS NULL AND bill_id IS NULL AND NOT frozen)),
    CONSTRAINT bags_link_shape CHECK ((parent_qr IS NULL) = (linked_at IS NULL))
);

CREATE INDEX bags_children ON registry.bags (parent_qr, linked_at DESC) WHERE parent_qr IS NOT NULL;
CREATE INDEX bags_created ON registry.bags (created_at DESC, qr DESC);
CREATE INDEX bags_kind_area_created ON registry.bags (kind, area, created_at DESC, qr DESC);
CREATE INDEX bags_bill ON registry.bags (bill_id) WHERE bill_id IS NOT NULL;

-- Keeps counts equal to the links, in the same statement as the link change. An AFTER trigger:
-- it fires only for rows really inserted, updated or deleted (BEFORE INSERT triggers also fire
-- for rows that ON CONFLICT then skips). The statement locks the child row first, the trigger
-- then locks the parents in QR order, so concurrent moves cannot deadlock. A frozen parent's
-- children cannot change; the capacity CHECK refuses a link past capacity.
CREATE FUNCTION registry.maintain_links() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_parent text := NULL;
    new_parent text := NULL;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN old_parent := OLD.parent_qr; END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN new_parent := NEW.parent_qr; END IF;
    IF old_parent IS NOT DISTINCT FROM new_parent THEN
        RETURN NULL;
    END IF;
    -- NO KEY UPDATE: the same lock the count update takes, compatible with the KEY SHARE locks
    -- that other transactions' foreign-key checks hold on the parent.
    PERFORM 1 FROM registry.bags WHERE qr IN (old_parent, new_parent) ORDER BY qr FOR NO KEY UPDATE;
    IF old_parent IS NOT NULL THEN
        UPDATE registry.bags SET child_count = child_count - 1 WHERE qr = old_parent AND NOT frozen;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'parent_frozen' USING ERRCODE = 'TT001', DETAIL = old_parent;
        END IF;
    END IF;
    IF new_parent IS NOT NULL THEN
        UPDATE registry.bags SET child_count = child_count + 1
         WHERE qr = new_parent AND kind = 'parent' AND NOT frozen;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'parent_frozen' USING ERRCODE = 'TT002', DETAIL = new_parent;
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER bags_maintain_links
    AFTER INSERT OR UPDATE OF parent_qr OR DELETE ON registry.bags
    FOR EACH ROW EXECUTE FUNCTION registry.maintain_links();
