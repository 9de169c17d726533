/*-------------------------------------------------------------------------
 *
 * test_cmconf.c
 *	  Test the conmgr.conf parser: the manual's examples, every default and
 *	  range boundary, the syntax, and one case per class of error, each
 *	  checked to name its line.
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmconf.h"
#include "cmproto.h"
#include "cmlog.h"
#include "tap.h"

static struct cmconf conf;
static struct cmconf_diags diags;

static int
parse(const char *text)
{
	return cmconf_parse_buffer("conmgr.conf", text, strlen(text), &conf, &diags);
}

/* All diagnostics joined, for like(). */
static const char *
all_diags(void)
{
	static char buf[CMCONF_MAX_DIAGS * (CMCONF_DIAG_LEN + 1)];
	size_t		n = 0;

	buf[0] = '\0';
	for (int i = 0; i < diags.count; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%s\n", diags.d[i].msg);
	return buf;
}

#define HOST0 "backend_host0 = 'h0'\n"

/* One erroneous file: exactly one error, on "line", saying "what". */
static void
check_error(const char *text, int line, const char *what, const char *name)
{
	char		prefix[32];
	int			rc = parse(text);

	if (line > 0)
		snprintf(prefix, sizeof(prefix), "conmgr.conf:%d: ", line);
	else
		snprintf(prefix, sizeof(prefix), "conmgr.conf: ");
	ok(rc == -1 && diags.nerrors == 1, "%s: rejected with one error", name);
	like(all_diags(), prefix, "%s: the error names line %d (0: the whole file)", name, line);
	like(all_diags(), what, "%s: the error says \"%s\"", name, what);
}

int
main(void)
{
	int			nerr_cases = 0;

	/* ---- the manual's instance-number examples ---- */
	is_int(parse("backend_host0='host0'\nbackend_port0=5432\nbackend_host1='host1'\nbackend_port1=2345\n"),
		   0, "manual example 1 (grouped by instance) loads");
	ok(conf.ninstances == 2 && strcmp(conf.inst[0].host, "host0") == 0 &&
	   conf.inst[0].backend_port == 5432 && conf.inst[1].backend_port == 2345,
	   "example 1: two instances with their ports");
	is_int(parse("backend_host0='host0'\nbackend_host1='host1'\nbackend_port0=5432\nbackend_port1=2345\n"),
		   0, "manual example 2 (mixed order) loads");
	ok(conf.inst[0].backend_port == 5432 && conf.inst[1].backend_port == 2345 &&
	   strcmp(conf.inst[1].host, "host1") == 0, "example 2: same result");
	is_int(parse("backend_host0='host0'\nbackend_host2='host2'\nbackend_port0=5432\nbackend_port2=2345\n"),
		   0, "manual example 3 (gap at instance 1) loads");
	ok(conf.ninstances == 2 && !conf.inst[1].configured && conf.inst[2].configured &&
	   conf.inst[2].backend_port == 2345, "example 3: instances 0 and 2");
	is_int(conf.inst_end, 3, "example 3: inst_end is one past the highest instance, 2");
	is_int(parse("backend_host63='h'\n"), 0, "instance 63 alone loads");
	ok(conf.ninstances == 1 && conf.inst_end == 64, "instance 63 alone: inst_end 64");
	is_int(parse("backend_host0='h'\n"), 0, "instance 0 alone loads");
	is_int(conf.inst_end, 1, "instance 0 alone: inst_end 1");
	check_error("backend_host0='host0'\nbackend_host2='host2'\nbackend_port0=5432\nbackend_port1=5555\nbackend_port2=2345\n",
				4, "backend_port1 is set but instance 1 has neither backend_host1 nor backend_hostaddr1",
				"manual example 4 (port without host)");

	/* ---- defaults ---- */
	is_int(parse(HOST0), 0, "a single host loads");
	ok(conf.port == 27546 && conf.heartbeat_interval == 10 &&
	   conf.heartbeat_timeout == 20 && conf.heartbeat_connect_interval == 1 &&
	   conf.heartbeat_connect_timeout == 10 &&
	   conf.log_destination == CMCONF_LOG_STDERR && conf.syslog_facility == 0 &&
	   strcmp(conf.syslog_ident, "conmgr") == 0 &&
	   conf.log_min_messages == CMLOG_WARNING && conf.max_connections == 0 &&
	   conf.attach_timeout == 600,
	   "every global default is the documented one");
	ok(conf.inst[0].backend_port == 27500 && conf.inst[0].watchdog_port == 27545,
	   "per-instance defaults: backend_port 27500, watchdog_port 27545");
	is_int(diags.count, 0, "no diagnostic for a clean file");
	is_int(cmconf_nofile_needed(&conf), 11, "open files needed: 9 + 1 x 2 + 0");
	is_int(parse(HOST0 "max_connections = 100\nforward_ports = 'read-write=6001, read-only=6002'\n"
				 "listen_addresses = '127.0.0.1, ::1'\nforwarder_processes = 2\n"), 0,
		   "forward ports, max_connections and forwarder_processes");
	is_int(cmconf_forwarders(&conf), 2, "forwarder_processes = 2: two forwarders");
	is_int(cmconf_nofile_needed(&conf), 12 + 3 * 2 + 2 + 2 * 2 * 2 + 6 * 100,
		   "with forward ports, a forwarder's: 12 + 3 x 2 processes + 1 x 2 + 2 x 2 addresses x 2 ports + 6 x 100");
	is_int(parse(HOST0 "forward_ports = 'any=6001'\n"), 0, "forwarder_processes left at 0");
	ok(cmconf_forwarders(&conf) >= 1 && cmconf_forwarders(&conf) <= CMCONF_MAX_FORWARDERS,
	   "0: one per processor, 1 to 16 of them");
	is_int(parse(HOST0 "forwarder_processes = 4\n"), 0, "forwarder_processes without forward_ports");
	is_int(cmconf_forwarders(&conf), 0, "no forward ports: no forwarder");
	ok(parse(HOST0 "forwarder_processes = 17\n") != 0 && diags.nerrors == 1 &&
	   strstr(diags.d[0].msg, "forwarder_processes") != NULL,
	   "forwarder_processes = 17 is an error naming the parameter");
	is_int(parse(HOST0 "max_connections = 100\n"), 0, "max_connections alone");
	is_int(cmconf_nofile_needed(&conf), 9 + 2 + 100, "without, the listener's: 9 + 1 x 2 + 100");

	/* ---- boundaries ---- */
	{
		static const struct
		{
			const char *name;
			long		lo;
			long		hi;
		}			ranges[] = {
			{"port", 1, 65535},
			{"backend_port0", 1, 65535},
			{"watchdog_port0", 1, 65535},
			{"heartbeat_interval", 1, 3600},
			{"heartbeat_timeout", 1, 3600},
			{"heartbeat_connect_interval", 1, INT_MAX},
			{"heartbeat_connect_timeout", 1, INT_MAX},
			{"max_connections", 0, INT_MAX},
			{"attach_timeout", 1, INT_MAX},
		};

		for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		{
			char		text[256];

			snprintf(text, sizeof(text), HOST0 "%s = %ld\n", ranges[i].name, ranges[i].lo);
			ok(parse(text) == 0, "%s = %ld (minimum) accepted", ranges[i].name, ranges[i].lo);
			snprintf(text, sizeof(text), HOST0 "%s = %ld\n", ranges[i].name, ranges[i].hi);
			ok(parse(text) == 0, "%s = %ld (maximum) accepted", ranges[i].name, ranges[i].hi);
			snprintf(text, sizeof(text), HOST0 "%s = %ld\n", ranges[i].name, ranges[i].lo - 1);
			ok(parse(text) == -1 && diags.nerrors == 1, "%s = %ld (below) rejected", ranges[i].name, ranges[i].lo - 1);
			like(all_diags(), "conmgr.conf:2: invalid value", "%s below range: message names line 2", ranges[i].name);
			snprintf(text, sizeof(text), HOST0 "%s = %ld\n", ranges[i].name, ranges[i].hi + 1);
			ok(parse(text) == -1 && diags.nerrors == 1, "%s = %ld (above) rejected", ranges[i].name, ranges[i].hi + 1);
			snprintf(text, sizeof(text), "conmgr.conf:2: invalid value \"%ld\" for parameter \"%s\"",
					 ranges[i].hi + 1, ranges[i].name);
			like(all_diags(), text, "%s above range: message names line 2 and the parameter", ranges[i].name);
		}
	}
	is_int(parse(HOST0 "backend_host63 = 'h63'\n"), 0, "instance number 63 accepted");
	is_int(conf.ninstances, 2, "two instances");

	/* ---- syntax that must work ---- */
	is_int(parse("# a comment\n\n   \n\tbackend_host0='h0' # trailing comment\n"), 0,
		   "comments, blank lines and indentation");
	is_int(parse("backend_host0=h0\nport='27547'\n"), 0, "bare strings and quoted integers");
	is_int(conf.port, 27547, "quoted integer value");
	is_int(parse("BACKEND_HOST0 = 'h0'\nPort = 1234\nLog_Min_Messages = error\nsyslog_facility = local7\n"),
		   0, "names and enum values are case-insensitive");
	ok(conf.port == 1234 && conf.log_min_messages == CMLOG_ERROR && conf.syslog_facility == 7,
	   "case-insensitive values stored");
	is_int(parse(HOST0 "syslog_ident = 'my app''s \\'cm\\' \\\\ x'\n"), 0, "quote and backslash escapes");
	is_str(conf.syslog_ident, "my app's 'cm' \\ x", "escaped string value");
	is_int(parse(HOST0 "syslog_ident = 'a # not a comment'\n"), 0, "# inside quotes is not a comment");
	is_str(conf.syslog_ident, "a # not a comment", "value with #");
	is_int(parse("backend_hostaddr0 = '::1'\nbackend_hostaddr1 = ::1\nbackend_hostaddr2 = '2001:db8::5'\nbackend_host3 = 'fe80::1'\nbackend_hostaddr4 = 127.0.0.2\n"),
		   0, "IPv6 and IPv4 addresses, quoted or not");
	is_str(cmconf_connect_host(&conf.inst[2]), "2001:db8::5", "IPv6 hostaddr stored");
	is_int(parse("backend_host0 = 'db0'\nbackend_hostaddr0 = '10.1.2.3'\n"), 0, "host and hostaddr together");
	is_str(cmconf_connect_host(&conf.inst[0]), "10.1.2.3", "hostaddr wins over host");
	is_int(parse(HOST0 "log_destination = 'syslog'\n"), 0, "log_destination syslog");
	is_int(conf.log_destination, CMCONF_LOG_SYSLOG, "syslog only");
	is_int(parse(HOST0 "log_destination = ' stderr , SYSLOG '\n"), 0, "log_destination list with spaces");
	is_int(conf.log_destination, CMCONF_LOG_STDERR | CMCONF_LOG_SYSLOG, "both destinations");
	is_int(parse(HOST0 "log_min_messages = debug\n"), 0, "DEBUG accepted");
	is_int(conf.log_min_messages, CMLOG_DEBUG2, "DEBUG means DEBUG2");
	{
		static const char *levels[] = {"DEBUG5", "DEBUG1", "INFO", "NOTICE", "WARNING", "ERROR", "LOG", "FATAL", "PANIC"};

		for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		{
			char		text[128];

			snprintf(text, sizeof(text), HOST0 "log_min_messages = %s\n", levels[i]);
			ok(parse(text) == 0 && strcmp(cmlog_level_name(conf.log_min_messages), levels[i]) == 0,
			   "log_min_messages = %s", levels[i]);
		}
	}
	is_int(parse("backend_host0 = 'h0'\r\nport = 5\r\n"), 0, "CRLF line ends");
	is_int(parse("backend_host0 = 'h0'"), 0, "no newline at the end of the file");

	/* ---- listen_addresses ---- */
	is_int(parse(HOST0), 0, "listen_addresses default");
	is_str(conf.listen_addresses, "localhost", "listen_addresses defaults to localhost");
	is_int(parse(HOST0 "listen_addresses = '*'\n"), 0, "listen_addresses = '*'");
	is_int(parse(HOST0 "listen_addresses = '127.0.0.1, ::1,cm-host.example'\n"), 0, "listen_addresses list");
	is_str(conf.listen_addresses, "127.0.0.1, ::1,cm-host.example", "list kept as written");

	/* ---- the warning ---- */
	is_int(parse(HOST0 "heartbeat_interval = 5\nheartbeat_timeout = 5\n"), 0,
		   "timeout equal to interval still loads");
	ok(diags.nwarnings == 1 && diags.d[0].level == CMLOG_WARNING, "but warns");
	like(all_diags(), "conmgr.conf:3: heartbeat_timeout (5) is not greater than heartbeat_interval (5)",
		 "the warning names the heartbeat_timeout line");
	is_int(parse(HOST0 "heartbeat_interval = 30\n"), 0, "interval above the default timeout loads");
	like(all_diags(), "conmgr.conf:2: heartbeat_timeout (20) is not greater", "warning names the interval line when timeout is default");

	/* ---- errors, one class each ---- */
#define ERR(text, line, what, name) do { check_error(text, line, what, name); nerr_cases++; } while (0)
	ERR(HOST0 "no_such = 1\n", 2, "unrecognized configuration parameter \"no_such\"", "unknown parameter");
	ERR(HOST0 "backend_hostx0 = 'a'\n", 2, "unrecognized configuration parameter \"backend_hostx0\"", "unknown per-instance name");
	ERR(HOST0 "backend_host = 'a'\n", 2, "needs an instance number", "missing instance number");
	ERR(HOST0 "backend_host01 = 'a'\n", 2, "no leading zeros", "leading zero in instance number");
	ERR(HOST0 "backend_host64 = 'a'\n", 2, "must be between 0 and 63", "instance number too large");
	ERR(HOST0 "backend_host99999999999999999999 = 'a'\n", 2, "must be between 0 and 63", "instance number overflow");
	ERR(HOST0 "port = 1\nport = 2\n", 3, "parameter \"port\" is already set at line 2", "duplicate global");
	ERR(HOST0 "backend_host0 = 'other'\n", 2, "parameter \"backend_host0\" is already set at line 1", "duplicate per-instance");
	ERR(HOST0 "port 27546\n", 2, "\"=\" expected after \"port\"", "missing =");
	ERR(HOST0 "port\n", 2, "\"=\" and a value expected after \"port\"", "name alone");
	ERR(HOST0 "port =\n", 2, "missing value for parameter \"port\"", "missing value");
	ERR(HOST0 "port = # nothing\n", 2, "missing value for parameter \"port\"", "value is a comment");
	ERR(HOST0 "= 5\n", 2, "expected a parameter name", "missing name");
	ERR(HOST0 "9port = 5\n", 2, "expected a parameter name", "name starting with a digit");
	ERR(HOST0 "syslog_ident = 'abc\n", 2, "unterminated quoted string", "unterminated quote");
	ERR(HOST0 "syslog_ident = 'a\\nb'\n", 2, "invalid escape \"\\n\"", "unknown escape");
	ERR(HOST0 "port = 5 6\n", 2, "syntax error at \"6\" after the value of \"port\"", "two values");
	ERR(HOST0 "port = 5 heartbeat_interval = 3\n", 2, "one parameter per line", "two settings on a line");
	ERR(HOST0 "log_destination = stderr,syslog\n", 2, "syntax error at \",\" after the value of \"log_destination\"", "unquoted list");
	ERR(HOST0 "syslog_ident = my app\n", 2, "syntax error at \"a\" after the value", "unquoted space");
	ERR(HOST0 "port = 'abc'\n", 2, "invalid value \"abc\" for parameter \"port\": must be an integer between 1 and 65535", "integer not a number");
	ERR(HOST0 "port = 12.5\n", 2, "invalid value \"12.5\" for parameter \"port\"", "integer with a fraction");
	ERR(HOST0 "port = ''\n", 2, "invalid value \"\" for parameter \"port\"", "empty integer");
	ERR(HOST0 "heartbeat_interval = 99999999999999999999\n", 2, "invalid value \"99999999999999999999\"", "integer overflow");
	ERR(HOST0 "max_connections = -1\n", 2, "must be an integer between 0 and 2147483647", "negative max_connections");
	ERR(HOST0 "heartbeat_timeout = 0\n", 2, "for parameter \"heartbeat_timeout\": must be an integer between 1 and", "zero timeout");
	ERR(HOST0 "listen_addresses = 'a,,b'\n", 2, "must be \"*\" or a list of host names and IP addresses", "empty item in listen_addresses");
	ERR(HOST0 "listen_addresses = '*,localhost'\n", 2, "must be \"*\" or a list", "star inside a listen list");
	ERR(HOST0 "log_destination = 'file'\n", 2, "must be a list of \"stderr\" and \"syslog\"", "unknown log destination");
	ERR(HOST0 "log_destination = 'stderr,'\n", 2, "must be a list of \"stderr\" and \"syslog\"", "empty item in log_destination");
	ERR(HOST0 "log_destination = ''\n", 2, "invalid value \"\" for parameter \"log_destination\"", "empty log_destination");
	ERR(HOST0 "syslog_facility = LOCAL8\n", 2, "must be one of LOCAL0 to LOCAL7", "facility out of range");
	ERR(HOST0 "syslog_facility = USER\n", 2, "must be one of LOCAL0 to LOCAL7", "facility not LOCALn");
	ERR(HOST0 "log_min_messages = verbose\n", 2, "invalid value \"verbose\" for parameter \"log_min_messages\"", "unknown level");
	ERR(HOST0 "syslog_ident = ''\n", 2, "must be 1 to 63 characters long", "empty syslog_ident");
	ERR(HOST0 "syslog_ident = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'\n", 2, "must be 1 to 63 characters long", "syslog_ident too long");
	ERR("backend_host0 = ''\n", 1, "parameter \"backend_host0\" must not be empty", "empty host");
	ERR("backend_host0 = 'bad host!'\n", 1, "not a host name or an IP address", "host with bad characters");
	ERR("backend_host0 = 'a..b'\n", 1, "not a host name or an IP address", "host with an empty label");
	ERR("backend_hostaddr0 = 'db.example'\n", 1, "must be a numeric IPv4 or IPv6 address", "hostaddr given a name");
	ERR("backend_hostaddr0 = '300.1.1.1'\n", 1, "must be a numeric IPv4 or IPv6 address", "hostaddr out of range");
	ERR("backend_hostaddr0 = '::1::2'\n", 1, "must be a numeric IPv4 or IPv6 address", "malformed IPv6");
	ERR(HOST0 "watchdog_port5 = 27545\n", 2, "watchdog_port5 is set but instance 5 has neither", "watchdog_port without host");
	ERR(HOST0 "port = 0x10\n", 2, "invalid value \"0x10\" for parameter \"port\"", "hexadecimal integer");
	ERR(HOST0 "port = -5\n", 2, "invalid value \"-5\" for parameter \"port\": must be an integer between 1 and 65535", "negative port");
	ERR(HOST0 "syslog_ident = 'abc'def\n", 2, "syntax error at \"d\" after the value of \"syslog_ident\"", "garbage after a quoted string");
	ERR(HOST0 "syslog_ident = 'abc\\\n", 2, "unterminated quoted string in the value of \"syslog_ident\"", "backslash at the end of the line");
	ERR(HOST0 "PORT = 1\nport = 2\n", 3, "parameter \"port\" is already set at line 2", "duplicate in another case");
	ERR(HOST0 "\xEF\xBB\xBFport = 1\n", 2, "syntax error at \"\\xEF\": expected a parameter name", "byte order mark, shown as \\xEF");
	ERR(HOST0 "port = '1\x1b[2J'\n", 2, "invalid value \"1\\x1B[2J\" for parameter \"port\"", "control byte in a value, shown as \\x1B");
	ok(strchr(all_diags(), '\x1b') == NULL, "no raw control byte reaches the message");
	{
		char		text[700];
		char		want[200];

		snprintf(text, sizeof(text), HOST0 "syslog_ident = '%0500d'\n", 0);
		snprintf(want, sizeof(want), "invalid value \"%048d...\" for parameter \"syslog_ident\": must be 1 to 63 characters long", 0);
		ERR(text, 2, want, "long value: cut, the parameter and the rule kept");
		snprintf(text, sizeof(text), "backend_host0 = '%0256d'\n", 0);
		ERR(text, 1, "value of parameter \"backend_host0\" is too long: at most 255 characters", "host name too long");
		snprintf(text, sizeof(text), HOST0 "heartbeat_key_file = '/%0255d'\n", 0);
		ERR(text, 2, "for parameter \"heartbeat_key_file\": must be 0 to 255 characters long", "key file path too long");
	}
	{
		char		text[1200];
		size_t		n = snprintf(text, sizeof(text), HOST0 "listen_addresses = '");

		for (int i = 0; i < 150; i++)
			n += snprintf(text + n, sizeof(text) - n, "h%05d,", i);
		snprintf(text + n - 1, sizeof(text) - n + 1, "'\n");
		ERR(text, 2, "value of parameter \"listen_addresses\" is too long: at most 1023 characters", "listen_addresses too long");
	}
	/* ---- forward_ports ---- */
	is_int(parse(HOST0), 0, "forward_ports default");
	ok(conf.forward_ports.n == 0 && conf.forward_ports.text[0] == '\0', "forward_ports defaults to none");
	is_int(parse(HOST0 "forward_ports = 'read-write=27547, read-only = 27548,any=1'\n"), 0,
		   "forward_ports: three targets");
	ok(conf.forward_ports.n == 3 &&
	   conf.forward_ports.f[0].target == CMPROTO_TARGET_READ_WRITE && conf.forward_ports.f[0].port == 27547 &&
	   conf.forward_ports.f[1].target == CMPROTO_TARGET_READ_ONLY && conf.forward_ports.f[1].port == 27548 &&
	   conf.forward_ports.f[2].target == CMPROTO_TARGET_ANY && conf.forward_ports.f[2].port == 1,
	   "forward_ports: targets and ports in the order written");
	is_str(conf.forward_ports.text, "read-write=27547, read-only = 27548,any=1", "forward_ports kept as written");
	is_int(parse(HOST0 "forward_ports = 'any=1,read-write=2,read-only=3,primary=4,standby=5,"
				 "prefer-standby=6,prefer-primary=7'\n"), 0, "forward_ports: every target once");
	is_int(conf.forward_ports.n, 7, "seven ports");
	is_int(parse(HOST0 "forward_ports = ''\n"), 0, "forward_ports = '': none");
	is_int(conf.forward_ports.n, 0, "no port");
	ERR(HOST0 "forward_ports = 'read-write=27547, read-write=27548'\n", 2,
		"for parameter \"forward_ports\": target read-write is given twice", "forward_ports: a repeated target");
	ERR(HOST0 "forward_ports = 'read-write=27547, read-only=27547'\n", 2,
		"for parameter \"forward_ports\": port 27547 is given twice", "forward_ports: a repeated port");
	ERR(HOST0 "forward_ports = 'readwrite=27547'\n", 2,
		"unknown target \"readwrite\" (one of any, read-write, read-only, primary, standby, prefer-standby, prefer-primary)",
		"forward_ports: an unknown target");
	ERR(HOST0 "forward_ports = 'read-write=0'\n", 2,
		"port \"0\" of read-write must be an integer between 1 and 65535", "forward_ports: port 0");
	ERR(HOST0 "forward_ports = 'read-write=65536'\n", 2, "port \"65536\" of read-write must be", "forward_ports: port 65536");
	ERR(HOST0 "forward_ports = 'read-write=x1'\n", 2, "port \"x1\" of read-write must be", "forward_ports: not a number");
	ERR(HOST0 "forward_ports = 'read-write=27547,'\n", 2, "an empty item in the list", "forward_ports: an empty item");
	ERR(HOST0 "forward_ports = 'read-write'\n", 2, "item \"read-write\" is not TARGET=PORT", "forward_ports: no port");
	ERR(HOST0 "forward_ports = 'read-write=27546'\n", 2,
		"invalid value for parameter \"forward_ports\": port 27546 of read-write is conmgr's own port (parameter \"port\")",
		"forward_ports: conmgr's own port, the default");
	ERR(HOST0 "forward_ports = 'standby=6000'\nport = 6000\n", 2,
		"port 6000 of standby is conmgr's own port", "forward_ports: conmgr's own port, set after it");


	ERR("port = 27546\n", 0, "no instance is configured", "no instance");
	ERR("", 0, "no instance is configured", "empty file");
	{
		char		longline[CMCONF_LINE_MAX + 100];

		memset(longline, ' ', sizeof(longline));
		memcpy(longline, HOST0, strlen(HOST0));
		memcpy(longline + strlen(HOST0), "# ", 2);
		longline[sizeof(longline) - 2] = '\n';
		longline[sizeof(longline) - 1] = '\0';
		ERR(longline, 2, "line is too long", "line too long");
	}
	{
		/*
		 * Names and values at and past their limits, up to a line of the
		 * longest length that is still read: a name must not overrun its
		 * buffer, a value fills at most the line.
		 */
		static char text[CMCONF_LINE_MAX + 64];
		char		want[200];
		size_t		n;

		snprintf(text, sizeof(text), HOST0 "%0*d = 1\n", CMCONF_NAME_MAX, 0);
		memset(text + strlen(HOST0), 'a', CMCONF_NAME_MAX);
		snprintf(want, sizeof(want), "unrecognized configuration parameter \"%.48s...\"", text + strlen(HOST0));
		ERR(text, 2, want, "name at the limit: read, unknown");
		snprintf(text, sizeof(text), HOST0 "%0*d = 1\n", CMCONF_NAME_MAX + 1, 0);
		memset(text + strlen(HOST0), 'a', CMCONF_NAME_MAX + 1);
		snprintf(want, sizeof(want), "parameter name \"%.48s...\" is too long: at most %d characters",
				 text + strlen(HOST0), CMCONF_NAME_MAX);
		ERR(text, 2, want, "name one past the limit");
		/* a line that is one name, as long as a line may be */
		n = strlen(HOST0);
		memcpy(text, HOST0, n);
		memset(text + n, 'a', CMCONF_LINE_MAX);
		text[n + CMCONF_LINE_MAX] = '\0';
		ERR(text, 2, "parameter name \"aaaa", "a name the length of the longest line");
		like(all_diags(), "is too long: at most 63 characters", "and it is told as a name too long");
		text[n + CMCONF_LINE_MAX - 1] = '=';
		ERR(text, 2, "is too long: at most 63 characters", "a name one short of the longest line, then =");
		/* the longest line: a bare, then a quoted value filling it */
		n = snprintf(text, sizeof(text), HOST0 "syslog_ident=");
		memset(text + n, 'x', CMCONF_LINE_MAX - (n - strlen(HOST0)));
		text[strlen(HOST0) + CMCONF_LINE_MAX] = '\0';
		ERR(text, 2, "for parameter \"syslog_ident\": must be 1 to 63 characters long", "a bare value filling the longest line");
		n = snprintf(text, sizeof(text), HOST0 "syslog_ident= '");	/* then an even count */
		memset(text + n, '\'', CMCONF_LINE_MAX - (n - strlen(HOST0)) - 1);
		memcpy(text + strlen(HOST0) + CMCONF_LINE_MAX - 1, "'", 2);
		ERR(text, 2, "for parameter \"syslog_ident\": must be 1 to 63 characters long", "a quoted value of '' filling the longest line");
		text[strlen(HOST0) + CMCONF_LINE_MAX - 1] = 'x';
		ERR(text, 2, "unterminated quoted string in the value of \"syslog_ident\"", "an open quote filling the longest line");
	}
	{
		static const char nul[] = "backend_host0 = 'h0'\nport = 1\0 2\n";
		int			rc = cmconf_parse_buffer("conmgr.conf", nul, sizeof(nul) - 1, &conf, &diags);

		ok(rc == -1 && diags.nerrors == 1, "NUL byte: rejected");
		like(all_diags(), "conmgr.conf:2: line contains a NUL byte", "NUL byte: names line 2");
		nerr_cases++;
	}
	ok(nerr_cases >= 30, "%d distinct error cases", nerr_cases);

	/* ---- every error is reported ---- */
	is_int(parse("port = 0\nfoo = 1\nbackend_host0 = 'h'\nlog_min_messages = x\nbackend_port3 = 1\n"),
		   -1, "a file with four errors fails");
	is_int(diags.nerrors, 4, "all four errors are reported");
	like(all_diags(), "conmgr.conf:1:", "line 1 reported");
	like(all_diags(), "conmgr.conf:2:", "line 2 reported");
	like(all_diags(), "conmgr.conf:4:", "line 4 reported");
	like(all_diags(), "conmgr.conf:5:", "line 5 reported");
	{
		char		many[200 * 12];
		size_t		n = 0;

		for (int i = 0; i < 200; i++)
			n += snprintf(many + n, sizeof(many) - n, "bogus%d=1\n", i);
		ok(parse(many) == -1 && diags.count == CMCONF_MAX_DIAGS &&
		   diags.nerrors == 201 && diags.dropped == 201 - CMCONF_MAX_DIAGS,
		   "200 bad lines: errors counted, the list is bounded");
	}

	/* ---- the normalised output re-parses to the same struct ---- */
	{
		static const char *configs[] = {
			HOST0,
			"backend_hostaddr0 = ::1\nbackend_host1 = 'db-1.example'\nbackend_port1 = 6000\nwatchdog_port1 = 7000\nlog_destination = 'stderr,syslog'\nsyslog_ident = 'it''s \\\\ \\'x\\''\nheartbeat_interval = 3\nheartbeat_timeout = 7\nlog_min_messages = debug5\nmax_connections = 100\nattach_timeout = 30\nsyslog_facility = LOCAL3\nport = 1\n",
			"backend_host0 = 'a'\nbackend_hostaddr0 = '127.0.0.1'\nbackend_host63 = 'z'\nlog_destination = 'syslog'\n",
		};

		for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
		{
			static struct cmconf first;
			static char text[64 * 1024];
			size_t		n;

			ok(parse(configs[i]) == 0, "config %zu loads", i);
			first = conf;
			n = cmconf_format(&first, text, sizeof(text));
			ok(n > 0 && n < sizeof(text), "config %zu formats", i);
			ok(parse(text) == 0 && memcmp(&first, &conf, sizeof(conf)) == 0,
			   "config %zu: formatted output re-parses to the same struct", i);
		}
	}

	/* ---- reading the file: each failure names the file and the cause ---- */
	{
		char		dir[] = "/tmp/test_cmconf.XXXXXX";
		char		path[64];
		FILE	   *f;

		ok(mkdtemp(dir) != NULL, "scratch directory");
		snprintf(path, sizeof(path), "%s/conmgr.conf", dir);
		ok(cmconf_load_file(path, &conf, &diags) == -1 && diags.nerrors == 1, "missing file: rejected");
		like(all_diags(), ": could not open configuration file: No such file or directory", "missing file: says so");
		like(all_diags(), path, "missing file: names the file");

		ok(mkdir(path, 0700) == 0, "conmgr.conf as a directory");
		ok(cmconf_load_file(path, &conf, &diags) == -1 && diags.nerrors == 1, "directory: rejected");
		like(all_diags(), ": could not read configuration file: Is a directory", "directory: says so");
		rmdir(path);

		/* a FIFO would block open() and read() forever */
		ok(mkfifo(path, 0600) == 0, "conmgr.conf as a FIFO");
		ok(cmconf_load_file(path, &conf, &diags) == -1 && diags.nerrors == 1, "FIFO: rejected, no hang");
		like(all_diags(), ": configuration file is not a regular file", "FIFO: says so");
		unlink(path);

		f = fopen(path, "w");
		fputs(HOST0, f);
		for (int i = 0; i < CMCONF_FILE_MAX / 64; i++)
			fprintf(f, "%-63s\n", "# padding");
		fclose(f);
		ok(cmconf_load_file(path, &conf, &diags) == -1 && diags.nerrors == 1, "1 MiB + 1 line: rejected");
		like(all_diags(), "configuration file is too large: at most 1048576 bytes", "too large: says so");

		f = fopen(path, "w");
		fputs(HOST0 "port = 1234\n", f);
		fclose(f);
		ok(cmconf_load_file(path, &conf, &diags) == 0 && conf.port == 1234, "a readable file loads");
		if (geteuid() != 0)
		{
			chmod(path, 0);
			ok(cmconf_load_file(path, &conf, &diags) == -1 && diags.nerrors == 1, "unreadable file: rejected");
			like(all_diags(), ": could not open configuration file: Permission denied", "unreadable: says so");
		}
		unlink(path);
		rmdir(dir);
	}

	/* ---- garbage never crashes (bounded, fixed seed) ---- */
	{
		static char buf[8192];
		int			failures = 0;

		srand(12345);
		for (int iter = 0; iter < 20000; iter++)
		{
			size_t		len = (size_t) (rand() % (int) sizeof(buf));
			char	   *copy;

			for (size_t i = 0; i < len; i++)
			{
				int			r = rand() % 16;

				buf[i] = r < 2 ? '\n' : r < 3 ? '\'' : r < 4 ? '=' : r < 5 ? '#' :
					(char) (rand() % 256);
			}
			/* an exact-size heap copy lets valgrind see any overread */
			copy = malloc(len ? len : 1);
			memcpy(copy, buf, len);
			if (cmconf_parse_buffer("fuzz", copy, len, &conf, &diags) == 0 &&
				conf.ninstances == 0)
				failures++;
			free(copy);
		}
		is_int(failures, 0, "20000 random files: no crash, nothing accepted without an instance");
	}

	return tap_done();
}
