--
-- SQL API of leader_election on a single node (the pg_regress instance,
-- configured by sql/regress.conf): it is alone in its election and leads.
--
-- no statement below may hang the run, e.g. leader_wait(NULL) without etcd
SET statement_timeout = '60s';
CREATE EXTENSION leader_election;

-- the only candidate becomes leader
SELECT leader_wait(20000);
SELECT leader_is_primary();
SELECT leader_wait(0);
SELECT leader_wait(NULL);
SELECT leader_wait();

-- leader_status(): deterministic columns only
SELECT role, node_name, leader_name, queue_position, lease_ttl,
       lease_id > 0 AS lease_id_positive,
       fencing_token > 0 AS fencing_token_positive,
       valid_until > clock_timestamp() AS valid_until_future,
       valid_until <= clock_timestamp() + interval '2 seconds' AS valid_until_within_ttl,
       endpoint,
       last_error IS NULL AS healthy,
       role_since <= clock_timestamp() AS role_since_past,
       phase
FROM leader_status();

-- a primary without standbys: replication columns, and it may stand
SELECT in_recovery, timeline, wal_lag_bytes, eligible, ineligible_reason
FROM leader_status();

-- leader_candidates(): this node alone, with etcd's election key layout
SELECT c.position, c.node_name, c.is_self,
       c.key = '/leader_election/regress/' || to_hex(s.lease_id) AS key_is_prefix_slash_hex_lease,
       c.lease_id = s.lease_id AS same_lease,
       c.create_revision = s.fencing_token AS revision_is_fencing_token
FROM leader_candidates() c, leader_status() s;

-- invalid timeouts
\set VERBOSITY sqlstate
SELECT leader_wait(-1);
\set VERBOSITY terse
SELECT leader_wait(-1);
SELECT leader_wait(-2147483648);
\set VERBOSITY default

-- resign: hands over (to nobody else here), rejoins with a new lease at the
-- tail, which is the head of an empty queue: leads again with a larger token
CREATE TEMP TABLE before_resign AS
SELECT lease_id, fencing_token FROM leader_status();
SELECT leader_resign();
SELECT leader_wait(20000);
SELECT s.role, s.phase, s.queue_position,
       s.lease_id <> b.lease_id AS new_lease,
       s.fencing_token > b.fencing_token AS fencing_token_grew
FROM leader_status() s, before_resign b;
SELECT count(*) AS candidates FROM leader_candidates();

-- privileges: leader_resign() is not executable by PUBLIC, the rest is
CREATE ROLE regress_le_user;
SET ROLE regress_le_user;
SELECT leader_resign();
SELECT leader_is_primary();
SELECT leader_wait(0);
SELECT role FROM leader_status();
SELECT count(*) FROM leader_candidates();
RESET ROLE;
SELECT has_function_privilege('regress_le_user', 'leader_resign()', 'EXECUTE') AS user_may_resign;
DROP ROLE regress_le_user;

-- still the leader after all this
SELECT leader_wait(20000);

DROP EXTENSION leader_election;
