/* systemd readiness notification (Type=notify): READY=1 once listening,
   RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.
   libsystemd's sd_notify(), which does nothing without $NOTIFY_SOCKET;
   no-ops when built without libsystemd. */
#ifndef DOVEGATE_SHIM_NOTIFY_H
#define DOVEGATE_SHIM_NOTIFY_H

/* status: a one-line STATUS= text for `systemctl status` */
void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);

#endif
