-- Transport details printed on the dispatch document (issue 16 §4): who drives the truck and the
-- seal on its door. Optional (empty when not given) and editable on a completed bill too, since
-- they are known only after loading; like description, destination and vehicle_number they are
-- sanitised and length-checked by UpdateBill, not here.
ALTER TABLE billing.bills
    ADD COLUMN driver_name  text NOT NULL DEFAULT '',
    ADD COLUMN driver_phone text NOT NULL DEFAULT '',
    ADD COLUMN seal_number  text NOT NULL DEFAULT '';
