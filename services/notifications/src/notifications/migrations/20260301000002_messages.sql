-- migrate:up
-- One row per planned message: event x recipient x purpose (dedup_key), written by the
-- event handlers in the same transaction as the chassis inbox row. It waits as
-- `scheduled` until due_at, then the sender renders it in the recipient's language
-- (`delivered`: it is in their in-app inbox) and creates its e-mail/SMS deliveries.
-- Reminders not yet due may be `dropped` (cancellation, reschedule, course ended).
CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    dedup_key        text NOT NULL UNIQUE,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    -- When the event happened: the newer change to a session's reminders wins.
    occurred_at      timestamptz NOT NULL,
    recipient_id     uuid NOT NULL,
    recipient_role   text NOT NULL CHECK (recipient_role IN ('client', 'therapist', 'clinician')),
    template         text NOT NULL,
    purpose          text NOT NULL,
    priority         text NOT NULL CHECK (priority IN ('urgent', 'normal')),
    context          jsonb NOT NULL,
    attachment_name  text,
    attachment_type  text,
    attachment       bytea,
    due_at           timestamptz NOT NULL,
    reminder_key     text,
    state            text NOT NULL DEFAULT 'scheduled'
                     CHECK (state IN ('scheduled', 'delivered', 'dropped', 'failed')),
    -- Rendered at delivery, in the language the recipient had then.
    language         text,
    subject          text,
    body             text,
    sms              text,
    delivered_at     timestamptz,
    read_at          timestamptz,
    note             text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_due ON messages (due_at) WHERE state = 'scheduled';
CREATE INDEX messages_inbox ON messages (recipient_id, delivered_at DESC) WHERE state = 'delivered';
CREATE INDEX messages_unread ON messages (recipient_id) WHERE state = 'delivered' AND read_at IS NULL;
CREATE INDEX messages_reminders ON messages (reminder_key text_pattern_ops)
    WHERE state = 'scheduled' AND reminder_key IS NOT NULL;

-- One row per message and outside channel (the in-app inbox is the message itself).
-- The sender claims due rows (FOR UPDATE SKIP LOCKED, urgent first) by pushing due_at
-- a lease ahead, sends outside any transaction, then records the outcome.
CREATE TABLE deliveries (
    id          bigserial PRIMARY KEY,
    message_id  uuid NOT NULL REFERENCES messages (id),
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    priority    text NOT NULL CHECK (priority IN ('urgent', 'normal')),
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL DEFAULT now(),
    claim       uuid,
    sent_at     timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE state = 'pending';
CREATE INDEX deliveries_failed ON deliveries (updated_at DESC) WHERE state = 'failed';

-- Cancellations, reschedules and ended courses, by the reminder keys they cover: events
-- travel on different topics, so a booking may be consumed after its cancellation; its
-- reminders must then not come back.
CREATE TABLE reminder_changes (
    key_prefix   text NOT NULL,
    event_id     uuid NOT NULL,
    occurred_at  timestamptz NOT NULL,
    reason       text NOT NULL,
    PRIMARY KEY (key_prefix, event_id)
);

-- migrate:down
DROP TABLE reminder_changes;
DROP TABLE deliveries;
DROP TABLE messages;
