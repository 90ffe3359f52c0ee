#!/usr/bin/env bash
# Installs the Debian packages needed to build, test, demo and benchmark leader_election.
# Idempotent: a machine that already has everything does no apt work at all.
set -euo pipefail

packages=(
	make gcc perl                       # build; prove runs the TAP tests
	postgresql-15 postgresql-server-dev-15  # server, pg_ctl/initdb/pgbench, PGXS, PostgreSQL::Test::*
	libcurl4-openssl-dev libcjson-dev   # the extension's HTTP client and JSON libraries
	libmicrohttpd-dev                   # the HTTP endpoint's server (leader_election.http_listen)
	libkrb5-dev                         # gssapi.h, which libpq/auth.h includes (session_mode.c)
	etcd-server etcd-client             # etcd and etcdctl for tests, demo, bench
	libipc-run-perl                     # needed by PostgreSQL::Test::Cluster
	libdbd-pg-perl                      # DBD::Pg: a second libpq client in t/019_routing.pl
	procps util-linux                   # pgrep; runuser to drop root
	strace                              # bench/handover.sh syscall count
	clang libclang-rt-14-dev            # `make fuzz`: clang and its libFuzzer/sanitizer runtimes
	openssl curl                        # test certificates (t/make-test-certs.sh); etcd's /metrics in TAP tests
	haproxy prometheus                  # HAProxy health checks and `promtool check metrics` in TAP tests
	wrk                                 # bench/http.sh: requests per second of the HTTP endpoint
)

missing=()
for p in "${packages[@]}"; do
	if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#packages[@]} packages already installed"
	exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if ((EUID != 0)); then
	echo "install-deps: not root; install them with: apt-get install ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Package scripts may start system etcd/PostgreSQL on 2379/5432; nothing here uses those ports.
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
