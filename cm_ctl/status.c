/*-------------------------------------------------------------------------
 *
 * status.c
 *	  cm_ctl status: the pid file and the listener's control socket.
 *
 * The answer of the control socket (common/cmctl.h) is read in whole,
 * within -t seconds, then printed as tables or, with --json, as one JSON
 * object whose strings are escaped whatever bytes the answer holds.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cm_ctl.h"
#include "cmclock.h"
#include "cmctl.h"
#include "cmproto.h"

/*
 * Ask the listener's control socket for "status" within timeout seconds;
 * the whole answer, or NULL.  The socket is not blocking: a listener that
 * stopped accepting leaves its backlog full, and a blocking connect() or
 * send() would then wait past the deadline.
 */
static char *
ask_control(int timeout)
{
	struct sockaddr_un sun;
	int			fd;
	size_t		cap = 65536,
				len = 0;
	char	   *buf;
	double		deadline = cmclock_s() + timeout;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t) snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/" CMCTL_SOCKET, cmdata) >=
		sizeof(sun.sun_path))
		return NULL;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	/* A full backlog answers EAGAIN at once: try again until the deadline. */
	while (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0)
	{
		if ((errno != EAGAIN && errno != EINTR) || ms_left(deadline) == 0)
		{
			close(fd);
			return NULL;
		}
		usleep(20 * 1000);
	}
	if (send(fd, CMCTL_STATUS "\n", strlen(CMCTL_STATUS "\n"), MSG_NOSIGNAL) !=
		(ssize_t) strlen(CMCTL_STATUS "\n"))
	{
		close(fd);
		return NULL;
	}
	buf = malloc(cap);
	while (buf != NULL)
	{
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t		n;
		int			ready;

		if (len + 1 >= cap)
		{
			char	   *nb = realloc(buf, cap * 2);

			if (nb == NULL)
			{
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ready = poll(&p, 1, ms_left(deadline));
		if (ready < 0 && errno == EINTR)
			continue;			/* the next poll() ends at the deadline */
		if (ready <= 0)
		{
			free(buf);
			buf = NULL;
			break;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	close(fd);
	if (buf != NULL)
	{
		buf[len] = '\0';
		if (strstr(buf, "\n" CMCTL_END) == NULL && strncmp(buf, CMCTL_END, strlen(CMCTL_END)) != 0)
		{
			free(buf);
			return NULL;
		}
	}
	return buf;
}

static void
format_time(long long us, char *out, size_t len)
{
	time_t		t = (time_t) (us / 1000000);
	struct tm	tm;

	if (us <= 0)
	{
		snprintf(out, len, "-");
		return;
	}
	localtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/*
 * The role shown for an instance.  "route" is the listener's verdict
 * (docs/conmgr.md, "One primary at a time"), "" from a conmgr that gives
 * none: a stale primary or a primary in a configuration fault says so.
 */
static const char *
role_name(unsigned attrs, const char *state, const char *route)
{
	if (strcmp(state, "up") != 0)
		return "-";
	if (attrs & CMPROTO_ATTR_IN_RECOVERY)
		return strcmp(route, "promoting") == 0 ? "standby (promoting)" : "standby";
	if (strcmp(route, "stale-primary") == 0)
		return "stale primary";
	if (strcmp(route, "conflict") == 0)
		return "primary (conflict)";
	return (attrs & CMPROTO_ATTR_READ_ONLY) ? "primary (read-only)" : "primary";
}

/* Length of the valid UTF-8 sequence (2 to 4 bytes) at p, or 0 if none. */
static int
utf8_len(const unsigned char *p)
{
	int			len;
	unsigned char lo = 0x80,
				hi = 0xBF;		/* bounds of the second byte */

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		len = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
	{
		len = 3;
		if (p[0] == 0xE0)
			lo = 0xA0;			/* no overlong forms */
		else if (p[0] == 0xED)
			hi = 0x9F;			/* no surrogates */
	}
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
	{
		len = 4;
		if (p[0] == 0xF0)
			lo = 0x90;
		else if (p[0] == 0xF4)
			hi = 0x8F;			/* nothing above U+10FFFF */
	}
	else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	/* the NUL at the end is no continuation byte: this stops there */
	for (int i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return len;
}

/*
 * s as a JSON string (RFC 8259), quotes included: '"' and '\' escaped,
 * control characters (and DEL) as \n, \r, \t or \u00XX, valid UTF-8 as
 * it is, and any other byte as U+FFFD, so that the output parses whatever
 * the control socket or conmgr.conf hold.
 */
static void
json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	putchar('"');
	while (*p)
	{
		int			len;

		if (*p == '"' || *p == '\\')
			printf("\\%c", *p++);
		else if (*p == '\n' || *p == '\r' || *p == '\t')
		{
			printf("\\%c", *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't');
			p++;
		}
		else if (*p < 0x20 || *p == 0x7F)
			printf("\\u%04X", *p++);
		else if (*p < 0x80)
			putchar(*p++);
		else if ((len = utf8_len(p)) > 0)
		{
			fwrite(p, 1, len, stdout);
			p += len;
		}
		else
		{
			fputs("\\uFFFD", stdout);
			p++;
		}
	}
	putchar('"');
}

/* The instance lines of the answer, as a table or a JSON array. */
static void
print_instances(const char *answer, bool json)
{
	char	   *copy = strdup(answer);
	char	   *save = NULL;
	int			ninst = 0;

	if (json)
		printf(", \"instances\": [");
	else
		printf("\n%-8s %-30s %-12s %-13s %-10s %-20s %-8s %s\n", "instance", "address",
			   "backend_port", "watchdog_port", "heartbeat", "role", "timeline", "since");
	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
		 line = strtok_r(NULL, "\n", &save))
	{
		int			i;
		char		state[32];
		char		route[32] = "";
		unsigned	attrs;
		unsigned	timeline = 0;
		unsigned long long downs = 0;
		long long	since,
					last;
		char		when[32];
		const char *p;
		const struct cmconf_instance *in;

		if (sscanf(line, CMCTL_INSTANCE_SCAN,
				   &i, state, &attrs, &since, &last) != 5 ||
			i < 0 || i >= CMCONF_MAX_INSTANCES)
			continue;
		if ((p = strstr(line, CMCTL_TIMELINE_KEY)) != NULL)
			(void) sscanf(p, CMCTL_TIMELINE_SCAN, &timeline);
		if ((p = strstr(line, CMCTL_ROUTE_KEY)) != NULL)
			(void) sscanf(p, CMCTL_ROUTE_SCAN, route);
		if ((p = strstr(line, CMCTL_DOWNS_KEY)) != NULL)
			(void) sscanf(p, CMCTL_DOWNS_SCAN, &downs);
		in = &conf.inst[i];
		format_time(since, when, sizeof(when));
		if (json)
		{
			printf("%s{\"instance\": %d, \"address\": ", ninst ? ", " : "", i);
			json_str(cmconf_connect_host(in));
			printf(", \"backend_port\": %d, \"watchdog_port\": %d, \"heartbeat\": ",
				   in->backend_port, in->watchdog_port);
			json_str(state);
			printf(", \"role\": ");
			json_str(role_name(attrs, state, route));
			if (timeline > 0)
				printf(", \"timeline\": %u", timeline);
			else
				printf(", \"timeline\": null");
			printf(", \"since\": ");
			json_str(when);
			printf(", \"since_us\": %lld, \"downs\": %llu}", since, downs);
		}
		else
		{
			char		tl[16] = "-";

			if (timeline > 0)
				snprintf(tl, sizeof(tl), "%u", timeline);
			printf("%-8d %-30s %-12d %-13d %-10s %-20s %-8s %s\n", i, cmconf_connect_host(in),
				   in->backend_port, in->watchdog_port, state,
				   role_name(attrs, state, route), tl, when);
		}
		ninst++;
	}
	if (json)
		printf("]");
	free(copy);
}

/*
 * The forward port lines of the answer (docs/conmgr.md, "Forward ports"):
 * each port's sessions per instance, as a table or a JSON array.
 */
static void
print_forwards(const char *answer, bool json)
{
	char	   *copy = strdup(answer);
	char	   *save = NULL;
	int			nport = 0;

	if (json)
		printf(", \"forward_ports\": [");
	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
		 line = strtok_r(NULL, "\n", &save))
	{
		int			port;
		char		target[32];
		char		counts[1024];
		char	   *csave = NULL;
		int			ninst = 0;

		if (sscanf(line, CMCTL_FORWARD_SCAN, &port, target, counts) != 3)
			continue;
		if (json)
		{
			printf("%s{\"port\": %d, \"target\": ", nport ? ", " : "", port);
			json_str(target);
			printf(", \"sessions\": [");
		}
		else if (nport == 0)
			printf("\n%-12s %-15s %-8s %s\n", "forward port", "target", "instance", "sessions");
		for (char *c = strtok_r(counts, ",", &csave); c; c = strtok_r(NULL, ",", &csave))
		{
			unsigned	inst,
						n;

			if (sscanf(c, "%u:%u", &inst, &n) != 2)
				continue;
			if (json)
				printf("%s{\"instance\": %u, \"sessions\": %u}", ninst ? ", " : "", inst, n);
			else
				printf("%-12d %-15s %-8u %u\n", port, target, inst, n);
			ninst++;
		}
		if (json)
			printf("]}");
		nport++;
	}
	if (json)
		printf("]");
	free(copy);
}

/* The application lines of the answer (which it consumes). */
static void
print_apps(char *answer, bool json)
{
	char	   *save = NULL;
	int			napp = 0;

	if (json)
		printf(", \"applications\": [");
	else
		printf("\n%-24s %-8s %-15s %-10s %-8s %s\n", "application", "pid", "target",
			   "state", "instance", "since");
	for (char *line = strtok_r(answer, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	{
		char		peer[64],
					target[32],
					state[32],
					when[32];
		unsigned	apid;
		int			inst;
		long long	since;

		if (sscanf(line, CMCTL_APP_SCAN,
				   peer, &apid, target, state, &inst, &since) != 6)
			continue;
		format_time(since, when, sizeof(when));
		if (json)
		{
			printf("%s{\"client\": ", napp ? ", " : "");
			json_str(peer);
			printf(", \"pid\": %u, \"target\": ", apid);
			json_str(target);
			printf(", \"state\": ");
			json_str(state);
			printf(", \"instance\": %d, \"since\": ", inst);
			json_str(when);
			printf("}");
		}
		else
		{
			char		instno[16] = "-";

			if (inst >= 0)
				snprintf(instno, sizeof(instno), "%d", inst);
			printf("%-24s %-8u %-15s %-10s %-8s %s\n", peer, apid, target, state,
				   instno, when);
		}
		napp++;
	}
	if (json)
		printf("]");
	else if (napp == 0)
		printf("(no application session)\n");
}

int
do_status(const char *info, bool json, int timeout)
{
	struct stat st;
	pid_t		pid;
	char	   *answer;
	bool		want_inst = strcmp(info, "all") == 0 || strcmp(info, "instance") == 0;
	bool		want_app = strcmp(info, "all") == 0 || strcmp(info, "application") == 0;

	if (!want_inst && !want_app)
	{
		fprintf(stderr, "%s: invalid -i value \"%s\" (all, instance or application)\n", progname, info);
		return 1;
	}
	if (stat(cmdata, &st) < 0 || !S_ISDIR(st.st_mode))
	{
		fprintf(stderr, "%s: directory \"%s\" does not exist\n", progname, cmdata);
		return 4;
	}
	pid = running_pid();
	if (pid == 0)
	{
		if (json)
			printf("{\"running\": false}\n");
		else
			printf("%s: no conmgr running\n", progname);
		return 3;
	}

	/*
	 * A running conmgr may have refused a reload of a broken file: it still
	 * runs, so say so, with the addresses the file gives (defaults where it
	 * fails) and a warning.
	 */
	if (!load_conf())
		fprintf(stderr, "%s: warning: the configuration file has errors; the instance "
				"addresses shown may not be those conmgr uses\n", progname);
	answer = ask_control(timeout);
	if (answer == NULL)
	{
		fprintf(stderr, "%s: conmgr (PID %d) is running but did not answer on its control socket \"%s/" CMCTL_SOCKET "\" within %d s\n",
				progname, (int) pid, cmdata, timeout);
		return 1;
	}

	/*
	 * The port in use: conmgr.conf may have changed since (a restart applies
	 * it).
	 */
	{
		char		port[32];
		int			p;

		pidfile_line(4, port, sizeof(port));
		p = atoi(port);
		if (p > 0 && p <= 65535)
			conf.port = p;
	}
	if (json)
		printf("{\"running\": true, \"pid\": %d, \"port\": %d", (int) pid, conf.port);
	else
		printf("%s: conmgr is running (PID: %d), applications on \"%s\" port %d\n",
			   progname, (int) pid, conf.listen_addresses, conf.port);
	if (want_inst)
	{
		print_instances(answer, json);
		print_forwards(answer, json);
	}
	if (want_app)
		print_apps(answer, json);
	if (json)
		printf("}\n");
	free(answer);
	return 0;
}
