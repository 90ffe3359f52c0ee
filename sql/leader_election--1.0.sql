/* sql/leader_election--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION leader_election" to load this file. \quit

CREATE FUNCTION leader_is_primary()
RETURNS boolean
AS 'MODULE_PATHNAME', 'leader_is_primary'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION leader_is_primary() IS
'true while this node holds valid leadership; reads shared memory only';

CREATE FUNCTION leader_wait(timeout_ms integer DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'leader_wait'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION leader_wait(integer) IS
'waits until this node leads (true) or timeout_ms passes (false); NULL waits without limit';

CREATE FUNCTION leader_status(
	OUT role text,
	OUT node_name text,
	OUT leader_name text,
	OUT queue_position integer,
	OUT lease_id bigint,
	OUT lease_ttl integer,
	OUT fencing_token bigint,
	OUT valid_until timestamptz,
	OUT endpoint text,
	OUT last_error text,
	OUT role_since timestamptz,
	OUT phase text)
RETURNS record
AS 'MODULE_PATHNAME', 'leader_status'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION leader_status() IS
'this node''s view of the election, from shared memory';

CREATE FUNCTION leader_candidates(
	OUT "position" integer,
	OUT node_name text,
	OUT key text,
	OUT create_revision bigint,
	OUT lease_id bigint,
	OUT is_self boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'leader_candidates'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;

COMMENT ON FUNCTION leader_candidates() IS
'the election queue in order, read from etcd at call time';

CREATE FUNCTION leader_resign()
RETURNS boolean
AS 'MODULE_PATHNAME', 'leader_resign'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION leader_resign() IS
'hands leadership to the next node in line and rejoins the queue at its tail; true if this node led';

REVOKE EXECUTE ON FUNCTION leader_resign() FROM PUBLIC;
