/* systemd readiness notification (Type=notify): READY=1 once listening,
   RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM,
   and WATCHDOG=1 from the event loop when the unit sets WatchdogSec=.
   libsystemd's sd_notify(), which does nothing without $NOTIFY_SOCKET;
   no-ops when built without libsystemd. */
#ifndef DOVEGATE_SHIM_NOTIFY_H
#define DOVEGATE_SHIM_NOTIFY_H

/* status: a one-line STATUS= text for `systemctl status` */
void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);

struct event;
struct event_base;
/* When systemd asks for keep-alives ($WATCHDOG_USEC): a timer on the event
   loop that sends WATCHDOG=1 every half interval, so a stuck loop gets the
   service restarted. NULL when not asked (or without libsystemd); the
   caller frees the event with event_free(). */
struct event *notify_watchdog_start(struct event_base *base);

#endif
