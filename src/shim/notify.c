#include "notify.h"

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

#endif
