/*-------------------------------------------------------------------------
 *
 * fuzz_cmconf.c
 *	  libFuzzer target: the conmgr.conf parser.
 *
 * Any bytes: the parser must return without a crash, leak or read past
 * the input, and every diagnostic must name the file.  A file that loads
 * is printed (cmconf_format, what conmgr -n -v shows) and parsed again: it
 * must load, with no error, and print the same (the normal form is a
 * fixed point).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmconf.h"

static struct cmconf conf,
			conf2;
static struct cmconf_diags diags;
static char out1[65536],
			out2[65536];

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		n1,
				n2;

	if (cmconf_parse_buffer("fuzz.conf", (const char *) data, size, &conf, &diags) != 0)
	{
		if (diags.nerrors == 0)
			abort();			/* a failure must say why */
		for (int i = 0; i < diags.count; i++)
			if (strncmp(diags.d[i].msg, "fuzz.conf", 9) != 0)
				abort();		/* and name the file */
		return 0;
	}
	n1 = cmconf_format(&conf, out1, sizeof(out1));
	if (n1 >= sizeof(out1))
		abort();
	if (cmconf_parse_buffer("printed.conf", out1, n1, &conf2, &diags) != 0 ||
		diags.nerrors != 0)
		abort();				/* the printed form must load */
	n2 = cmconf_format(&conf2, out2, sizeof(out2));
	if (n1 != n2 || memcmp(out1, out2, n1) != 0)
		abort();				/* and print the same */
	return 0;
}
