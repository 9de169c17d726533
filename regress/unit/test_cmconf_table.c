/*-------------------------------------------------------------------------
 *
 * test_cmconf_table.c
 *	  Test that every row of conmgr.conf's parameter table is complete:
 *	  a unique name, a one-line description, a default its own row
 *	  accepts and that the defaults apply, and a line in conmgr -v's
 *	  output.  A row added without one of these fails here.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "cmconf_int.h"
#include "cmlog.h"
#include "tap.h"

#define HOST0 "backend_host0 = 'h0'\n"

static struct cmconf conf;
static struct cmconf defaults;
static struct cmconf_diags diags;

static int
parse(const char *text)
{
	return cmconf_parse_buffer("conmgr.conf", text, strlen(text), &conf, &diags);
}

/* The row's name as a file spells it: with instance 0's suffix if any. */
static const char *
file_name(const cmconf_param *par)
{
	static char buf[CMCONF_NAME_MAX + 16];

	snprintf(buf, sizeof(buf), "%s%s", par->name, par->per_instance ? "0" : "");
	return buf;
}

static void
check_row_text(const cmconf_param *par, int row)
{
	ok(par->name != NULL && par->name[0] != '\0' &&
	   strlen(par->name) + 2 <= CMCONF_NAME_MAX, "row %d has a name", row);
	ok(par->desc != NULL && par->desc[0] != '\0' && strchr(par->desc, '\n') == NULL &&
	   strlen(par->desc) <= 80, "%s: a description of one line", par->name);
	for (int j = 0; j < row; j++)
		ok(strcmp(cmconf_params[j].name, par->name) != 0,
		   "%s: name not used by row %d", par->name, j);
}

/*
 * The default is a value the row accepts ("" only where the parameter may
 * be left unset), and writing it in the file changes nothing.
 */
static void
check_row_default(const cmconf_param *par)
{
	char		err[CMCONF_DIAG_LEN] = "";
	char		field[sizeof(struct cmconf_forwards)];
	char		text[CMCONF_LINE_MAX];

	ok(par->boot_val != NULL, "%s: has a default", par->name);
	if (par->boot_val[0] == '\0')
	{
		ok(cmconf_param_names_instance(par) ||
		   (par->type == PT_STRING && par->min == 0) || par->type == PT_FORWARD,
		   "%s: an empty default only for a parameter that may be unset", par->name);
		return;
	}
	ok(cmconf_param_store(par, par->name, 0, par->boot_val, field, err, sizeof(err)),
	   "%s: default \"%s\" is a valid value%s%s", par->name, par->boot_val,
	   err[0] ? ": " : "", err);
	snprintf(text, sizeof(text), HOST0 "%s = '%s'\n", file_name(par), par->boot_val);
	is_int(parse(text), 0, "%s: set to its default, the file loads", par->name);
	ok(memcmp(&conf, &defaults, sizeof(conf)) == 0,
	   "%s: set to its default, the configuration is the default one", par->name);
}

/* conmgr -v prints a line for the row (the address rows when set). */
static void
check_row_printed(const cmconf_param *par, const char *out)
{
	char		want[CMCONF_NAME_MAX + 20];

	snprintf(want, sizeof(want), "\n%s = ", file_name(par));
	ok(strstr(out, want) != NULL, "conmgr -v prints %s", file_name(par));
}

int
main(void)
{
	static char out[64 * 1024];
	size_t		n;

	ok(cmconf_nparams > 0 && cmconf_nparams <= CMCONF_MAX_PARAMS,
	   "the table has 1 to CMCONF_MAX_PARAMS rows");
	is_int(parse(HOST0), 0, "a file with one instance loads");
	defaults = conf;

	/* Every address row set, so that each has a line in the output. */
	is_int(parse(HOST0 "backend_hostaddr0 = '192.0.2.1'\n"), 0,
		   "a file with both addresses of instance 0 loads");
	n = cmconf_format(&conf, out + 1, sizeof(out) - 1);
	out[0] = '\n';
	ok(n > 0 && n < sizeof(out) - 1, "conmgr -v's output fits");

	for (int i = 0; i < cmconf_nparams; i++)
	{
		const cmconf_param *par = &cmconf_params[i];

		check_row_text(par, i);
		check_row_default(par);
		check_row_printed(par, out);
	}
	return tap_done();
}
