# leader_election: PGXS build, plus the two entry points `make demo` and `make test`.

PG_CONFIG ?= pg_config

MODULE_big = leader_election
OBJS = \
	src/module.o \
	src/shared_state.o \
	src/counters.o \
	src/printable.o \
	src/etcd_access.o \
	src/etcd_auth.o \
	src/etcd_client.o \
	src/etcd_api.o \
	src/etcd_results.o \
	src/replication.o \
	src/cluster_record.o \
	src/json_values.o \
	src/term_record.o \
	src/wal_position.o \
	src/succession.o \
	src/server_setting.o \
	src/election.o \
	src/reading.o \
	src/election_view.o \
	src/election_events.o \
	src/lease.o \
	src/standing.o \
	src/takeover.o \
	src/record_keeping.o \
	src/promotion.o \
	src/wal_positions.o \
	src/leader_key.o \
	src/sync_standbys.o \
	src/handover.o \
	src/reconfigure.o \
	src/worker.o \
	src/http_endpoint.o \
	src/http_routes.o \
	src/status_document.o \
	src/metrics_text.o \
	src/sql_api.o \
	src/statement_kinds.o \
	src/fence.o \
	src/session_mode.o \
	src/wal_shipping.o \
	src/wal_bound.o

EXTENSION = leader_election
DATA = sql/leader_election--1.0.sql sql/leader_election--1.0--1.1.sql sql/leader_election--1.1--1.2.sql
PGFILEDESC = "leader_election - leader election through etcd"

# PostgreSQL's headers are not -Wextra clean; ours must be.
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS = -Wall -Wextra
SHLIB_LINK = -lcurl -lcjson -lmicrohttpd

# pg_regress starts its own instance with the library preloaded; the etcd it
# talks to is started by scripts/test.sh (see sql/regress.conf).
REGRESS = api guc fence
REGRESS_OPTS = --temp-config=$(srcdir)/sql/regress.conf --temp-instance=$(CURDIR)/tmp_check_regress

TAP_TESTS = 1

EXTRA_CLEAN = tmp_check_regress tmp_check_fuzz

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies; a stale object with an old struct layout
# would share memory with a new one.
$(OBJS) $(OBJS:.o=.bc): $(wildcard src/*.h)

.PHONY: demo test fuzz
demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

# `make fuzz [FUZZ_SECONDS=60]`: the libFuzzer target for the parsing of every
# etcd answer (t/fuzz/etcd_answers.c; clang and libclang-rt-14-dev), run for
# FUZZ_SECONDS on the committed seed corpus t/fuzz/corpus (real etcd answers),
# the inputs of past findings (t/fuzz/regressions) and what earlier runs added
# in tmp_check_fuzz/corpus.  Fails on a crash, a sanitizer report, a leak, an
# ereport(ERROR), a timeout or a broken promise of a parser (see the target's
# header); the input that did it is kept in tmp_check_fuzz/findings/.  Not
# part of all or install.
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 8192
FUZZ_CC ?= clang
FUZZ_DIR = tmp_check_fuzz
FUZZ_BIN = $(FUZZ_DIR)/etcd_answers
FUZZ_SRCS = t/fuzz/etcd_answers.c t/fuzz/pg_shim.c src/etcd_api.c src/etcd_results.c src/etcd_auth.c src/printable.c \
	src/term_record.c src/cluster_record.c src/wal_position.c src/json_values.c
# Assertions on, as in a cassert build; PostgreSQL's headers ask for gcc's
# gnu_printf, which clang does not know.
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-DUSE_ASSERT_CHECKING -Wall -Wextra -Wno-ignored-attributes \
	-isystem $(shell $(PG_CONFIG) --includedir-server) -Isrc
FUZZ_LIBS = $(shell $(PG_CONFIG) --pkglibdir)/libpgcommon.a \
	$(shell $(PG_CONFIG) --pkglibdir)/libpgport.a -lcjson -lcurl

# etcd_answers.c includes src/etcd_client.c (for its static write callback)
$(FUZZ_BIN): $(FUZZ_SRCS) src/etcd_client.c $(wildcard src/*.h)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRCS) $(FUZZ_LIBS)

fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/findings
	@echo "fuzz: $(FUZZ_BIN) for $(FUZZ_SECONDS) s, seeds t/fuzz/corpus ($$(ls t/fuzz/corpus | wc -l) real etcd answers)"
	@rc=0; $(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
		-timeout=10 -rss_limit_mb=2048 -dict=t/fuzz/etcd.dict -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_DIR)/findings/ $(FUZZ_DIR)/corpus t/fuzz/corpus t/fuzz/regressions \
		>$(FUZZ_DIR)/fuzz.log 2>&1 || rc=$$?; \
	grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done |^stat::' $(FUZZ_DIR)/fuzz.log | sed 's/^/  /'; \
	if [ $$rc -ne 0 ]; then \
		echo "fuzz: FOUND a problem (exit $$rc); the end of $(FUZZ_DIR)/fuzz.log:"; \
		grep -vE '^#[0-9]+[[:space:]]' $(FUZZ_DIR)/fuzz.log | tail -n 60; \
		echo "fuzz: inputs in $(FUZZ_DIR)/findings/:" $$(ls -t $(FUZZ_DIR)/findings); \
		echo "fuzz: replay one with $(FUZZ_BIN) <input> (FUZZ_VERBOSE=1 says what each parser made of it)"; \
		exit 1; \
	fi; \
	echo "fuzz: found nothing in $(FUZZ_SECONDS) s (no crash, leak, ereport(ERROR), timeout or broken promise)"
