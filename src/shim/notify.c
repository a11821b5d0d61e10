#include "notify.h"

#include <event2/event.h>

#ifdef DG_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

/* Failures are ignored: without a service manager listening the daemon
   works the same. */
void notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_reloading(void)
{
	sd_notify(0, "RELOADING=1\nSTATUS=reloading");
}

void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping: answering requests in flight");
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

struct event *notify_watchdog_start(struct event_base *base)
{
	uint64_t usec = 0;
	struct event *ev;
	struct timeval tv;

	/* also checks $WATCHDOG_PID against this process */
	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return NULL;
	usec /= 2;  /* sd_watchdog_enabled(3): ping at half the interval */
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	ev = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
	if (ev == NULL)
		return NULL;
	if (event_add(ev, &tv) < 0) {
		event_free(ev);
		return NULL;
	}
	sd_notify(0, "WATCHDOG=1");
	return ev;
}

#else

void notify_ready(const char *status)
{
	(void)status;
}

void notify_reloading(void)
{
}

void notify_stopping(void)
{
}

struct event *notify_watchdog_start(struct event_base *base)
{
	(void)base;
	return NULL;
}

#endif
