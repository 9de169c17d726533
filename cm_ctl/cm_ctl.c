/*-------------------------------------------------------------------------
 *
 * cm_ctl.c
 *	  Start, stop and inspect a conmgr, in the manner of pg_ctl.
 *
 *	 cm_ctl start  [-D DIR] [-W] [--complete] [-t SECS] [-l LOGFILE]
 *	 cm_ctl stop   [-D DIR] [-W] [-m smart|fast|immediate] [-t SECS]
 *	 cm_ctl status [-D DIR] [-i all|instance|application] [--json] [-t SECS]
 *	 cm_ctl reload [-D DIR]
 *	 cm_ctl logrotate [-D DIR]
 *
 * start launches "conmgr -D DIR -l LOGFILE" in the background (its own
 * session, output appended to LOGFILE, default DIR/conmgr.log; conmgr
 * knows the name, so it can open the file again) and, unless -W,
 * waits until conmgr can route to a primary (with --complete: to every
 * configured instance), asking conmgr itself through the application
 * protocol, as an application would.  stop signals the pid in
 * DIR/conmgr.pid and waits until it no longer holds that file's lock.
 * status reads the pid file and asks the listener's control socket
 * (DIR/conmgr.ctl) for the instances and the application sessions,
 * waiting -t seconds at most (default STATUS_TIMEOUT) for the answer.
 * An option that the operation does not take is an error, as is a
 * misspelt one: a script that says -m to status or -t to reload learns
 * at once that it is not doing what it meant.
 * reload checks conmgr.conf and, if it has no errors, sends SIGHUP
 * (conmgr reports in its log what it applied and what needs a restart);
 * logrotate sends SIGUSR1, on which conmgr opens its log file again.
 *
 * Exit codes, as pg_ctl's: 0 success, 1 failure (for reload and
 * logrotate also: not running), 3 not running (status),
 * 4 no such directory (status).  status is in status.c.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmclient.h"
#include "cmconf.h"
#include "cmctl.h"
#include "cmproto.h"
#include "cm_ctl.h"

/* How long status waits for the control socket's answer without -t. */
#define STATUS_TIMEOUT	5

/* The options, as bits, for the table of what each operation takes. */
#define OPT_CMDATA		0x01
#define OPT_NOWAIT		0x02
#define OPT_COMPLETE	0x04
#define OPT_TIMEOUT		0x08
#define OPT_LOG			0x10
#define OPT_MODE		0x20
#define OPT_INFO		0x40
#define OPT_JSON		0x80

static const struct
{
	int			bit;
	const char *spelling;		/* as messages name it */
}			opt_names[] = {
	{OPT_CMDATA, "-D/--cmdata"},
	{OPT_NOWAIT, "-W/--no-wait"},
	{OPT_COMPLETE, "--complete"},
	{OPT_TIMEOUT, "-t/--timeout"},
	{OPT_LOG, "-l/--log"},
	{OPT_MODE, "-m/--mode"},
	{OPT_INFO, "-i/--info"},
	{OPT_JSON, "--json"},
};

/* The operations and the options each takes (the synopsis above). */
static const struct
{
	const char *name;
	int			opts;
}			operations[] = {
	{"start", OPT_CMDATA | OPT_NOWAIT | OPT_COMPLETE | OPT_TIMEOUT | OPT_LOG},
	{"stop", OPT_CMDATA | OPT_NOWAIT | OPT_MODE | OPT_TIMEOUT},
	{"status", OPT_CMDATA | OPT_INFO | OPT_JSON | OPT_TIMEOUT},
	{"reload", OPT_CMDATA},
	{"logrotate", OPT_CMDATA},
};

#define lengthof(a)	(sizeof(a) / sizeof((a)[0]))

const char *progname = "cm_ctl";
const char *cmdata;
struct cmconf conf;
static char pidpath[PATH_MAX];

typedef struct cand
{
	int			instance;
	uint8_t		attrs;
} cand;

double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"%s starts, stops and reports on a conmgr.\n\n"
			"Usage:\n"
			"  %s start  [-D DIR] [-W] [--complete] [-t SECS] [-l LOGFILE]\n"
			"  %s stop   [-D DIR] [-W] [-m smart|fast|immediate] [-t SECS]\n"
			"  %s status [-D DIR] [-i all|instance|application] [--json] [-t SECS]\n"
			"  %s reload [-D DIR]\n"
			"  %s logrotate [-D DIR]\n\n"
			"Options:\n"
			"  -D, --cmdata=DIR   conmgr directory (default: $CMDATA)\n"
			"  -W, --no-wait      do not wait for the operation to complete\n"
			"      --complete     start: wait until every instance is connected\n"
			"  -t, --timeout=SECS seconds to wait (default 60; status: 5)\n"
			"  -l, --log=FILE     start: conmgr's log file, appended to, reopened by logrotate\n"
			"                     (default DIR/conmgr.log)\n"
			"  -m, --mode=MODE    stop: smart, fast or immediate (default smart)\n"
			"  -i, --info=WHAT    status: all, instance or application (default all)\n"
			"      --json         status: print JSON\n\n"
			"reload re-reads conmgr.conf (SIGHUP); logrotate reopens the log file (SIGUSR1).\n",
			progname, progname, progname, progname, progname, progname);
}

/* Whether a conmgr holds the lock on cmdata's pid file. */
static bool
lock_held(void)
{
	int			fd = open(pidpath, O_RDONLY | O_CLOEXEC);
	bool		held;

	if (fd < 0)
		return false;
	held = flock(fd, LOCK_SH | LOCK_NB) != 0;
	close(fd);
	return held;
}

/* The pid of a running conmgr in cmdata, or 0 when none holds the lock. */
pid_t
running_pid(void)
{
	int			fd = open(pidpath, O_RDONLY | O_CLOEXEC);
	char		buf[32] = "";
	pid_t		pid;

	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
	{
		close(fd);				/* nobody holds it: a leftover file */
		return 0;
	}
	(void) !read(fd, buf, sizeof(buf) - 1);
	close(fd);
	pid = (pid_t) atol(buf);
	return pid > 0 ? pid : 0;
}

/* Line n of the pid file: 4 is the port, 5 the status (starting, ready, stopping). */
void
pidfile_line(int n, char *out, size_t len)
{
	FILE	   *f = fopen(pidpath, "r");
	char		line[256];

	snprintf(out, len, "unknown");
	if (f == NULL)
		return;
	for (int i = 1; fgets(line, sizeof(line), f); i++)
	{
		if (i == n)
		{
			line[strcspn(line, "\n")] = '\0';
			line[len - 1 < sizeof(line) ? len - 1 : sizeof(line) - 1] = '\0';
			memcpy(out, line, strlen(line) + 1);
		}
	}
	fclose(f);
}

bool
load_conf(void)
{
	static struct cmconf_diags diags;
	char		path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", cmdata, CMCONF_FILENAME);
	if (cmconf_load_file(path, &conf, &diags) == 0)
		return true;
	for (int i = 0; i < diags.count; i++)
		fprintf(stderr, "%s: %s\n", progname, diags.d[i].msg);
	return false;
}

/* Milliseconds left until deadline, for poll(): 0 once it has passed. */
int
ms_left(double deadline)
{
	double		ms = (deadline - now_s()) * 1000;

	return ms <= 0 ? 0 : ms > INT_MAX ? INT_MAX : (int) ms + 1;
}

/*
 * Ask conmgr for the candidates of a target, as an application would
 * (common/cmclient.c).  Returns their number, or -1 when conmgr does not
 * answer properly within timeout seconds.
 */
static int
ask_conmgr(int target, cand *out, double timeout)
{
	double		deadline = now_s() + timeout;
	char		port[16];
	char		host[CMCONF_LISTEN_MAX + 1];
	cmproto_msg cands[CMCONF_MAX_INSTANCES];
	cmproto_msg m;
	cmproto_pg_error err;
	cmclient	c;
	int			n;

	snprintf(port, sizeof(port), "%d", conf.port);
	/* The first listen address; "*" is reachable on localhost. */
	snprintf(host, sizeof(host), "%s", conf.listen_addresses);
	host[strcspn(host, ", \t")] = '\0';
	if (strcmp(host, "*") == 0)
		strcpy(host, "localhost");
	if (cmclient_connect(&c, host, port, ms_left(deadline)) != CMCLIENT_OK)
		return -1;
	if (cmclient_probe(&c, -1, "cm_ctl", &err, &m, ms_left(deadline)) != CMCLIENT_OK ||
		cmclient_send_resolve(&c, target, "cm_ctl") != CMCLIENT_OK ||
		cmclient_candidates(&c, cands, CMCONF_MAX_INSTANCES, &n, &m,
							ms_left(deadline)) != CMCLIENT_OK ||
		n > CMCONF_MAX_INSTANCES)
	{
		cmclient_close(&c);
		return -1;
	}
	cmclient_close(&c);
	for (int i = 0; i < n; i++)
	{
		out[i].instance = cands[i].u.candidate.instance;
		out[i].attrs = cands[i].u.candidate.attrs;
	}
	return n;
}

static const char *
conmgr_path(void)
{
	static char path[PATH_MAX];
	ssize_t		n = readlink("/proc/self/exe", path, sizeof(path) - 8);
	char	   *slash;

	if (n > 0)
	{
		path[n] = '\0';
		slash = strrchr(path, '/');
		if (slash)
		{
			strcpy(slash + 1, "conmgr");
			if (access(path, X_OK) == 0)
				return path;
		}
	}
	return "conmgr";			/* from PATH */
}

/* After a failed start: show the log's FATAL lines, which name the cause. */
static void
show_fatal_lines(const char *logfile)
{
	FILE	   *f = fopen(logfile, "r");
	char		line[4096];
	long		size;

	if (f == NULL)
		return;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 8192)
		fseek(f, size - 8192, SEEK_SET);
	else
		rewind(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " FATAL:  ") != NULL)
			fprintf(stderr, "%s", line);
	fclose(f);
}

/* conmgr exited before it was ready: say so, with its FATAL lines. */
static int
start_failed(const char *logfile)
{
	fprintf(stderr, "%s: conmgr did not start; from \"%s\":\n", progname, logfile);
	show_fatal_lines(logfile);
	return 1;
}

static int
do_start(bool nowait, bool complete, int timeout, const char *logfile)
{
	char		defaultlog[PATH_MAX];
	pid_t		pid;
	double		deadline;
	bool		ready = false;
	cand		c[CMCONF_MAX_INSTANCES];

	if (!load_conf())
	{
		fprintf(stderr, "%s: could not start conmgr: configuration file has errors\n", progname);
		return 1;
	}
	if ((pid = running_pid()) > 0)
	{
		fprintf(stderr, "%s: another conmgr (PID %d) is running in \"%s\"\n",
				progname, (int) pid, cmdata);
		return 1;
	}
	if (logfile == NULL)
	{
		snprintf(defaultlog, sizeof(defaultlog), "%s/conmgr.log", cmdata);
		logfile = defaultlog;
	}

	pid = fork();
	if (pid < 0)
	{
		fprintf(stderr, "%s: could not fork: %s\n", progname, strerror(errno));
		return 1;
	}
	if (pid == 0)
	{
		int			in = open("/dev/null", O_RDONLY);
		int			lfd = open(logfile, O_WRONLY | O_APPEND | O_CREAT, 0600);

		if (in < 0 || lfd < 0)
		{
			fprintf(stderr, "%s: could not open log file \"%s\": %s\n",
					progname, logfile, strerror(errno));
			_exit(1);
		}
		setsid();
		dup2(in, 0);
		dup2(lfd, 1);
		dup2(lfd, 2);
		execl(conmgr_path(), "conmgr", "-D", cmdata, "-l", logfile, (char *) NULL);
		fprintf(stderr, "%s: could not run conmgr: %s\n", progname, strerror(errno));
		_exit(1);
	}

	printf("waiting for conmgr to start....");
	fflush(stdout);
	deadline = now_s() + timeout;
	while (now_s() < deadline)
	{
		int			status;
		char		st[64];

		if (waitpid(pid, &status, WNOHANG) == pid)
		{
			printf(" stopped waiting\n");
			return start_failed(logfile);
		}
		pidfile_line(5, st, sizeof(st));
		if (running_pid() == pid && strcmp(st, "ready") == 0)
		{
			if (nowait)
			{
				ready = true;
				break;
			}
			if (complete)
				ready = ask_conmgr(CMPROTO_TARGET_ANY, c, 1.0) == conf.ninstances;
			else
				ready = ask_conmgr(CMPROTO_TARGET_PRIMARY, c, 1.0) > 0;
			if (ready)
				break;
		}
		usleep(100 * 1000);
		printf(".");
		fflush(stdout);
	}
	if (!ready)
	{
		int			status;

		printf(" stopped waiting\n");
		if (waitpid(pid, &status, WNOHANG) == pid)
			return start_failed(logfile);	/* while we asked it */
		fprintf(stderr, "%s: conmgr (PID %d) is running, but %s within %d s\n",
				progname, (int) pid,
				complete ? "not every instance was connected" : "no primary was connected",
				timeout);
		return 1;
	}
	printf(" done\nconmgr started (PID %d)%s\n", (int) pid,
		   nowait ? "" : complete ? ": every instance connected" : ": primary connected");
	return 0;
}

static int
do_stop(bool nowait, const char *mode, int timeout)
{
	pid_t		pid = running_pid();
	int			sig;
	double		deadline;

	if (strcmp(mode, "smart") == 0 || strcmp(mode, "s") == 0)
		sig = SIGTERM;
	else if (strcmp(mode, "fast") == 0 || strcmp(mode, "f") == 0)
		sig = SIGINT;
	else if (strcmp(mode, "immediate") == 0 || strcmp(mode, "i") == 0)
		sig = SIGQUIT;
	else
	{
		fprintf(stderr, "%s: unrecognized shutdown mode \"%s\" (smart, fast or immediate)\n",
				progname, mode);
		return 1;
	}
	if (pid == 0)
	{
		fprintf(stderr, "%s: no conmgr is running in \"%s\"\n", progname, cmdata);
		return 1;
	}
	if (kill(pid, sig) < 0)
	{
		fprintf(stderr, "%s: could not send stop signal (PID %d): %s\n",
				progname, (int) pid, strerror(errno));
		return 1;
	}
	if (nowait)
	{
		printf("conmgr shutting down\n");
		return 0;
	}
	printf("waiting for conmgr to shut down....");
	fflush(stdout);
	deadline = now_s() + timeout;
	while (now_s() < deadline)
	{
		/*
		 * Gone when the pid file's lock is free: it is released as the
		 * process exits, even while it waits, a zombie, for a parent that may
		 * never reap it (cm_ctl start leaves it to init).
		 */
		if (!lock_held())
		{
			printf(" done\nconmgr stopped\n");
			return 0;
		}
		usleep(100 * 1000);
		printf(".");
		fflush(stdout);
	}
	printf(" failed\n");
	fprintf(stderr, "%s: conmgr (PID %d) does not shut down\n", progname, (int) pid);
	return 1;
}

/* Send sig to the running conmgr; 0, or 1 with the reason printed. */
static int
signal_conmgr(int sig, const char *what)
{
	pid_t		pid = running_pid();

	if (pid == 0)
	{
		fprintf(stderr, "%s: no conmgr is running in \"%s\"\n", progname, cmdata);
		return 1;
	}
	if (kill(pid, sig) < 0)
	{
		fprintf(stderr, "%s: could not send %s signal (PID %d): %s\n",
				progname, what, (int) pid, strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * A file with errors would be refused by conmgr anyway (and only its log
 * would say so): say it here, and leave conmgr alone, so that a service
 * manager's reload fails visibly.
 */
static int
do_reload(void)
{
	if (running_pid() == 0)
	{
		fprintf(stderr, "%s: no conmgr is running in \"%s\"\n", progname, cmdata);
		return 1;
	}
	if (!load_conf())
	{
		fprintf(stderr, "%s: configuration file has errors; conmgr was not signaled and keeps its settings\n",
				progname);
		return 1;
	}
	if (signal_conmgr(SIGHUP, "reload") != 0)
		return 1;
	printf("conmgr signaled: it reloads %s/%s; its log names any parameter that needs a restart\n",
		   cmdata, CMCONF_FILENAME);
	return 0;
}

static int
do_logrotate(void)
{
	if (signal_conmgr(SIGUSR1, "log rotation") != 0)
		return 1;
	printf("conmgr signaled to reopen its log file\n");
	return 0;
}

/* What the command line asks for. */
typedef struct cm_args
{
	const char *cmd;
	bool		nowait;
	bool		complete;
	bool		json;
	int			timeout;		/* -1: the operation's default */
	const char *mode;
	const char *info;
	const char *logfile;
	int			given;			/* OPT_* bits of the options given */
} cm_args;

/* The options into *a; -1 when they are good, else the exit code. */
static int
parse_options(int argc, char **argv, cm_args *a)
{
	static const struct option opts[] = {
		{"cmdata", required_argument, NULL, 'D'},
		{"no-wait", no_argument, NULL, 'W'},
		{"complete", no_argument, NULL, 'c'},
		{"timeout", required_argument, NULL, 't'},
		{"log", required_argument, NULL, 'l'},
		{"mode", required_argument, NULL, 'm'},
		{"info", required_argument, NULL, 'i'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, '?'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	char	   *end;
	long		lval;

	while ((c = getopt_long(argc, argv, "D:Wt:l:m:i:", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'D':
				a->given |= OPT_CMDATA;
				cmdata = optarg;
				break;
			case 'W':
				a->given |= OPT_NOWAIT;
				a->nowait = true;
				break;
			case 'c':
				a->given |= OPT_COMPLETE;
				a->complete = true;
				break;
			case 't':
				a->given |= OPT_TIMEOUT;
				errno = 0;
				lval = strtol(optarg, &end, 10);
				if (errno || *end || end == optarg || lval < 0 || lval > INT_MAX)
				{
					fprintf(stderr, "%s: invalid timeout \"%s\": a number of seconds\n", progname, optarg);
					return 1;
				}
				a->timeout = (int) lval;
				break;
			case 'l':
				a->given |= OPT_LOG;
				a->logfile = optarg;
				break;
			case 'm':
				a->given |= OPT_MODE;
				a->mode = optarg;
				break;
			case 'i':
				a->given |= OPT_INFO;
				a->info = optarg;
				break;
			case 'j':
				a->given |= OPT_JSON;
				a->json = true;
				break;
			default:
				fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
				return 1;
		}
	}
	return -1;
}

/*
 * The operation named after the options, and whether it takes each option
 * given; -1 when it does, else the exit code.
 */
static int
check_operation(int argc, char **argv, cm_args *a)
{
	int			op;

	if (optind != argc - 1)
	{
		fprintf(stderr, "%s: %s\nTry \"%s --help\" for more information.\n", progname,
				optind >= argc ? "no operation specified" : "too many command-line arguments",
				progname);
		return 1;
	}
	a->cmd = argv[optind];
	for (op = 0; op < (int) lengthof(operations); op++)
		if (strcmp(a->cmd, operations[op].name) == 0)
			break;
	if (op == (int) lengthof(operations))
	{
		fprintf(stderr, "%s: unrecognized operation \"%s\" (start, stop, status, reload or logrotate)\n",
				progname, a->cmd);
		return 1;
	}
	for (int i = 0; i < (int) lengthof(opt_names); i++)
	{
		if ((a->given & opt_names[i].bit) && !(operations[op].opts & opt_names[i].bit))
		{
			fprintf(stderr, "%s: option %s is not valid for \"%s\"\nTry \"%s --help\" for more information.\n",
					progname, opt_names[i].spelling, a->cmd, progname);
			return 1;
		}
	}
	return -1;
}

int
main(int argc, char **argv)
{
	cm_args		a = {NULL, false, false, false, -1, "smart", "all", NULL, 0};
	int			rc;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0))
	{
		usage(stdout);
		return 0;
	}
	cmdata = getenv("CMDATA");
	if ((rc = parse_options(argc, argv, &a)) >= 0 ||
		(rc = check_operation(argc, argv, &a)) >= 0)
		return rc;
	if (a.timeout < 0)
		a.timeout = strcmp(a.cmd, "status") == 0 ? STATUS_TIMEOUT : 60;
	if (cmdata == NULL || cmdata[0] == '\0')
	{
		fprintf(stderr, "%s: no conmgr directory specified\n"
				"Specify it with -D or set the environment variable CMDATA.\n", progname);
		return 1;
	}
	snprintf(pidpath, sizeof(pidpath), "%s/conmgr.pid", cmdata);

	if (strcmp(a.cmd, "start") == 0)
		return do_start(a.nowait, a.complete, a.timeout, a.logfile);
	if (strcmp(a.cmd, "stop") == 0)
		return do_stop(a.nowait, a.mode, a.timeout);
	if (strcmp(a.cmd, "status") == 0)
		return do_status(a.info, a.json, a.timeout);
	if (strcmp(a.cmd, "reload") == 0)
		return do_reload();
	return do_logrotate();
}
