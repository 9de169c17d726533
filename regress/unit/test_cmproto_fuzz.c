/*-------------------------------------------------------------------------
 *
 * test_cmproto_fuzz.c
 *	  A bounded fuzz loop over the codec's readers (common/cmproto.c,
 *	  cmproto_pg.c), fixed seed: random bytes, frames shaped like each
 *	  type, and corpus frames mutated and spliced; every status must be a
 *	  known one and no read may pass the input's end (dup_exact's guard
 *	  page).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmproto.h"
#include "cmproto_spec.h"
#include "tap.h"

/* ---- 4. fuzz ---- */

static uint64_t rng = UINT64_C(0x853c49e6748fea9b);

static uint32_t
rnd(void)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t) ((rng * UINT64_C(2685821657736338717)) >> 32);
}

static bool
known_status(int rc)
{
	return rc >= CMPROTO_ENOSPACE && rc <= CMPROTO_INCOMPLETE;
}

typedef struct fuzz_stats
{
	long		frame_bad;		/* inconsistent framer result */
	long		decode_bad;		/* decode OK but re-encodes differently, or
								 * odd status */
	long		pg_bad;			/* classify / decode_error inconsistency */
	long		decoded_ok;		/* decodes that succeeded (coverage) */
	long		pg_err_ok;
	long		pg_cls_ok;
} fuzz_stats;

static void
fuzz_one(const uint8_t *src, size_t n, fuzz_stats *st)
{
	uint8_t    *buf = dup_exact(src, n);
	size_t		ml = 12345;
	int			rf;

	rf = cmproto_frame(buf, n, &ml);
	if (rf == CMPROTO_OK)
	{
		if (ml < 4 || ml > n || ml > CMPROTO_MAX_MSG)
			st->frame_bad++;
	}
	else if (rf == CMPROTO_INCOMPLETE)
	{
		if (!(ml == 0 || (ml > n && ml <= CMPROTO_MAX_MSG)) || (n >= 4 && ml == 0))
			st->frame_bad++;
	}
	else if (!known_status(rf) || ml != 0)
		st->frame_bad++;

	for (int p = 0; p < 4; p++)
	{
		cmproto_msg out;
		int			rd = cmproto_decode(buf, n, all_peers[p], &out);

		if (rd == CMPROTO_OK)
		{
			uint8_t		enc[CMPROTO_MAX_MSG];
			int			ne;

			st->decoded_ok++;
			ne = cmproto_encode(&out, enc, sizeof(enc));
			if (rf != CMPROTO_OK || ml != n || ne != (int) n || memcmp(enc, buf, n) != 0)
				st->decode_bad++;
		}
		else if (rd > 0 || !known_status(rd))
			st->decode_bad++;
		/* the framed prefix, as a reader would decode it */
		if (rf == CMPROTO_OK && ml < n)
		{
			rd = cmproto_decode(buf, ml, all_peers[p], &out);
			if (rd == CMPROTO_OK)
			{
				uint8_t		enc[CMPROTO_MAX_MSG];

				st->decoded_ok++;
				if (cmproto_encode(&out, enc, sizeof(enc)) != (int) ml ||
					memcmp(enc, buf, ml) != 0)
					st->decode_bad++;
			}
			else if (rd > 0 || !known_status(rd))
				st->decode_bad++;
		}
	}

	/* the PostgreSQL-compatible readers see the same bytes */
	{
		size_t		pl = 777;
		cmproto_pg_kind kind;
		int			rc = cmproto_pg_classify(buf, n, &pl, &kind);

		if (rc == CMPROTO_OK)
		{
			st->pg_cls_ok++;
			if (pl < 8 || pl > n || pl > CMPROTO_PG_MAX_STARTUP + 4)
				st->pg_bad++;
		}
		else if (rc == CMPROTO_INCOMPLETE)
		{
			if (pl != 0 && pl <= n)
				st->pg_bad++;
		}
		else if (!known_status(rc))
			st->pg_bad++;
	}
	{
		size_t		el = 777;
		cmproto_pg_error err;
		int			rc = cmproto_pg_decode_error(buf, n, &el, &err);

		if (rc == CMPROTO_OK)
		{
			const char *f[5] = {err.severity, err.sqlstate, err.message, err.detail, err.hint};

			st->pg_err_ok++;
			if (el > n || el > CMPROTO_PG_MAX_ERROR || !err.severity || !err.sqlstate ||
				!err.message)
				st->pg_bad++;
			for (int i = 0; i < 5; i++)
			{
				const uint8_t *s = (const uint8_t *) f[i];

				if (s == NULL)
					continue;
				if (s < buf + 5 || s >= buf + el ||
					memchr(s, '\0', (size_t) (buf + el - s)) == NULL)
					st->pg_bad++;
			}
		}
		else if (rc == CMPROTO_INCOMPLETE)
		{
			if (el != 0 && el <= n)
				st->pg_bad++;
		}
		else if (!known_status(rc))
			st->pg_bad++;
	}
	free_exact(buf);
}

static void
test_fuzz(void)
{
	enum
	{
		ITERATIONS = 200000
	};
	fuzz_stats	st;
	uint8_t		in[1200];
	uint8_t		errs[4][CMPROTO_PG_MAX_ERROR];
	size_t		errlen[4];
	int			kinds[6] = {0};

	memset(&st, 0, sizeof(st));

	/* a few ErrorResponses for the pg decoder to chew on */
	for (int i = 0; i < 4; i++)
	{
		static const char *const msgs[] = {"", "x", "this port is conmgr", "yet another"};
		int			rc = cmproto_pg_encode_error(errs[i], sizeof(errs[i]), "08004", msgs[i],
												 i % 2 ? "use libpq-cm" : NULL);

		errlen[i] = rc > 0 ? (size_t) rc : 0;
	}

	for (long it = 0; it < ITERATIONS; it++)
	{
		size_t		n = 0;
		int			kind = (int) (rnd() % 6);

		kinds[kind]++;
		switch (kind)
		{
			case 0:				/* pure random bytes, length 0..600 */
				n = rnd() % 601;
				for (size_t i = 0; i < n; i++)
					in[i] = (uint8_t) rnd();
				break;
			case 1:				/* a valid header over random bytes */
				{
					const spec_type *t = &spec_types[rnd() % N_TYPES];

					n = 4 + t->min_body + rnd() % (t->max_body - t->min_body + 3);
					if (rnd() % 4 == 0)
						n = 4 + rnd() % 80;
					for (size_t i = 0; i < n; i++)
						in[i] = (uint8_t) (rnd() % 3 == 0 ? rnd() : rnd() % 4);
					in[0] = t->type;
					in[1] = 0;
					in[2] = (uint8_t) (n >> 8);
					in[3] = (uint8_t) n;
				}
				break;
			case 2:				/* a valid frame with 1..4 bytes changed */
			case 3:				/* a valid frame truncated or extended */
			case 4:				/* two valid frames, one mutated */
				{
					const corpus_ent *e = &corpus[rnd() % n_corpus];

					memcpy(in, e->bytes, e->n);
					n = e->n;
					if (kind == 2)
					{
						int			k = 1 + (int) (rnd() % 4);

						for (int j = 0; j < k; j++)
						{
							size_t		pos = rnd() % n;

							if (rnd() % 2)
								in[pos] ^= (uint8_t) (1u << (rnd() % 8));
							else
								in[pos] = (uint8_t) rnd();
						}
					}
					else if (kind == 3)
					{
						if (rnd() % 2)
							n = rnd() % n;
						else
						{
							size_t		extra = 1 + rnd() % 40;

							for (size_t i = 0; i < extra; i++)
								in[n + i] = (uint8_t) rnd();
							n += extra;
							if (rnd() % 2)
							{
								/* ... and let the header claim them */
								in[2] = (uint8_t) (n >> 8);
								in[3] = (uint8_t) n;
							}
						}
					}
					else
					{
						const corpus_ent *e2 = &corpus[rnd() % n_corpus];

						memcpy(in + n, e2->bytes, e2->n);
						in[n + rnd() % e2->n] ^= (uint8_t) (1u << (rnd() % 8));
						n += e2->n;
					}
				}
				break;
			case 5:				/* pg first packets and ErrorResponses,
								 * mutated */
				{
					int			which = (int) (rnd() % 3);

					if (which == 0)
					{
						int			e = (int) (rnd() % 4);

						memcpy(in, errs[e], errlen[e]);
						n = errlen[e];
					}
					else
					{
						n = which == 1 ? 8 : 16 + rnd() % 40;
						for (size_t i = 0; i < n; i++)
							in[i] = (uint8_t) rnd();
						in[0] = 0;
						in[1] = 0;
						in[2] = (uint8_t) (n >> 8);
						in[3] = (uint8_t) n;
						in[4] = which == 1 ? 0x04 : 0x00;
						in[5] = which == 1 ? 0xd2 : 0x03;
					}
					if (n > 0 && rnd() % 2)
						in[rnd() % n] ^= (uint8_t) (1u << (rnd() % 8));
					if (n > 0 && rnd() % 3 == 0)
						n = rnd() % n;
				}
				break;
		}
		fuzz_one(in, n, &st);
	}

	ok(st.frame_bad == 0,
	   "fuzz: %d inputs, cmproto_frame results consistent (%ld bad)", ITERATIONS, st.frame_bad);
	ok(st.decode_bad == 0,
	   "fuzz: every decode that says OK re-encodes to the same bytes, no odd status (%ld bad)",
	   st.decode_bad);
	ok(st.pg_bad == 0, "fuzz: pg_classify / pg_decode_error results consistent (%ld bad)",
	   st.pg_bad);
	ok(st.decoded_ok > 10000,
	   "fuzz: the generator reaches the acceptance paths (%ld decodes OK)", st.decoded_ok);
	ok(st.pg_err_ok > 100 && st.pg_cls_ok > 100,
	   "fuzz: pg readers accept some inputs too (%ld ErrorResponses, %ld packets)",
	   st.pg_err_ok, st.pg_cls_ok);
}

int
main(void)
{
	corpus_build();
	test_fuzz();
	return tap_done();
}
