-- 0006: the first registered user, an admin of the AdminService (the
-- server adds the configured admins). One row at most: CreateUser inserts
-- it in the user's transaction with ON CONFLICT DO NOTHING, so of two
-- registrations racing for an empty table the second waits on the
-- primary key until the first commits and then inserts nothing; exactly
-- one becomes the first user. A database with users already gets its
-- earliest.
CREATE TABLE IF NOT EXISTS first_user (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    user_id text NOT NULL REFERENCES users (id)
);

INSERT INTO first_user (user_id)
SELECT id FROM users ORDER BY created_at, id LIMIT 1
ON CONFLICT DO NOTHING;
