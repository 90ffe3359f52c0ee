/*
 * writer: a client that reconnects in a loop and writes once per connection, for
 * bench/routing.sh and scripts/demo.sh.
 *
 *     writer [-p PAUSE_MS] [-t SECONDS] CONNINFO SQL
 *
 * Each attempt opens a new connection with PQconnectdb(CONNINFO) (typically a multi-host string
 * with target_session_attrs=read-write), runs SQL once, closes the connection and prints one
 * line to stdout, flushed at once:
 *
 *     <unix time, s.us> ok   <port> -        <host>         SQL ran on the node at <port>
 *     <unix time, s.us> fail <port> <sqlstate> <message>   SQL failed there
 *     <unix time, s.us> fail -      connect  <message>     no host accepted the connection
 *
 * The time (CLOCK_REALTIME, the clock of `date` and of the server's clock_timestamp() on this
 * machine) is taken when the attempt has ended; <port> is the port of the node that answered.
 * A message's newlines become " | " (tabs are dropped), so each attempt is one line.
 * The loop ends on SIGTERM/SIGINT, or after SECONDS (default 60: a safety net, so that a
 * forgotten writer stops by itself). Between attempts it sleeps PAUSE_MS (default 0).
 *
 * Build: gcc -O2 -o writer writer.c -I$(pg_config --includedir) -lpq
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

static double
now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Prints the start of a line: the time and the outcome. */
static void
head(const char *outcome)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%lld.%06ld %s", (long long) ts.tv_sec, ts.tv_nsec / 1000, outcome);
}

/* Prints a message on the rest of the line: newlines become " | ", a trailing one is dropped. */
static void
message(const char *msg)
{
	size_t		len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	putchar(' ');
	for (size_t i = 0; i < len; i++)
	{
		if (msg[i] == '\n')
			fputs(" | ", stdout);
		else if (msg[i] == '\t')
			continue;
		else
			putchar(msg[i]);
	}
	putchar('\n');
}

static void
usage(void)
{
	fprintf(stderr, "usage: writer [-p PAUSE_MS] [-t SECONDS] CONNINFO SQL\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	long		pause_ms = 0;
	double		seconds = 60;
	double		deadline;
	struct sigaction sa;
	int			opt;

	while ((opt = getopt(argc, argv, "p:t:")) != -1)
	{
		char	   *end;

		switch (opt)
		{
			case 'p':
				pause_ms = strtol(optarg, &end, 10);
				if (*end != '\0' || pause_ms < 0)
					usage();
				break;
			case 't':
				seconds = strtod(optarg, &end);
				if (*end != '\0' || seconds <= 0)
					usage();
				break;
			default:
				usage();
		}
	}
	if (argc - optind != 2)
		usage();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	deadline = now(CLOCK_MONOTONIC) + seconds;
	while (!stop && now(CLOCK_MONOTONIC) < deadline)
	{
		PGconn	   *conn = PQconnectdb(argv[optind]);

		if (PQstatus(conn) != CONNECTION_OK)
		{
			head("fail - connect");
			message(PQerrorMessage(conn));
		}
		else
		{
			PGresult   *res = PQexec(conn, argv[optind + 1]);
			ExecStatusType st = PQresultStatus(res);

			if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			{
				head("ok");
				printf(" %s - %s\n", PQport(conn), PQhost(conn));
			}
			else
			{
				const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

				head("fail");
				printf(" %s %s", PQport(conn), state ? state : "-----");
				message(PQresultErrorMessage(res));
			}
			PQclear(res);
		}
		PQfinish(conn);

		if (pause_ms > 0 && !stop)
		{
			struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};

			while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stop)
				;
		}
	}
	return 0;
}
