-- migrate:up
-- Export and erasure find a client's reviews and review rights by the client.
CREATE INDEX reviews_client ON reviews (client_id);
CREATE INDEX review_rights_client ON review_rights (client_id);

-- migrate:down
DROP INDEX review_rights_client;
DROP INDEX reviews_client;
