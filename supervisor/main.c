/*-------------------------------------------------------------------------
 *
 * main.c
 *	  Entry point of the conmgr program.
 *
 * "conmgr -D DIR" runs the daemon in the foreground (supervisor.c), its
 * messages on stderr, or with "-l FILE" appended to FILE, which it opens
 * again on SIGUSR1 (cm_ctl logrotate); "conmgr -D DIR -n [-v]" only loads
 * DIR/conmgr.conf, reports every problem on stderr and, with -v, prints
 * the normalised configuration.
 *
 * Exit codes: 0 success, 1 configuration or start-up error, 2 bad usage.
 *
 *-------------------------------------------------------------------------
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmconf.h"
#include "cmlog.h"
#include "cmproto.h"
#include "conmgr.h"

static const char *progname = "conmgr";

static void
usage(FILE *f)
{
	fprintf(f,
			"%s is the connection manager daemon for replicated PostgreSQL.\n\n"
			"Usage:\n"
			"  %s -D DIR [-l FILE]   run conmgr in the foreground\n"
			"  %s -D DIR -n [-v]     check DIR/conmgr.conf\n\n"
			"Options:\n"
			"  -D, --cmdata=DIR      conmgr directory (default: $CMDATA)\n"
			"  -l, --log-file=FILE   append messages to FILE, reopened on SIGUSR1\n"
			"  -n, --check           check the configuration and exit\n"
			"  -v, --verbose         with -n, print the normalised configuration\n"
			"  -V, --version         print the version and exit\n"
			"  -?, --help            show this help and exit\n",
			progname, progname, progname);
}

/* What the command line asks for. */
typedef struct cm_options
{
	const char *cmdata;
	const char *log_file;		/* absolute, or NULL */
	bool		check;
	bool		verbose;
} cm_options;

/*
 * Read the options into *o.  Returns -1 to go on, otherwise the exit code
 * (0 after --help or --version).
 */
static int
parse_options(int argc, char **argv, cm_options *o)
{
	static const struct option long_options[] = {
		{"cmdata", required_argument, NULL, 'D'},
		{"log-file", required_argument, NULL, 'l'},
		{"check", no_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, '?'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	o->cmdata = getenv("CMDATA");
	while ((c = getopt_long(argc, argv, "D:l:nvV?", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'D':
				o->cmdata = optarg;
				break;
			case 'l':
				o->log_file = optarg;
				break;
			case 'n':
				o->check = true;
				break;
			case 'v':
				o->verbose = true;
				break;
			case 'V':
				printf("conmgr (protocol version %d)\n", CMPROTO_VERSION);
				return 0;
			case '?':
				if (optopt == 0 && strcmp(argv[optind - 1], "-?") != 0 &&
					strcmp(argv[optind - 1], "--help") != 0)
				{
					fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
					return 2;
				}
				if (optopt != 0 && optopt != '?')
				{
					fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
					return 2;
				}
				usage(stdout);
				return 0;
			default:
				fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
				return 2;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "%s: too many command-line arguments (first is \"%s\")\n",
				progname, argv[optind]);
		return 2;
	}
	return -1;
}

/*
 * Check the options that need more than getopt, and make the log file's
 * path absolute, so that it names the same file whatever happens to cwd.
 * Returns -1 to go on, otherwise the exit code.
 */
static int
check_options(cm_options *o)
{
	static char log_path[PATH_MAX];
	char		cwd[PATH_MAX];

	if (o->cmdata == NULL || o->cmdata[0] == '\0')
	{
		fprintf(stderr, "%s: no conmgr directory specified\n"
				"Specify it with -D or set the environment variable CMDATA.\n",
				progname);
		return 2;
	}
	if (o->log_file != NULL && o->log_file[0] == '\0')
	{
		fprintf(stderr, "%s: the log file name must not be empty\n", progname);
		return 2;
	}
	if (o->log_file == NULL || o->log_file[0] == '/')
		return -1;
	if (getcwd(cwd, sizeof(cwd)) == NULL ||
		(size_t) snprintf(log_path, sizeof(log_path), "%s/%s", cwd, o->log_file) >= sizeof(log_path))
	{
		fprintf(stderr, "%s: could not make the log file path \"%s\" absolute\n",
				progname, o->log_file);
		return 1;
	}
	o->log_file = log_path;
	return -1;
}

/* conmgr -n [-v]: every problem on stderr; with -v the normalised file. */
static int
check_config(const char *cmdata, bool verbose)
{
	static struct cmconf conf;
	static struct cmconf_diags diags;
	char		path[4096];
	int			rc;

	if ((size_t) snprintf(path, sizeof(path), "%s/%s", cmdata, CMCONF_FILENAME) >= sizeof(path))
	{
		fprintf(stderr, "%s: conmgr directory path is too long\n", progname);
		return 2;
	}

	rc = cmconf_load_file(path, &conf, &diags);
	for (int i = 0; i < diags.count; i++)
		fprintf(stderr, "%s: %s: %s\n", progname,
				diags.d[i].level == CMLOG_ERROR ? "error" : "warning",
				diags.d[i].msg);
	if (diags.dropped > 0)
		fprintf(stderr, "%s: %d more problems not shown\n", progname, diags.dropped);
	if (rc != 0)
	{
		fprintf(stderr, "%s: configuration file \"%s\" contains errors\n", progname, path);
		return 1;
	}
	if (verbose)
	{
		static char out[64 * 1024];
		size_t		n = cmconf_format(&conf, out, sizeof(out));

		fwrite(out, 1, n < sizeof(out) ? n : sizeof(out) - 1, stdout);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	cm_options	o = {0};
	int			rc;

	if ((rc = parse_options(argc, argv, &o)) >= 0)
		return rc;
	if ((rc = check_options(&o)) >= 0)
		return rc;
	if (!o.check)
		return supervisor_main(o.cmdata, o.log_file, argc, argv);
	return check_config(o.cmdata, o.verbose);
}
