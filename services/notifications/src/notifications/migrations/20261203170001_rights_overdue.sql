-- migrate:up
-- The overdue watch looks for running requests past their due time: few rows among the
-- ten years of finished ones.
CREATE INDEX rights_requests_running_due ON rights_requests (due_at) WHERE status = 'running';

-- migrate:down
DROP INDEX rights_requests_running_due;
