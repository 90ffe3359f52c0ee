/*
 * metrics_text.c
 *		Owns the metric names of leader_election and their exposition: the
 *		node's state as gauges, what counters.c counts as counters.
 *
 * Rules: every metric has HELP and TYPE lines, counters end in _total,
 * units are in the names (_seconds, _bytes), so that `promtool check
 * metrics` passes; a state (role, phase) is a set of 0/1 series, one per
 * value, so that a dashboard needs no string matching.  The text is built
 * in malloc'd memory: this runs inside libmicrohttpd's callback.
 */
#include "postgres.h"

#include <stdarg.h>

#include "metrics_text.h"

typedef struct TextOut
{
	char	   *data;
	size_t		len;
	size_t		size;
	bool		failed;
} TextOut;

static void out_printf(TextOut *out, const char *fmt,...) pg_attribute_printf(2, 3);

static void
out_printf(TextOut *out, const char *fmt,...)
{
	for (;;)
	{
		va_list		args;
		int			n;
		char	   *bigger;

		if (out->failed)
			return;
		va_start(args, fmt);
		n = vsnprintf(out->data + out->len, out->size - out->len, fmt, args);
		va_end(args);
		if (n < 0)
		{
			out->failed = true;
			return;
		}
		if ((size_t) n < out->size - out->len)
		{
			out->len += n;
			return;
		}
		bigger = realloc(out->data, out->size * 2 + n);
		if (bigger == NULL)
		{
			out->failed = true;
			return;
		}
		out->data = bigger;
		out->size = out->size * 2 + n;
	}
}

/* A label value: backslash, double quote and newline escaped. */
static void
out_label_value(TextOut *out, const char *value)
{
	for (const char *p = value; *p; p++)
	{
		if (*p == '\\' || *p == '"')
			out_printf(out, "\\%c", *p);
		else if (*p == '\n')
			out_printf(out, "\\n");
		else
			out_printf(out, "%c", *p);
	}
}

static void
header(TextOut *out, const char *name, const char *type, const char *help)
{
	out_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
gauge(TextOut *out, const char *name, const char *help, double value)
{
	header(out, name, "gauge", help);
	out_printf(out, "%s %.17g\n", name, value);
}

static void
counter(TextOut *out, const char *name, const char *help, uint64 value)
{
	header(out, name, "counter", help);
	out_printf(out, "%s " UINT64_FORMAT "\n", name, value);
}

static double
seconds(uint64 us)
{
	return (double) us / 1000000.0;
}

static void
state_set(TextOut *out, const char *name, const char *label, const char *help,
		  const char *(*name_of) (int), int count, int current)
{
	header(out, name, "gauge", help);
	for (int i = 0; i < count; i++)
	{
		out_printf(out, "%s{%s=\"", name, label);
		out_label_value(out, name_of(i));
		out_printf(out, "\"} %d\n", i == current ? 1 : 0);
	}
}

static const char *
role_name_of(int role)
{
	return le_role_name((LeaderRole) role);
}

static const char *
phase_name_of(int phase)
{
	return election_phase_name((ElectionPhase) phase);
}

static void
state_metrics(TextOut *out, const NodeSnapshot *s)
{
	const LeaderView *v = &s->view;
	LeaderRole	role = node_role(s);
	uint64		loop_age = node_loop_age_us(s);

	header(out, "leader_election_info", "gauge",
		   "This node's name and election prefix, as labels; always 1.");
	out_printf(out, "leader_election_info{node=\"");
	out_label_value(out, v->node_name);
	out_printf(out, "\",prefix=\"");
	out_label_value(out, s->prefix);
	out_printf(out, "\"} 1\n");

	gauge(out, "leader_election_leader",
		  "1 while this node leads and accepts writes, else 0.", node_leads(s) ? 1 : 0);
	state_set(out, "leader_election_role", "role",
			  "This node's role in the election: 1 for the current one.",
			  role_name_of, LE_ROLE_LEADER + 1, role);
	state_set(out, "leader_election_phase", "phase",
			  "The election worker's phase: 1 for the current one.",
			  phase_name_of, EP_COUNT, v->phase);
	gauge(out, "leader_election_queue_position",
		  "This node's place in the queue (0 leads), -1 when not queued.",
		  role != LE_ROLE_DISCONNECTED ? v->queue_position : -1);
	gauge(out, "leader_election_fencing_token",
		  "Fencing token (create revision of the key) of the leader this node knows; 0 if none.",
		  v->leader_known && role != LE_ROLE_DISCONNECTED ? (double) v->fencing_token : 0);
	gauge(out, "leader_election_lease_valid_seconds",
		  "How long this node's etcd lease stays valid without another renewal; 0 without a lease.",
		  v->lease_valid_until > s->now_us ? seconds(v->lease_valid_until - s->now_us) : 0);
	gauge(out, "leader_election_leadership_valid_seconds",
		  "How long this node may still act as leader without another renewal; 0 if it does not lead.",
		  role == LE_ROLE_LEADER ? seconds(s->valid_until_us - s->now_us) : 0);
	gauge(out, "leader_election_timeline",
		  "PostgreSQL timeline this node writes or replays.", v->timeline);
	gauge(out, "leader_election_in_recovery",
		  "1 on a standby (in recovery), 0 on a primary.", s->view.in_recovery ? 1 : 0);
	gauge(out, "leader_election_streaming",
		  "1 on a standby whose WAL receiver streams and that takes reads.", node_streams(s) ? 1 : 0);
	if (s->view.in_recovery)
		gauge(out, "leader_election_wal_lag_bytes",
			  "WAL this standby has yet to flush of what its upstream has sent.",
			  (double) Max(s->view.receive_lag_bytes, 0));
	gauge(out, "leader_election_eligible",
		  "1 while this node may stand in the election.", v->eligible ? 1 : 0);
	gauge(out, "leader_election_synchronous_standby",
		  "1 on a standby the cluster record names synchronous.", le_view_sync_member(v) ? 1 : 0);
	gauge(out, "leader_election_accepts_connections",
		  "1 while PostgreSQL takes connections (a primary, or a hot standby open for reads).",
		  s->view.accepts_connections ? 1 : 0);
	gauge(out, "leader_election_worker_running",
		  "1 while the election worker runs.", s->worker_running ? 1 : 0);
	if (loop_age != PG_UINT64_MAX)
		gauge(out, "leader_election_worker_loop_age_seconds",
			  "Time since the election worker's loop last turned (it turns every 250 ms at least).",
			  seconds(loop_age));
}

static void
counter_metrics(TextOut *out, const NodeSnapshot *s)
{
	const LeCounterValues *c = &s->counters;
	static const struct
	{
		LeCounter	which;
		const char *name;
		const char *help;
	}			counts[] = {
		{LE_COUNT_LEADER_CHANGES, "leader_election_leader_changes_total",
		"Times the leader this node knows changed."},
		{LE_COUNT_LEADERSHIPS, "leader_election_leaderships_total",
		"Times this node began to lead."},
		{LE_COUNT_PROMOTIONS, "leader_election_promotions_total",
		"Times this node promoted itself from standby to primary."},
		{LE_COUNT_FAILOVERS, "leader_election_failovers_total",
		"Times this node took over from a leader that did not let go."},
		{LE_COUNT_HANDOVERS, "leader_election_handovers_total",
		"Times this node handed leadership over or resigned."},
		{LE_COUNT_HANDOVER_FAILURES, "leader_election_handover_failures_total",
		"Times this node tried to hand over and led on."},
		{LE_COUNT_FENCE_REFUSALS, "leader_election_fence_refusals_total",
		"Writes the fence refused on this node."},
	};
	static const struct
	{
		LeDuration	which;
		const char *name;
		const char *help;
	}			durations[] = {
		{LE_LAST_FAILOVER, "leader_election_last_failover_seconds",
		"Last failover to this node: from first in line to leading, after a leader that did not let go."},
		{LE_LAST_HANDOVER, "leader_election_last_handover_seconds",
		"Last handover to this node: from first in line (the leader let go) to leading."},
		{LE_LAST_RESIGN, "leader_election_last_resign_seconds",
		"Last handover from this node: from refusing writes to its key released."},
	};

	header(out, "leader_election_etcd_requests_total", "counter",
		   "etcd requests this node finished, by kind.");
	for (int k = 0; k < ETCD_CALL_KINDS; k++)
		out_printf(out, "leader_election_etcd_requests_total{kind=\"%s\"} " UINT64_FORMAT "\n",
				   etcd_call_kind_name((EtcdCallKind) k), c->etcd_requests[k]);
	header(out, "leader_election_etcd_errors_total", "counter",
		   "etcd requests that failed (no answer, or an error status), by kind.");
	for (int k = 0; k < ETCD_CALL_KINDS; k++)
		out_printf(out, "leader_election_etcd_errors_total{kind=\"%s\"} " UINT64_FORMAT "\n",
				   etcd_call_kind_name((EtcdCallKind) k), c->etcd_errors[k]);

	for (size_t i = 0; i < lengthof(counts); i++)
		counter(out, counts[i].name, counts[i].help, c->counts[counts[i].which]);
	for (size_t i = 0; i < lengthof(durations); i++)
		if (c->duration_us[durations[i].which] != 0)
			gauge(out, durations[i].name, durations[i].help,
				  seconds(c->duration_us[durations[i].which]));
}

char *
metrics_text(const NodeSnapshot *s)
{
	TextOut		out = {malloc(8192), 0, 8192, false};

	if (out.data == NULL)
		return NULL;
	state_metrics(&out, s);
	counter_metrics(&out, s);
	if (out.failed)
	{
		free(out.data);
		return NULL;
	}
	return out.data;
}
