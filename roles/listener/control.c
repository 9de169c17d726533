/*-------------------------------------------------------------------------
 *
 * control.c
 *	  The control socket, CMDATA/conmgr.ctl: cm_ctl status (docs/conmgr.md).
 *
 * One request line, "status", then the answer and end of file, in the
 * text format of common/cmctl.h.  Only the owner can connect (mode 0600).  The answer is made at once, as one
 * snapshot of the instances and sessions, and written as the client's
 * socket takes it, between the listener's other work: the listener never
 * waits for a control client, so a cm_ctl that does not read delays no
 * RESOLVE and no down-notice.  What is not written within LSN_ANSWER_US
 * of the answer is dropped and the session closed (sessions.c), so a
 * stuck client cannot hold its descriptor and buffer either.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmctl.h"
#include "listener.h"

int			lsn_ctl_fd = -1;
static char ctl_path[4200];

static void
ctl_cleanup(void)
{
	if (lsn_ctl_fd >= 0)
		unlink(ctl_path);
}

/* CMDATA/conmgr.ctl, for cm_ctl status; owner-only. */
void
ctl_open(void)
{
	struct sockaddr_un sun;
	mode_t		old;

	if ((size_t) snprintf(ctl_path, sizeof(ctl_path), "%s/" CMCTL_SOCKET, lsn_ctx->cmdata) >=
		sizeof(sun.sun_path))
	{
		cm_ereport(CMLOG_WARNING, "cm_ctl status will not work.", "Use a shorter CMDATA path.",
				   "control socket path \"%s\" is too long", ctl_path);
		return;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, ctl_path);
	unlink(ctl_path);
	lsn_ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	old = umask(0077);
	if (lsn_ctl_fd < 0 || bind(lsn_ctl_fd, (struct sockaddr *) &sun, sizeof(sun)) < 0 ||
		listen(lsn_ctl_fd, 16) < 0)
	{
		cm_log(CMLOG_WARNING, "could not create control socket \"%s\": %m", ctl_path);
		if (lsn_ctl_fd >= 0)
			close(lsn_ctl_fd);
		lsn_ctl_fd = -1;
	}
	umask(old);
	atexit(ctl_cleanup);
}


/*
 * One line per forward port: its sessions open per configured instance,
 * the sums of the forwarders' counts in shared memory.
 */
static size_t
forward_lines(char *buf, size_t cap)
{
	const struct cmconf_forwards *fw = &lsn_ctx->conf->forward_ports;
	size_t		len = 0;

	for (int p = 0; p < fw->n; p++)
	{
		char		counts[CMCONF_MAX_INSTANCES * 16] = "";
		size_t		n = 0;

		for (uint32_t i = 0; i < lsn_ctx->shm->nslots; i++)
		{
			uint32_t	sessions = 0;

			if (!lsn_ctx->conf->inst[i].configured)
				continue;
			for (int k = 0; k < lsn_ctx->nforwarders; k++)
				sessions += __atomic_load_n(&lsn_ctx->shm->fw[k].sessions[p][i], __ATOMIC_RELAXED);
			n += snprintf(counts + n, sizeof(counts) - n, "%s%u:%u", n ? "," : "", i, sessions);
		}
		len += snprintf(buf + len, cap - len, CMCTL_FORWARD_FMT, fw->f[p].port,
						cmproto_target_name(fw->f[p].target), n ? counts : "-");
	}
	return len;
}

/*
 * The status answer: a line per configured instance, a line per
 * application session, the end line.  NULL when out of memory.
 */
static char *
ctl_status(size_t *lenp)
{
	static const char *const states[] = {"unknown", "connecting", "up", "down"};
	size_t		cap = 4096 + 256 * (size_t) (lsn_napps_alloc + CMCONF_MAX_INSTANCES) +
		CMCONF_MAX_FORWARDS * (CMCONF_MAX_INSTANCES * 16 + 64);
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	char	   *buf = malloc(cap);
	size_t		len = 0;
	int			ninst = 0,
				napp = 0;

	if (buf == NULL)
		return NULL;
	route_read(&lsn_routes, lsn_ctx, slots, &v);
	for (uint32_t i = 0; i < lsn_ctx->shm->nslots; i++)
	{
		const shm_slot *sl = &slots[i];

		if (!lsn_ctx->conf->inst[i].configured)
			continue;
		len += snprintf(buf + len, cap - len, CMCTL_INSTANCE_FMT,
						i, sl->state >= 0 && sl->state <= SHM_DOWN ? states[sl->state] : "?",
						sl->attrs, (long long) sl->state_since,
						(long long) sl->last_received, (unsigned long long) sl->downs,
						sl->timeline, route_role_key(v.role[i]));
		ninst++;
	}
	for (int k = 0; k < lsn_napps_alloc; k++)
	{
		app		   *o = &lsn_apps[k];

		if (o->state == APP_FREE || o->state == APP_CONTROL || o->state == APP_ANSWERING)
			continue;
		len += snprintf(buf + len, cap - len, CMCTL_APP_FMT,
						o->peer, o->client_pid,
						o->target >= 0 ? cmproto_target_name(o->target) : "-",
						app_state_names[o->state], o->instance, (long long) o->since);
		napp++;
	}
	len += forward_lines(buf + len, cap - len);
	len += snprintf(buf + len, cap - len, CMCTL_END_FMT, ninst, napp);
	*lenp = len;
	return buf;
}

/*
 * Write what the socket takes of a's answer; close a once it is all
 * written, or if the client is gone.  Called when the answer is made and
 * whenever the socket has room again.
 */
void
ctl_write(app *a)
{
	while (a->outoff < a->outlen)
	{
		ssize_t		n = send(a->fd, a->out + a->outoff, a->outlen - a->outoff,
							 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0)
		{
			a->outoff += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;				/* EPOLLOUT brings us back */
		break;
	}
	app_close(a);
}

/* Answer a: made now, written as its socket allows (ctl_write()). */
static void
ctl_answer(app *a)
{
	a->out = ctl_status(&a->outlen);
	if (a->out == NULL)
	{
		app_close(a);
		return;
	}
	a->outoff = 0;
	app_set_state(a, APP_ANSWERING);
	ctl_write(a);
	if (a->state == APP_ANSWERING &&
		!lsn_ep_set(EPOLL_CTL_MOD, a->fd, EPOLLOUT, lsn_ev_data(a)))
	{
		cm_log(CMLOG_WARNING, "control client: could not wait to write its answer: %m");
		app_close(a);
	}
}

void
ctl_read(app *a)
{
	char	   *nl;

	a->inbuf[a->inlen <= CMCTL_REQUEST_MAX ? a->inlen : CMCTL_REQUEST_MAX] = '\0';
	nl = strchr((char *) a->inbuf, '\n');
	if (nl == NULL)
	{
		if (a->inlen >= CMCTL_REQUEST_MAX)
			app_close(a);		/* no command is that long */
		return;
	}
	*nl = '\0';
	if (strcmp((char *) a->inbuf, CMCTL_STATUS) == 0)
	{
		ctl_answer(a);
		return;
	}
	(void) app_write(a, CMCTL_UNKNOWN, strlen(CMCTL_UNKNOWN));
	if (a->state != APP_FREE)
		app_close(a);
}
