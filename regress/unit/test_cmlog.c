/*-------------------------------------------------------------------------
 *
 * test_cmlog.c
 *	  Test common/cmlog.c: level names both ways, and that cmlog_escape
 *	  leaves no control character in a message, keeps everything else, and
 *	  never cuts an escape at the end of its buffer.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmlog.h"
#include "tap.h"

int
main(void)
{
	char		buf[64];
	char		all[256];
	char		big[1200];
	size_t		n;

	is_str(cmlog_level_name(CMLOG_LOG), "LOG", "level name");
	is_int(cmlog_level_from_name("debug"), CMLOG_DEBUG2, "DEBUG is DEBUG2");
	is_int(cmlog_level_from_name("nonsense"), -1, "unknown level name");

	n = cmlog_escape(buf, sizeof(buf), "plain text, 'quoted' \"too\" \\ and \xc3\xa9");
	is_str(buf, "plain text, 'quoted' \"too\" \\ and \xc3\xa9",
		   "printable text, backslashes and UTF-8 are kept as they are");
	is_int((long long) n, (long long) strlen(buf), "the length written is returned");
	cmlog_escape(buf, sizeof(buf), "boom\n2026-12-06 06:00:00.000 UTC [1] LOG:  forged");
	is_str(buf, "boom\\n2026-12-06 06:00:00.000 UTC [1] LOG:  forged",
		   "a newline is written \\n: the forged record stays in its line");
	cmlog_escape(buf, sizeof(buf), "a\rb\tc\x1b[31md\x7f" "e\x01");
	is_str(buf, "a\\rb\\tc\\x1B[31md\\x7Fe\\x01", "\\r, \\t, ESC, DEL and other C0 are escaped");

	/* every byte from 1 to 255: none below 0x20, nor DEL, comes out raw */
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char) i;
	all[255] = '\0';
	cmlog_escape(big, sizeof(big), all);
	{
		int			raw = 0;

		for (const char *p = big; *p; p++)
			if ((unsigned char) *p < 0x20 || *p == 0x7f)
				raw++;
		is_int(raw, 0, "no control byte of 1..255 comes out raw");
	}
	is_int((long long) strlen(big), 28 * 4 + 3 * 2 + (126 - 32 + 1) + 4 + 128,
		   "28 C0 bytes as \\xNN, 3 as \\n \\r \\t, DEL as \\x7F, the rest as is");

	/* a full buffer: cut before an escape, never inside it */
	n = cmlog_escape(buf, 8, "abcde\x1b");
	is_str(buf, "abcde", "an escape that does not fit is left out whole");
	is_int((long long) n, 5, "and the length says so");
	n = cmlog_escape(buf, 8, "abc\x1bz");
	is_str(buf, "abc\\x1B", "an escape that fits to the last byte is kept");
	n = cmlog_escape(buf, 1, "abc");
	is_str(buf, "", "a buffer of one byte gets the NUL only");
	return tap_done();
}
