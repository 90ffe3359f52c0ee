/* leader_election 1.1 -> 1.2 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION leader_election UPDATE TO '1.2'" to load this file. \quit

-- leader_status() shows who takes over after a crash, and synchronous mode.
DROP FUNCTION leader_status();

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
	OUT phase text,
	OUT in_recovery boolean,
	OUT timeline integer,
	OUT wal_lag_bytes bigint,
	OUT eligible boolean,
	OUT ineligible_reason text,
	OUT published_lsn pg_lsn,
	OUT yielded text,
	OUT succession text,
	OUT synchronous_mode text,
	OUT synchronous_standby boolean,
	OUT synchronous_standbys text[],
	OUT automatic_failover boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'leader_status'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION leader_status() IS
'this node''s view of the election, of its replication and of synchronous mode, from shared memory';
