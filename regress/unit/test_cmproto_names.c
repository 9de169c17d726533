/*-------------------------------------------------------------------------
 *
 * test_cmproto_names.c
 *	  Unit test of the codec's helpers that carry no frame: version
 *	  negotiation (common/cmproto_handshake.c) and the names of targets,
 *	  statuses, error codes and down reasons (common/cmproto_names.c), each
 *	  against docs/protocol.md's wording.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "cmproto.h"
#include "tap.h"

/* ---- 5. negotiation and names ---- */

static void
test_negotiate(void)
{
	static const struct
	{
		uint16_t	a0,
					a1,
					b0,
					b1;
		int			want;
		const char *what;
	}			cases[] = {
		{1, 1, 1, 1, 1, "equal 1..1"},
		{1, 3, 1, 3, 3, "equal 1..3"},
		{1, 3, 2, 5, 3, "overlap 1..3 / 2..5"},
		{2, 5, 1, 3, 3, "overlap 2..5 / 1..3"},
		{1, 5, 2, 3, 3, "nested 1..5 / 2..3"},
		{2, 3, 1, 5, 3, "nested 2..3 / 1..5"},
		{1, 2, 2, 4, 2, "touching 1..2 / 2..4"},
		{1, 2, 3, 4, 0, "disjoint 1..2 / 3..4"},
		{3, 4, 1, 2, 0, "disjoint 3..4 / 1..2"},
		{3, 1, 1, 3, 0, "inverted first range 3..1"},
		{1, 3, 3, 1, 0, "inverted second range 3..1"},
		{5, 2, 5, 2, 0, "both inverted 5..2"},
		{1, 65535, 1, 65535, 65535, "full range"},
		{65535, 65535, 1, 65535, 65535, "top version only"},
		{0, 0, 0, 0, 0, "version 0 alone (no valid version)"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(cmproto_negotiate(cases[i].a0, cases[i].a1, cases[i].b0, cases[i].b1),
			   cases[i].want, "negotiate %s -> %d", cases[i].what, cases[i].want);
	is_int(cmproto_negotiate(CMPROTO_MIN_VERSION, CMPROTO_VERSION,
							 CMPROTO_MIN_VERSION, CMPROTO_VERSION),
		   CMPROTO_VERSION, "negotiate this codec with itself -> CMPROTO_VERSION");
}

static void
test_names(void)
{
	static const char *const targets[7] = {
		"any", "read-write", "read-only", "primary", "standby",
		"prefer-standby", "prefer-primary"
	};
	static const char *const unknown[] = {
		"", "Read-Write", "ANY", "Primary", "read_write", "readwrite", "read-write ",
		" any", "prefer_standby", "master", "anyx", "prefer-", "standby\n"
	};

	for (int i = 0; i < 7; i++)
	{
		is_int(cmproto_target_from_name(targets[i]), i,
			   "target_from_name(\"%s\") = %d", targets[i], i);
		is_str(cmproto_target_name(i), targets[i], "target_name(%d) = \"%s\"", i, targets[i]);
	}
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		is_int(cmproto_target_from_name(unknown[i]), -1,
			   "target_from_name(\"%s\") is unknown (-1)", unknown[i]);
	ok(cmproto_target_name(7) == NULL && cmproto_target_name(-1) == NULL &&
	   cmproto_target_name(255) == NULL, "target_name of 7, -1, 255 is NULL");

	/* status names: the spec's wording, section 1 */
	{
		static const struct
		{
			int			st;
			const char *name;
		}			names[] = {
			{CMPROTO_ETRUNCATED, "message truncated"},
			{CMPROTO_ETOOLONG, "message too long"},
			{CMPROTO_ESHORTLEN, "message length too short"},
			{CMPROTO_EBADFLAGS, "invalid header flags"},
			{CMPROTO_EUNKNOWNTYPE, "unknown message type"},
			{CMPROTO_EUNEXPECTED, "message type not expected from this peer"},
			{CMPROTO_ERANGE, "field out of range"},
			{CMPROTO_EBADSTRING, "invalid string"},
			{CMPROTO_ESTRTOOLONG, "string too long"},
			{CMPROTO_ETRAILING, "trailing bytes after message"},
		};

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			is_str(cmproto_strerror(names[i].st), names[i].name,
				   "strerror(%d) is the spec's \"%s\"", names[i].st, names[i].name);
	}
	{
		int			bad = 0;

		for (int s = -100; s <= 100; s++)
		{
			const char *n = cmproto_strerror(s);

			if (n == NULL || n[0] == '\0')
				bad++;
		}
		if (cmproto_strerror(-2147483647 - 1) == NULL || cmproto_strerror(2147483647) == NULL)
			bad++;
		ok(bad == 0, "strerror is non-empty for every status -100..100 and INT_MIN/INT_MAX");
		bad = 0;
		for (int s = CMPROTO_ENOSPACE; s <= CMPROTO_INCOMPLETE; s++)
			for (int s2 = s + 1; s2 <= CMPROTO_INCOMPLETE; s2++)
				if (strcmp(cmproto_strerror(s), cmproto_strerror(s2)) == 0)
					bad++;
		ok(bad == 0, "strerror names the 14 statuses distinctly");
	}

	/* ERROR codes: section 4 */
	{
		static const char *const codes[7] = {
			NULL, "protocol violation", "unsupported protocol version",
			"authentication failed", "too many heartbeat sessions", "shutting down",
			"internal error"
		};

		for (int c = 1; c <= 6; c++)
			is_str(cmproto_error_code_name(c), codes[c], "error_code_name(%d) is \"%s\"",
				   c, codes[c]);
	}
	{
		int			bad = 0;

		for (int c = -5; c <= 300; c++)
			if (cmproto_error_code_name(c) == NULL || cmproto_down_reason_name(c) == NULL ||
				cmproto_type_name(c) == NULL)
				bad++;
		ok(bad == 0, "error_code_name, down_reason_name, type_name non-NULL for -5..300");
	}
	for (int r = 1; r <= 4; r++)
	{
		const char *n = cmproto_down_reason_name(r);

		ok(n != NULL && strcmp(n, cmproto_down_reason_name(0)) != 0,
		   "down_reason_name(%d) is a real name (\"%s\")", r, n ? n : "(null)");
	}
	like(cmproto_down_reason_name(1), "timeout", "reason 1 names the timeout");
	like(cmproto_down_reason_name(2), "lost", "reason 2 names the lost connection");
	like(cmproto_down_reason_name(3), "protocol", "reason 3 names the protocol");
	like(cmproto_down_reason_name(4), "shutting down", "reason 4 names the shutdown");
	like(cmproto_down_reason_name(5), "stale primary", "reason 5 names the stale primary");
}

int
main(void)
{
	test_negotiate();
	test_names();
	return tap_done();
}
