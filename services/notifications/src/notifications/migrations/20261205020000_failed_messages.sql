-- migrate:up

-- Operators list the messages the sender set aside (no template could render them),
-- newest first: few rows among all messages, read without a scan of the table.
CREATE INDEX messages_failed ON messages (created_at DESC) WHERE state = 'failed';

-- migrate:down

DROP INDEX messages_failed;
