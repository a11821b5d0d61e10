/* Logging: plain lines to stderr (with a timestamp) or to syslog, and a
   builder for the one-line key=value records dovegate-auth writes per decision. */
#ifndef DOVEGATE_SHIM_LOG_H
#define DOVEGATE_SHIM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

enum dglog_target { DGLOG_STDERR, DGLOG_SYSLOG };

struct dglog {
	enum dglog_target target;
	bool syslog_open;
};

void dglog_init(struct dglog *log);
void dglog_set_target(struct dglog *log, enum dglog_target target);
void dglog_close(struct dglog *log);
/* prio is a syslog priority (LOG_ERR, LOG_WARNING, LOG_INFO, ...). */
void dglog(struct dglog *log, int prio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A "prefix key=value key=value" line. Values are written bare when they are
   plain tokens, otherwise quoted with \" \\ \n \r \t \xHH escapes, so one record
   is always one line and cannot be forged by user input. Over-long values are
   cut at KV_VALUE_MAX bytes and marked with "...". */
#define KV_LINE_MAX 2048
#define KV_VALUE_MAX 256

struct kvline {
	char buf[KV_LINE_MAX];
	size_t len;
};

void kv_init(struct kvline *kv, const char *prefix);
/* value NULL is written as "-". */
void kv_add(struct kvline *kv, const char *key, const char *value);
void kv_addn(struct kvline *kv, const char *key, const char *value, size_t len);
void kv_addf(struct kvline *kv, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
const char *kv_str(const struct kvline *kv);

#endif
