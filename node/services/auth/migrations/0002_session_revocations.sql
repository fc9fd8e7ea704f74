-- Sessions that can be cut off before their access tokens expire (see lib/revocations.c).
--
-- client_refreshes: the login's client refreshes its tokens and gets short-lived access tokens;
-- otherwise (API v1's web client) they are long-lived.  Refreshes keep the family's kind.
-- Families that exist already were all issued short-lived tokens.
--
-- access_expires_at: the latest expiry of an access token issued in the family.  Once it has
-- passed, a revoked family needs no entry in anyone's revocation set.
--
-- revoked_xid: the transaction that revoked the family.  ListRevokedSessions pages by it
-- rather than by revoked_at because a transaction id below the snapshot's xmin is known to
-- have ended, so a poller never misses a revocation that commits late.
ALTER TABLE auth.token_families
    ADD COLUMN client_refreshes  boolean NOT NULL DEFAULT true,
    ADD COLUMN access_expires_at timestamptz,
    ADD COLUMN revoked_xid       xid8;

ALTER TABLE auth.token_families ALTER COLUMN client_refreshes DROP DEFAULT;

CREATE INDEX token_families_revoked_idx ON auth.token_families (access_expires_at)
    WHERE revoked_xid IS NOT NULL;
