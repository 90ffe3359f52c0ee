/* sql/leader_election--1.0--1.1.sql: streaming-replication failover */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION leader_election UPDATE TO '1.1'" to load this file. \quit

-- leader_status() shows this node's place in replication and whether it may stand.
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
	OUT ineligible_reason text)
RETURNS record
AS 'MODULE_PATHNAME', 'leader_status'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION leader_status() IS
'this node''s view of the election and of its replication, from shared memory';

COMMENT ON FUNCTION leader_resign() IS
'hands leadership to the next node in line (a primary first waits until it has all WAL) and rejoins the queue at its tail; true if this node led';
