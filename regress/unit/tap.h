/*-------------------------------------------------------------------------
 *
 * tap.h
 *	  A tiny Test Anything Protocol emitter for the C unit tests.
 *
 * Each unit test program is a plain executable that prints TAP on stdout,
 * so prove(1) runs it beside the Perl tests and counts its results.  A
 * failed check prints a diagnostic naming the source line; the exit code
 * is the number of failures (capped), as Test::More does.
 *
 * Header-only on purpose: every test includes it once, in its main file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_TAP_H
#define CM_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Not every test uses every helper. */
#define TAP_UNUSED __attribute__((unused))

static int	tap_count;
static int	tap_failed;

static void TAP_UNUSED
tap_vresult(int pass, const char *file, int line, const char *fmt, va_list ap)
{
	tap_count++;
	if (!pass)
		tap_failed++;
	printf("%sok %d - ", pass ? "" : "not ", tap_count);
	vprintf(fmt, ap);
	printf("\n");
	if (!pass)
		printf("#   failed at %s line %d\n", file, line);
	fflush(stdout);
}

static int	TAP_UNUSED
tap_ok_at(int pass, const char *file, int line, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	return pass;
}

static int	TAP_UNUSED
tap_is_int_at(long long got, long long want, const char *file, int line,
			  const char *fmt,...)
{
	va_list		ap;
	int			pass = (got == want);

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	if (!pass)
		printf("#          got: %lld\n#     expected: %lld\n", got, want);
	return pass;
}

static int	TAP_UNUSED
tap_is_str_at(const char *got, const char *want, const char *file, int line,
			  const char *fmt,...)
{
	va_list		ap;
	int			pass;

	pass = (got == NULL && want == NULL) ||
		(got != NULL && want != NULL && strcmp(got, want) == 0);
	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	if (!pass)
		printf("#          got: '%s'\n#     expected: '%s'\n",
			   got ? got : "(null)", want ? want : "(null)");
	return pass;
}

/* Passes when "needle" occurs in "got"; used to check error messages. */
static int	TAP_UNUSED
tap_like_at(const char *got, const char *needle, const char *file, int line,
			const char *fmt,...)
{
	va_list		ap;
	int			pass = (got != NULL && strstr(got, needle) != NULL);

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	if (!pass)
		printf("#          got: '%s'\n#  should have: '%s'\n",
			   got ? got : "(null)", needle);
	return pass;
}

static int	TAP_UNUSED
tap_done(void)
{
	printf("1..%d\n", tap_count);
	if (tap_failed)
		printf("# failed %d of %d tests\n", tap_failed, tap_count);
	return tap_failed > 254 ? 254 : tap_failed;
}

#define ok(cond, ...)		tap_ok_at((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)
#define is_int(g, w, ...)	tap_is_int_at((long long) (g), (long long) (w), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(g, w, ...)	tap_is_str_at((g), (w), __FILE__, __LINE__, __VA_ARGS__)
#define like(g, n, ...)		tap_like_at((g), (n), __FILE__, __LINE__, __VA_ARGS__)

#endif							/* CM_TAP_H */
