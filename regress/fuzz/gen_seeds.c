/*-------------------------------------------------------------------------
 *
 * gen_seeds.c
 *	  Writes the seed corpora of the protocol fuzz targets: one valid frame
 *	  of every message type, encoded by the codec, a session's worth of
 *	  frames in one file, and the PostgreSQL probe and ErrorResponse.
 *
 *	 gen_seeds APP_DIR HB_DIR
 *
 * The files are committed in regress/fuzz/corpus/; rerun this after a
 * protocol change.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmproto.h"

typedef struct seed
{
	const char *name;
	cmproto_msg m;
} seed;

static const seed app_seeds[] = {
	{"hello", {.type = CMPROTO_HELLO,.u.hello = {1, 1}}},
	{"resolve", {.type = CMPROTO_RESOLVE,.u.resolve = {1, CMPROTO_TARGET_READ_WRITE, 4711, "psql"}}},
	{"candidate", {.type = CMPROTO_CANDIDATE,.u.candidate = {2, 5432, CMPROTO_ATTR_IN_RECOVERY, CMPROTO_ADDR_NUMERIC, "10.0.0.3"}}},
	{"candidates_end", {.type = CMPROTO_CANDIDATES_END,.u.candidates_end = {1}}},
	{"attached", {.type = CMPROTO_ATTACHED,.u.attached = {2, 31337}}},
	{"instance_down", {.type = CMPROTO_INSTANCE_DOWN,.u.instance_down = {2, CMPROTO_DOWN_TIMEOUT}}},
	{"instance_down_stale", {.type = CMPROTO_INSTANCE_DOWN,.u.instance_down = {1, CMPROTO_DOWN_STALE}}},
	{"error", {.type = CMPROTO_ERROR,.u.error = {CMPROTO_ERR_PROTOCOL, "protocol violation"}}},
};

static const seed hb_seeds[] = {
	{"hb_hello", {.type = CMPROTO_HB_HELLO,.u.hb_hello = {1, 1, 10, 20, CMPROTO_HB_HAS_KEY, {0x5a}}}},
	{"hb_challenge", {.type = CMPROTO_HB_CHALLENGE,.u.hb_challenge = {1, {1}, {2}}}},
	{"hb_auth", {.type = CMPROTO_HB_AUTH,.u.hb_auth = {{3}}}},
	{"hb_welcome", {.type = CMPROTO_HB_WELCOME,.u.hb_welcome = {1, CMPROTO_HB_AUTHENTICATED, CMPROTO_ATTR_IN_RECOVERY, 150020, UINT64_C(7300000000000000001), 0}}},
	{"hb_welcome_v2", {.type = CMPROTO_HB_WELCOME,.u.hb_welcome = {2, 0, 0, 170002, UINT64_C(7300000000000000001), 2}}},
	{"hb_beat", {.type = CMPROTO_HB_BEAT,.u.hb_beat = {7, 0}}},
	{"hb_attrs", {.type = CMPROTO_HB_ATTRS,.u.hb_attrs = {CMPROTO_ATTR_READ_ONLY, 3}}},
	{"error", {.type = CMPROTO_ERROR,.u.error = {CMPROTO_ERR_AUTH, "authentication failed"}}},
};

static void
put(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
	char		path[1024];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* One file per seed, and all of them in a row as "session". */
static void
write_seeds(const char *dir, const seed *seeds, size_t n)
{
	uint8_t		all[8192];
	size_t		alen = 0;

	for (size_t i = 0; i < n; i++)
	{
		int			len = cmproto_encode(&seeds[i].m, all + alen, sizeof(all) - alen);

		if (len < 0)
		{
			fprintf(stderr, "gen_seeds: cannot encode %s: %s\n", seeds[i].name,
					cmproto_strerror(len));
			exit(1);
		}
		put(dir, seeds[i].name, all + alen, (size_t) len);
		alen += (size_t) len;
	}
	put(dir, "session", all, alen);
}

int
main(int argc, char **argv)
{
	uint8_t		buf[CMPROTO_PG_MAX_ERROR];
	int			n;

	if (argc != 3)
	{
		fprintf(stderr, "usage: gen_seeds APP_DIR HB_DIR\n");
		return 2;
	}
	write_seeds(argv[1], app_seeds, sizeof(app_seeds) / sizeof(app_seeds[0]));
	write_seeds(argv[2], hb_seeds, sizeof(hb_seeds) / sizeof(hb_seeds[0]));
	put(argv[1], "probe", buf, cmproto_pg_encode_probe(buf, sizeof(buf)));
	n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", "this is conmgr",
								"connect with libpq-cm");
	if (n > 0)
		put(argv[1], "error_response", buf, (size_t) n);
	return 0;
}
