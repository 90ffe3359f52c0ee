--
-- leader_election.* settings: values from sql/regress.conf, check hooks
-- (through ALTER SYSTEM, which validates without applying anything) and
-- PGC_SIGHUP context (no SET in a session).
--
SHOW leader_election.endpoints;
SHOW leader_election.prefix;
SHOW leader_election.node_name;
SHOW leader_election.lease_ttl;
SHOW leader_election.request_timeout;
SHOW leader_election.candidate;
SHOW leader_election.max_lag_on_failover;
SHOW leader_election.switchover_timeout;

SELECT name, context, vartype, min_val, max_val, boot_val
FROM pg_settings WHERE name LIKE 'leader\_election.%' ORDER BY name;

-- invalid values are rejected
ALTER SYSTEM SET leader_election.lease_ttl = 1;
ALTER SYSTEM SET leader_election.lease_ttl = 3601;
ALTER SYSTEM SET leader_election.request_timeout = 99;
ALTER SYSTEM SET leader_election.request_timeout = 60001;
ALTER SYSTEM SET leader_election.synchronous_mode = 'maybe';
ALTER SYSTEM SET leader_election.synchronous_node_count = 0;
ALTER SYSTEM SET leader_election.synchronous_node_count = 9;
ALTER SYSTEM SET leader_election.endpoints = 'ftp://x';
ALTER SYSTEM SET leader_election.endpoints = '';
ALTER SYSTEM SET leader_election.endpoints = 'http://127.0.0.1:2379,ftp://x';
ALTER SYSTEM SET leader_election.endpoints = 'http://127.0.0.1:2379, http://127.0.0.1:2379/';
ALTER SYSTEM SET leader_election.prefix = '';
ALTER SYSTEM SET leader_election.prefix = '/leader_election/';
ALTER SYSTEM SET leader_election.candidate = 'maybe';
ALTER SYSTEM SET leader_election.max_lag_on_failover = -1;
ALTER SYSTEM SET leader_election.max_lag_on_failover = '1 parsec';
ALTER SYSTEM SET leader_election.max_lag_on_failover = '4TB';
ALTER SYSTEM SET leader_election.switchover_timeout = 99;
ALTER SYSTEM SET leader_election.switchover_timeout = '2h';
-- files must be readable now; the password file private to the server's user
ALTER SYSTEM SET leader_election.ca_file = '/nonexistent/ca.pem';
ALTER SYSTEM SET leader_election.cert_file = '/nonexistent/client.pem';
ALTER SYSTEM SET leader_election.key_file = '/nonexistent/client.key';
ALTER SYSTEM SET leader_election.ca_file = '/';
ALTER SYSTEM SET leader_election.password_file = '/nonexistent/password';
ALTER SYSTEM SET leader_election.password_file = '/etc/passwd';
ALTER SYSTEM SET leader_election.username = E'bad\nname';
-- the HTTP endpoint's address: an IP address (or localhost, or *) and a port
ALTER SYSTEM SET leader_election.http_listen = 'nonsense';
ALTER SYSTEM SET leader_election.http_listen = '127.0.0.1:0';
ALTER SYSTEM SET leader_election.http_listen = '127.0.0.1:65536';
ALTER SYSTEM SET leader_election.http_listen = '127.0.0.1:80x';
ALTER SYSTEM SET leader_election.http_listen = 'db.example.com:8008';
ALTER SYSTEM SET leader_election.http_listen = '[::1:8008';
ALTER SYSTEM SET leader_election.http_listen = ':8008';

-- valid values are accepted (then reset; nothing is reloaded)
ALTER SYSTEM SET leader_election.lease_ttl = 2;
ALTER SYSTEM SET leader_election.lease_ttl = 3600;
ALTER SYSTEM SET leader_election.request_timeout = 100;
ALTER SYSTEM SET leader_election.request_timeout = 60000;
ALTER SYSTEM SET leader_election.endpoints = 'http://127.0.0.1:2379,https://etcd.example.com:2379';
ALTER SYSTEM SET leader_election.prefix = '/a';
ALTER SYSTEM SET leader_election.node_name = 'n1';
ALTER SYSTEM SET leader_election.candidate = off;
ALTER SYSTEM SET leader_election.max_lag_on_failover = 0;
ALTER SYSTEM SET leader_election.max_lag_on_failover = '16MB';
ALTER SYSTEM SET leader_election.switchover_timeout = '30s';
-- (relative paths are in the data directory; PG_VERSION is 0600 there)
ALTER SYSTEM SET leader_election.ca_file = 'PG_VERSION';
ALTER SYSTEM SET leader_election.cert_file = 'PG_VERSION';
ALTER SYSTEM SET leader_election.key_file = 'PG_VERSION';
ALTER SYSTEM SET leader_election.username = 'pgnode';
ALTER SYSTEM SET leader_election.password_file = 'PG_VERSION';
ALTER SYSTEM SET leader_election.ca_file = '';
ALTER SYSTEM SET leader_election.http_listen = '127.0.0.1:8008';
ALTER SYSTEM SET leader_election.http_listen = '*:8008';
ALTER SYSTEM SET leader_election.http_listen = '[::1]:8008';
ALTER SYSTEM SET leader_election.http_listen = 'localhost:8008';
ALTER SYSTEM SET leader_election.http_listen = '';
ALTER SYSTEM RESET ALL;

-- PGC_SIGHUP: cannot be changed in a session
SET leader_election.lease_ttl = 5;
SET leader_election.endpoints = 'http://127.0.0.1:2379';
SET leader_election.prefix = '/x';
SET leader_election.node_name = 'x';
SET leader_election.request_timeout = 500;
SET leader_election.candidate = off;
SET leader_election.max_lag_on_failover = '16MB';
SET leader_election.switchover_timeout = '30s';
SET leader_election.ca_file = '';
SET leader_election.username = 'x';
SET leader_election.password_file = '';
-- PGC_POSTMASTER: a restart applies it
SET leader_election.http_listen = '127.0.0.1:8008';

-- nothing above changed the running values
SHOW leader_election.prefix;
SHOW leader_election.lease_ttl;
