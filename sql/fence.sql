--
-- The write fence (leader_election.fence_writes) on the single pg_regress
-- node.  sql/regress.conf turns the fence off, because pg_regress creates its
-- database before the node has won its election; this test turns it on.
--
-- The node leads while it is alone in the election.  To make it a follower
-- deterministically, a "blocker" candidate (a key with its own 60 s lease,
-- put with etcdctl) is queued ahead of it and the node resigns; revoking the
-- blocker's lease makes it lead again.  The fencing token in the fence's
-- DETAIL changes from run to run: it is shown masked.
--
SET statement_timeout = '60s';
CREATE EXTENSION leader_election;
SELECT leader_wait(20000);

-- turn the fence on; a new session surely sees the reloaded setting
ALTER SYSTEM SET leader_election.fence_writes = on;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SET statement_timeout = '60s';
SHOW leader_election.fence_writes;
SHOW leader_election.fence_bypass;
SELECT leader_is_primary();

--
-- On the leader, every kind of write works (and sets up what follows)
--
CREATE TABLE fence_t (id int PRIMARY KEY, v text);
CREATE TABLE fence_trunc AS SELECT 1 AS a;
CREATE SEQUENCE fence_seq;
CREATE FUNCTION fence_insert(i int) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN INSERT INTO fence_t VALUES (i, 'plpgsql function'); END $$;
CREATE PROCEDURE fence_proc(i int) LANGUAGE plpgsql
AS $$ BEGIN INSERT INTO fence_t VALUES (i, 'procedure'); END $$;
CREATE FUNCTION fence_sql_insert(i int) RETURNS int LANGUAGE sql
AS $$ INSERT INTO fence_t VALUES (i, 'sql function') RETURNING id $$;
-- reads, but commits twice inside the CALL
CREATE PROCEDURE fence_read_commit() LANGUAGE plpgsql
AS $$ BEGIN PERFORM count(*) FROM fence_t; COMMIT; PERFORM 1; COMMIT; END $$;
-- waits until the node follows the blocker
CREATE FUNCTION fence_wait_follower() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..400 LOOP
		IF NOT leader_is_primary() AND
		   (SELECT role = 'follower' AND leader_name = 'blocker' FROM leader_status())
		THEN
			RETURN 'following the blocker';
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN 'timed out: ' || (SELECT s::text FROM leader_status() s);
END $$;
-- runs stmt and describes its error: SQLSTATE (code), whether message, DETAIL
-- and HINT are the fence's, and the reason the DETAIL gives
CREATE FUNCTION fence_error_of(stmt text,
	OUT code text, OUT fence_error boolean, OUT reason text)
LANGUAGE plpgsql AS $$
DECLARE
	msg text;
	det text;
	hnt text;
BEGIN
	EXECUTE stmt;
	code := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	fence_error := msg = 'cannot write on node "regress": it is not the leader'
		AND det ~ '^The leader is "blocker" \(fencing token [0-9]+\)\. Refused: '
		AND hnt = 'Send writes to the leader (see leader_status() on any node).';
	reason := substring(det FROM 'Refused: (.*)$');
END $$;
CREATE ROLE regress_fence_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON fence_t TO regress_fence_user;

INSERT INTO fence_t VALUES (1, 'insert');
UPDATE fence_t SET v = 'update' WHERE id = 1;
MERGE INTO fence_t t USING (VALUES (2, 'merge')) AS s(id, v) ON t.id = s.id
	WHEN MATCHED THEN UPDATE SET v = s.v
	WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v);
COPY fence_t FROM PROGRAM 'printf "3\tcopy from\n"';
\copy fence_t FROM PROGRAM 'printf "4\tcopy from stdin\n"'
SELECT id FROM fence_t WHERE id = 1 FOR UPDATE;
SELECT id FROM fence_t WHERE id = 1 FOR SHARE;
WITH w AS (INSERT INTO fence_t VALUES (5, 'writable cte') RETURNING id)
SELECT id FROM w;
SELECT fence_insert(6);          -- also caches the INSERT's plan in this session
CALL fence_proc(7);
SELECT fence_sql_insert(8);
DO $$ BEGIN INSERT INTO fence_t VALUES (9, 'do'); END $$;
PREPARE fence_prep(int) AS INSERT INTO fence_t VALUES ($1, 'prepared');
EXECUTE fence_prep(10);
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
INSERT INTO fence_t VALUES (11, 'explain analyze');
BEGIN;
INSERT INTO fence_t VALUES (12, 'transaction');
DELETE FROM fence_t WHERE id = 12;
INSERT INTO fence_t VALUES (12, 'transaction');
COMMIT;
TRUNCATE fence_trunc;
SELECT nextval('fence_seq');
SELECT setval('fence_seq', 10);
CREATE TABLE fence_ddl (a int);
ALTER TABLE fence_ddl ADD COLUMN b int;
CREATE INDEX fence_ddl_a ON fence_ddl (a);
COMMENT ON TABLE fence_ddl IS 'ddl';
DROP TABLE fence_ddl;
SELECT lo_create(424242);
SELECT lo_put(424242, 0, 'leader');
SELECT lowrite(lo_open(424242, 131072), 'LEADER');   -- 131072 = INV_WRITE
SELECT lo_from_bytea(424243, 'x');
SELECT lo_unlink(424243);
\lo_import /dev/null
\lo_unlink :LASTOID
SELECT * FROM fence_t ORDER BY id;

--
-- Follow a blocker.  The transaction around the resignation wrote while the
-- node led, so it cannot commit (commit-time fence).
--
\! export ETCDCTL_API=3; e="etcdctl --endpoints=http://127.0.0.1:23790 --command-timeout=5s"; l=$($e lease grant 60 | cut -d' ' -f2) && $e put --lease=$l /leader_election/regress/$l blocker >/dev/null
BEGIN;
INSERT INTO fence_t VALUES (20, 'written while leading');
SELECT leader_resign();
SELECT fence_wait_follower();
\set VERBOSITY terse
COMMIT;
\echo :SQLSTATE
SELECT count(*) AS row_20 FROM fence_t WHERE id = 20;
SELECT role, leader_name, queue_position, leader_is_primary() FROM leader_status();
SELECT "position", node_name, is_self FROM leader_candidates() ORDER BY "position";

-- the whole error once: SQLSTATE, message, DETAIL (token masked), HINT
\set VERBOSITY default
DO $$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	INSERT INTO fence_t VALUES (21, 'fenced');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RAISE NOTICE 'SQLSTATE: %', st;
	RAISE NOTICE 'message: %', msg;
	RAISE NOTICE 'detail: %', regexp_replace(det, 'fencing token [0-9]+', 'fencing token N');
	RAISE NOTICE 'hint: %', hnt;
END $$;

--
-- On the follower every write is refused
--
\set VERBOSITY terse
INSERT INTO fence_t VALUES (21, 'fenced');
UPDATE fence_t SET v = 'fenced';
DELETE FROM fence_t;
MERGE INTO fence_t t USING (VALUES (1, 'merge')) AS s(id, v) ON t.id = s.id
	WHEN MATCHED THEN UPDATE SET v = s.v;
COPY fence_t FROM PROGRAM 'printf "22\tcopy from\n"';
\copy fence_t FROM '/dev/null'
\echo :SQLSTATE
TRUNCATE fence_t;
SELECT id FROM fence_t WHERE id = 1 FOR UPDATE;
SELECT id FROM fence_t WHERE id = 1 FOR NO KEY UPDATE;
SELECT id FROM fence_t WHERE id = 1 FOR SHARE;
SELECT id FROM fence_t WHERE id = 1 FOR KEY SHARE;
WITH w AS (INSERT INTO fence_t VALUES (23, 'writable cte') RETURNING id)
SELECT id FROM w;
WITH d AS (DELETE FROM fence_t RETURNING id) SELECT count(*) FROM d;
-- functions, procedures, DO blocks; fence_insert's plan was cached above
SELECT fence_insert(24);
CALL fence_proc(25);
SELECT fence_sql_insert(26);
DO $$ BEGIN INSERT INTO fence_t VALUES (27, 'do'); END $$;
-- prepared statements: prepared while leading, or now
EXECUTE fence_prep(28);
\echo :SQLSTATE
PREPARE fence_prep_delete AS DELETE FROM fence_t;
EXECUTE fence_prep_delete;
-- EXPLAIN ANALYZE runs the statement
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
INSERT INTO fence_t VALUES (29, 'explain analyze');
-- an explicit transaction
BEGIN;
SELECT count(*) FROM fence_t;
INSERT INTO fence_t VALUES (30, 'transaction');
ROLLBACK;
-- DDL
CREATE TABLE fence_new (a int);
CREATE TABLE fence_new_as AS SELECT 1 AS a;
ALTER TABLE fence_t ADD COLUMN w int;
CREATE INDEX fence_t_v ON fence_t (v);
CREATE VIEW fence_view AS SELECT * FROM fence_t;
CREATE FUNCTION fence_new_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE SCHEMA fence_schema;
COMMENT ON TABLE fence_t IS 'fenced';
GRANT SELECT ON fence_t TO PUBLIC;
CREATE ROLE regress_fence_new;
ALTER SEQUENCE fence_seq RESTART;
DROP TABLE fence_trunc;
DROP SEQUENCE fence_seq;
CREATE EXTENSION IF NOT EXISTS plpgsql;
-- sequences
SELECT nextval('fence_seq');
SELECT setval('fence_seq', 100);
-- large objects, through SQL and through the fast-path protocol (psql's \lo_*)
SELECT lo_create(0);
SELECT lo_creat(-1);
SELECT lo_from_bytea(0, 'fenced');
SELECT lo_import('/dev/null');
SELECT lo_put(424242, 0, 'fenced');
SELECT lowrite(lo_open(424242, 131072), 'fenced');
SELECT lo_truncate(lo_open(424242, 131072), 0);
SELECT lo_unlink(424242);
\lo_import /dev/null
\echo :SQLSTATE
\lo_unlink 424242
\echo :SQLSTATE
-- COMMIT PREPARED would commit what was prepared elsewhere
COMMIT PREPARED 'fence_gid';

-- the same through dynamic SQL, with SQLSTATE and reason
SELECT stmt, e.*
FROM unnest(ARRAY[
	'INSERT INTO fence_t VALUES (31, ''x'')',
	'UPDATE fence_t SET v = ''x''',
	'DELETE FROM fence_t',
	'MERGE INTO fence_t t USING (VALUES (1)) s(id) ON t.id = s.id WHEN MATCHED THEN DELETE',
	'COPY fence_t FROM PROGRAM ''printf "31\tx\n"''',
	'TRUNCATE fence_t',
	'SELECT * FROM fence_t FOR UPDATE',
	'SELECT * FROM fence_t FOR KEY SHARE',
	'WITH w AS (INSERT INTO fence_t VALUES (31, ''x'') RETURNING 1) SELECT * FROM w',
	'SELECT fence_insert(31)',
	'CALL fence_proc(31)',
	'EXPLAIN ANALYZE INSERT INTO fence_t VALUES (31, ''x'')',
	'CREATE TABLE fence_new (a int)',
	'DROP TABLE fence_t',
	'SELECT nextval(''fence_seq'')',
	'SELECT setval(''fence_seq'', 100)',
	'SELECT lo_create(0)',
	'SELECT lo_put(424242, 0, ''x'')',
	'SELECT lo_unlink(424242)']) AS stmt,
	fence_error_of(stmt) AS e;

--
-- On the follower, reads and everything else that writes nothing work
--
\set VERBOSITY default
SELECT * FROM fence_t ORDER BY id;
COPY (SELECT id, v FROM fence_t WHERE id <= 2 ORDER BY id) TO STDOUT;
SELECT last_value FROM fence_seq;
SELECT convert_from(lo_get(424242), 'UTF8') AS lo;
SET work_mem = '8MB';
SHOW work_mem;
RESET work_mem;
EXPLAIN (COSTS OFF) INSERT INTO fence_t VALUES (40, 'explain');
EXPLAIN (COSTS OFF) UPDATE fence_t SET v = 'explain';
EXPLAIN (COSTS OFF) SELECT * FROM fence_t FOR UPDATE;
EXPLAIN (COSTS OFF) SELECT lo_create(0);
LISTEN fence_channel;
UNLISTEN fence_channel;
-- maintenance changes no data, though VACUUM, ANALYZE and a procedure that
-- commits run transactions of their own inside the statement
VACUUM fence_t;
ANALYZE fence_t;
VACUUM (FULL, ANALYZE) fence_t;
ANALYZE;
CALL fence_read_commit();
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM fence_t;
SELECT pg_current_xact_id() IS NOT NULL AS has_xid;
COMMIT;
-- the extension's own functions
SELECT leader_is_primary(), leader_wait(0), leader_resign();
SELECT role, node_name, leader_name, queue_position, valid_until IS NULL AS no_validity,
       last_error IS NULL AS healthy
FROM leader_status();
SELECT count(*) AS candidates FROM leader_candidates();

-- temporary tables, sequences and views: created, written, dropped
CREATE TEMP TABLE fence_tmp (id serial PRIMARY KEY, v text);
INSERT INTO fence_tmp (v) VALUES ('a'), ('b');
INSERT INTO fence_tmp (v) SELECT v FROM fence_t WHERE id = 1;
UPDATE fence_tmp SET v = 'c' WHERE id = 2;
DELETE FROM fence_tmp WHERE id = 1;
SELECT id, v FROM fence_tmp WHERE id = 2 FOR UPDATE;
MERGE INTO fence_tmp t USING (VALUES (3, 'merged')) AS s(id, v) ON t.id = s.id
	WHEN MATCHED THEN UPDATE SET v = s.v;
COPY fence_tmp FROM PROGRAM 'printf "10\tcopied\n"';
WITH w AS (INSERT INTO fence_tmp VALUES (11, 'cte') RETURNING id) SELECT id FROM w;
SELECT * FROM fence_tmp ORDER BY id;
ALTER TABLE fence_tmp ADD COLUMN w int;
ALTER TABLE fence_tmp RENAME COLUMN w TO w2;
ALTER TABLE fence_tmp RENAME TO fence_tmp2;
ALTER TABLE fence_tmp2 RENAME TO fence_tmp;
CREATE INDEX fence_tmp_v ON fence_tmp (v);
DROP INDEX fence_tmp_v;
CREATE TEMP VIEW fence_tmp_view AS SELECT id FROM fence_tmp;
SELECT count(*) FROM fence_tmp_view;
DROP VIEW fence_tmp_view;
CREATE TEMP TABLE fence_tmp_as AS SELECT id, v FROM fence_t;
SELECT id, v INTO TEMP fence_tmp_into FROM fence_t;
CREATE TABLE pg_temp.fence_tmp_qualified (a int);
CREATE TEMP SEQUENCE fence_tmp_seq;
SELECT nextval('fence_tmp_seq'), setval('fence_tmp_seq', 42), nextval('fence_tmp_seq');
ALTER SEQUENCE fence_tmp_seq RESTART;
SELECT nextval('fence_tmp_seq');
BEGIN;
INSERT INTO fence_tmp VALUES (20, 'in a transaction');
TRUNCATE fence_tmp;
COMMIT;
SELECT count(*) FROM fence_tmp;
-- but a permanent sequence cannot fill a temporary table, and a DROP that
-- includes a permanent table is refused
\set VERBOSITY terse
INSERT INTO fence_tmp VALUES (nextval('fence_seq'), 'sequence');
DROP TABLE fence_tmp, fence_t;
\set VERBOSITY default
DROP TABLE fence_tmp, fence_tmp_as, fence_tmp_into, fence_tmp_qualified;
DROP SEQUENCE fence_tmp_seq;

--
-- fence_bypass: a superuser may write on the follower; nobody else
--
SET leader_election.fence_bypass = on;
INSERT INTO fence_t VALUES (50, 'bypass');
SELECT nextval('fence_seq');
BEGIN;
UPDATE fence_t SET v = 'bypass, updated' WHERE id = 50;
COMMIT;
RESET leader_election.fence_bypass;
\set VERBOSITY terse
INSERT INTO fence_t VALUES (51, 'after the bypass');
BEGIN;
SET LOCAL leader_election.fence_bypass = on;
INSERT INTO fence_t VALUES (52, 'bypass in one transaction');
COMMIT;
INSERT INTO fence_t VALUES (53, 'after SET LOCAL');
SET ROLE regress_fence_user;
SELECT count(*) FROM fence_t;
SET leader_election.fence_bypass = on;
\echo :SQLSTATE
INSERT INTO fence_t VALUES (54, 'not a superuser');
RESET ROLE;
\set VERBOSITY default
SELECT * FROM fence_t WHERE id >= 50 ORDER BY id;

--
-- CREATE/DROP EXTENSION leader_election work on the follower
--
DROP EXTENSION leader_election;
CREATE EXTENSION leader_election;
SELECT role, leader_name, leader_is_primary() FROM leader_status();
-- but not CASCADE, which would drop the user's objects that depend on it
\set VERBOSITY terse
DROP EXTENSION leader_election CASCADE;
\set VERBOSITY default

--
-- Leading again.  A READ ONLY transaction begun on the follower stays
-- read-only when the node starts leading.
--
SELECT to_hex(lease_id) AS blocker_lease FROM leader_candidates()
WHERE node_name = 'blocker' \gset
\setenv FENCE_BLOCKER_LEASE :blocker_lease
BEGIN READ ONLY;
SELECT count(*) FROM fence_t;
\! ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:23790 --command-timeout=5s lease revoke "$FENCE_BLOCKER_LEASE" >/dev/null
SELECT leader_wait(20000);
SHOW transaction_read_only;
\set VERBOSITY terse
INSERT INTO fence_t VALUES (55, 'read-only transaction');
\set VERBOSITY default
ROLLBACK;
SELECT role, leader_name, queue_position FROM leader_status();
-- fenced statements left no trace; everything works again
SELECT * FROM fence_t ORDER BY id;
SELECT last_value FROM fence_seq;
SELECT convert_from(lo_get(424242), 'UTF8') AS lo;
SELECT count(*) AS fence_trunc_rows FROM fence_trunc;
SELECT fence_insert(60);
CALL fence_proc(61);
EXECUTE fence_prep(62);
SELECT count(*) FROM fence_t WHERE id >= 60;

-- clean up; turn the fence off again
DEALLOCATE ALL;
SELECT lo_unlink(424242);
DROP TABLE fence_t, fence_trunc;
DROP SEQUENCE fence_seq;
DROP FUNCTION fence_insert(int), fence_sql_insert(int), fence_wait_follower(),
	fence_error_of(text);
DROP PROCEDURE fence_proc(int), fence_read_commit();
DROP ROLE regress_fence_user;
ALTER SYSTEM RESET leader_election.fence_writes;
SELECT pg_reload_conf();
DROP EXTENSION leader_election;
