/*-------------------------------------------------------------------------
 *
 * benchutil.h
 *	  Small helpers shared by the benchmark's load tools: clocks, the
 *	  open-files limit, a latency summary line.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/resource.h>

static inline double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* This process's CPU time so far, user + system, in seconds. */
static inline double
self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Wall clock in microseconds, to compare with times other processes print. */
static inline long long
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Raise the open-files limit to the hard limit (1,000 sockets and more). */
static inline void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static inline int
bench_cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * Sort v[0..n) (seconds) and print "PREFIX n=.. median_us=.. p99_us=..
 * min_us=.. max_us=.. mean_us=..".  With a file name, also write every
 * value (microseconds, in the order measured) one per line.
 */
static inline void
print_summary(const char *prefix, double *v, int n, const char *file)
{
	double		sum = 0;
	int			p99;

	if (file)
	{
		FILE	   *f = fopen(file, "w");

		if (f)
		{
			for (int i = 0; i < n; i++)
				fprintf(f, "%.1f\n", v[i] * 1e6);
			fclose(f);
		}
	}
	if (n <= 0)
	{
		printf("%s n=0\n", prefix);
		return;
	}
	for (int i = 0; i < n; i++)
		sum += v[i];
	qsort(v, n, sizeof(double), bench_cmp_double);
	p99 = (int) (n * 0.99);
	if (p99 >= n)
		p99 = n - 1;
	printf("%s n=%d median_us=%.1f p99_us=%.1f min_us=%.1f max_us=%.1f mean_us=%.1f\n",
		   prefix, n, v[n / 2] * 1e6, v[p99] * 1e6, v[0] * 1e6, v[n - 1] * 1e6,
		   sum / n * 1e6);
}

#endif							/* BENCHUTIL_H */
