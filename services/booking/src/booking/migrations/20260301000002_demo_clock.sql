-- migrate:up
-- How far `make demo` has moved booking's clock forward (used only with SAMTAL_BOOKING_DEMO_CLOCK).
CREATE TABLE demo_clock (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    offset_s  double precision NOT NULL DEFAULT 0
);

-- migrate:down
DROP TABLE demo_clock;
