/*-------------------------------------------------------------------------
 *
 * test_errtext.c
 *	  Test libpq-cm/errtext.c: a connection's error message is the first
 *	  CM_ERRBUF_SIZE - 1 bytes of everything appended to it, however the
 *	  messages reach it.
 *
 * The probe and resolve steps of libpq-cm return their messages in a
 * cm_text of their own, which the connect state machine appends to the
 * connection's; the message must be byte for byte what appending each
 * message to the connection's text directly gives.  A seeded random run of
 * messages of every length up to beyond the size checks that against a
 * plain model string, through both routes; then libpq's words for a
 * destination that failed, in each of their shapes.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "errtext.h"
#include "tap.h"

#define NRUNS		2000
#define MAX_STEPS	6			/* steps of one run */
#define MAX_MSGS	3			/* messages of one step */
#define MSG_MAX		(CM_ERRBUF_SIZE + 200)	/* the longest message, NUL
											 * included */
#define MODEL_MAX	(MAX_STEPS * MAX_MSGS * MSG_MAX)

/* A message of n bytes, none of them a NUL or a '%'. */
static void
random_message(char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = 'a' + random() % 26;
	buf[n] = '\0';
}

/* Does t hold exactly the first CM_ERRBUF_SIZE - 1 bytes of model? */
static bool
text_is_prefix(const cm_text *t, const char *model, size_t mlen)
{
	size_t		want = mlen < CM_ERRBUF_SIZE - 1 ? mlen : CM_ERRBUF_SIZE - 1;

	return t->len == want && strlen(t->buf) == want &&
		memcmp(t->buf, model, want) == 0;
}

int
main(void)
{
	static cm_text direct,
				via,
				step;
	static char model[MODEL_MAX + 1];
	char		msg[MSG_MAX];
	int			bad_direct = 0,
				bad_via = 0;

	cm_text_reset(&direct);
	ok(direct.len == 0 && direct.buf[0] == '\0', "a reset text is empty");
	cm_text_appendf(&direct, "%s: %d\n", "one", 1);
	cm_text_appendf(&direct, "two\n");
	is_str(direct.buf, "one: 1\ntwo\n", "messages are appended in order");
	is_int(direct.len, strlen("one: 1\ntwo\n"), "len is the text's length");

	srandom(20);
	for (int run = 0; run < NRUNS; run++)
	{
		size_t		mlen = 0;
		int			nsteps = 1 + random() % MAX_STEPS;

		cm_text_reset(&direct);
		cm_text_reset(&via);
		for (int s = 0; s < nsteps; s++)
		{
			int			nmsg = random() % (MAX_MSGS + 1);

			/* one step: its messages, appended directly and via its text */
			cm_text_reset(&step);
			for (int m = 0; m < nmsg; m++)
			{
				/* mostly short, sometimes past the whole size */
				size_t		n = random() % 8 == 0 ?
					(size_t) random() % (sizeof(msg) - 1) : (size_t) random() % 300;

				random_message(msg, n);
				cm_text_appendf(&direct, "%s\n", msg);
				cm_text_appendf(&step, "%s\n", msg);
				memcpy(model + mlen, msg, n);
				model[mlen + n] = '\n';
				mlen += n + 1;
			}
			if (step.len > 0)
				cm_text_appendf(&via, "%s", step.buf);
		}
		if (!text_is_prefix(&direct, model, mlen))
			bad_direct++;
		if (!text_is_prefix(&via, model, mlen))
			bad_via++;
	}
	is_int(bad_direct, 0, "%d runs: appended one by one, the text is the first %d bytes of them all",
		   NRUNS, CM_ERRBUF_SIZE - 1);
	is_int(bad_via, 0, "%d runs: appended through each step's own text, the same bytes",
		   NRUNS);

	/* a full text takes nothing more */
	cm_text_reset(&direct);
	random_message(msg, CM_ERRBUF_SIZE + 10);
	cm_text_appendf(&direct, "%s", msg);
	is_int(direct.len, CM_ERRBUF_SIZE - 1, "a message past the size is cut at size - 1 bytes");
	cm_text_appendf(&direct, "more");
	ok(direct.len == CM_ERRBUF_SIZE - 1 && memcmp(direct.buf, msg, CM_ERRBUF_SIZE - 1) == 0,
	   "a full text stays as it is");

	/* libpq's words for a destination that failed */
	cm_text_reset(&direct);
	cm_text_failed(&direct, "db.example", NULL, "192.0.2.1", "5432", "Connection refused");
	is_str(direct.buf, "connection to server at \"db.example\" (192.0.2.1), port 5432 failed: Connection refused\n",
		   "host and the address tried");
	cm_text_reset(&direct);
	cm_text_failed(&direct, "", "192.0.2.7", "192.0.2.7", "6432", "timeout expired");
	is_str(direct.buf, "connection to server at \"192.0.2.7\" (192.0.2.7), port 6432 failed: timeout expired\n",
		   "no host: named by its hostaddr");
	cm_text_reset(&direct);
	cm_text_failed(&direct, "localhost", NULL, NULL, "27546", "why");
	is_str(direct.buf, "connection to server at \"localhost\", port 27546 failed: why\n",
		   "no address reached: none named");
	cm_text_reset(&direct);
	cm_text_failed(&direct, "localhost", NULL, "", "27546", "timeout expired");
	is_str(direct.buf, "connection to server at \"localhost\" (), port 27546 failed: timeout expired\n",
		   "an empty address is named empty");
	return tap_done();
}
