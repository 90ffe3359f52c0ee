# leader_election: PGXS build, plus the two entry points `make demo` and `make test`.

PG_CONFIG ?= pg_config

MODULE_big = leader_election
OBJS = \
	src/module.o \
	src/shared_state.o \
	src/printable.o \
	src/etcd_access.o \
	src/etcd_auth.o \
	src/etcd_client.o \
	src/etcd_api.o \
	src/replication.o \
	src/cluster_record.o \
	src/term_record.o \
	src/election.o \
	src/election_view.o \
	src/lease.o \
	src/standing.o \
	src/takeover.o \
	src/record_keeping.o \
	src/promotion.o \
	src/handover.o \
	src/reconfigure.o \
	src/worker.o \
	src/sql_api.o \
	src/statement_kinds.o \
	src/fence.o \
	src/session_mode.o \
	src/wal_shipping.o \
	src/wal_bound.o

EXTENSION = leader_election
DATA = sql/leader_election--1.0.sql sql/leader_election--1.0--1.1.sql
PGFILEDESC = "leader_election - leader election through etcd"

# PostgreSQL's headers are not -Wextra clean; ours must be.
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS = -Wall -Wextra
SHLIB_LINK = -lcurl -lcjson

# pg_regress starts its own instance with the library preloaded; the etcd it
# talks to is started by scripts/test.sh (see sql/regress.conf).
REGRESS = api guc fence
REGRESS_OPTS = --temp-config=$(srcdir)/sql/regress.conf --temp-instance=$(CURDIR)/tmp_check_regress

TAP_TESTS = 1

EXTRA_CLEAN = tmp_check_regress

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies; a stale object with an old struct layout
# would share memory with a new one.
$(OBJS) $(OBJS:.o=.bc): $(wildcard src/*.h)

.PHONY: demo test
demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh
