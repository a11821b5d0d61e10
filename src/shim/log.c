#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_IDENT "dovegate-auth"

void dglog_init(struct dglog *log)
{
	log->target = DGLOG_STDERR;
	log->syslog_open = false;
}

void dglog_set_target(struct dglog *log, enum dglog_target target)
{
	if (target == DGLOG_SYSLOG && !log->syslog_open) {
		openlog(LOG_IDENT, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log->syslog_open = true;
	}
	log->target = target;
}

void dglog_close(struct dglog *log)
{
	if (log->syslog_open)
		closelog();
	log->syslog_open = false;
	log->target = DGLOG_STDERR;
}

static const char *prio_name(int prio)
{
	switch (prio) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: return "crit";
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

static void write_stderr(int prio, const char *msg)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line: stderr is unbuffered, so lines never interleave
	   within this process. */
	fprintf(stderr, "%s.%03ldZ " LOG_IDENT "[%ld]: %s: %s\n", stamp,
		ts.tv_nsec / 1000000, (long)getpid(), prio_name(prio), msg);
}

void dglog(struct dglog *log, int prio, const char *fmt, ...)
{
	char msg[KV_LINE_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log != NULL && log->target == DGLOG_SYSLOG)
		syslog(prio, "%s", msg);
	else
		write_stderr(prio, msg);
}

/* ---- key=value lines ---------------------------------------------------- */

static void kv_putc(struct kvline *kv, char c)
{
	if (kv->len + 1 < sizeof(kv->buf)) {
		kv->buf[kv->len++] = c;
		kv->buf[kv->len] = '\0';
	}
}

static void kv_puts(struct kvline *kv, const char *s)
{
	while (*s != '\0')
		kv_putc(kv, *s++);
}

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms,
   no surrogates, <= U+10FFFF) of at least two bytes at v, else 0. Client
   names may be any bytes; the log stays valid UTF-8 for whatever reads it. */
static size_t utf8_seq(const unsigned char *v, size_t len)
{
	size_t n = v[0] >= 0xc2 && v[0] <= 0xdf ? 2 : v[0] >= 0xe0 && v[0] <= 0xef ? 3 :
		   v[0] >= 0xf0 && v[0] <= 0xf4 ? 4 : 0;
	unsigned char lo = 0x80, hi = 0xbf;

	if (n == 0 || len < n)
		return 0;
	if (v[0] == 0xe0)
		lo = 0xa0;
	else if (v[0] == 0xed)
		hi = 0x9f;
	else if (v[0] == 0xf0)
		lo = 0x90;
	else if (v[0] == 0xf4)
		hi = 0x8f;
	if (v[1] < lo || v[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (v[i] < 0x80 || v[i] > 0xbf)
			return 0;
	}
	return n;
}

static bool needs_quotes(const unsigned char *v, size_t len)
{
	if (len == 0 || len > KV_VALUE_MAX)
		return true;
	for (size_t i = 0; i < len; i++) {
		if (v[i] <= ' ' || v[i] == 0x7f || v[i] == '"' || v[i] == '\\' ||
		    v[i] == '=')
			return true;
		if (v[i] >= 0x80) {
			size_t n = utf8_seq(v + i, len - i);
			if (n == 0)
				return true;
			i += n - 1;
		}
	}
	return false;
}

static void kv_put_escaped(struct kvline *kv, unsigned char c)
{
	char hex[8];

	switch (c) {
	case '"': kv_puts(kv, "\\\""); return;
	case '\\': kv_puts(kv, "\\\\"); return;
	case '\n': kv_puts(kv, "\\n"); return;
	case '\r': kv_puts(kv, "\\r"); return;
	case '\t': kv_puts(kv, "\\t"); return;
	default: break;
	}
	if (c < ' ' || c >= 0x7f) {
		snprintf(hex, sizeof(hex), "\\x%02x", c);
		kv_puts(kv, hex);
	} else {
		kv_putc(kv, (char)c);
	}
}

void kv_init(struct kvline *kv, const char *prefix)
{
	kv->len = 0;
	kv->buf[0] = '\0';
	kv_puts(kv, prefix);
}

void kv_addn(struct kvline *kv, const char *key, const char *value, size_t len)
{
	const unsigned char *v = (const unsigned char *)value;

	if (kv->len > 0)
		kv_putc(kv, ' ');
	kv_puts(kv, key);
	kv_putc(kv, '=');
	if (value == NULL) {
		kv_putc(kv, '-');
		return;
	}
	if (!needs_quotes(v, len)) {
		for (size_t i = 0; i < len; i++)
			kv_putc(kv, (char)v[i]);
		return;
	}
	kv_putc(kv, '"');
	for (size_t i = 0; i < len && i < KV_VALUE_MAX; i++) {
		/* well-formed UTF-8 stays raw so names remain readable; a
		   sequence is never cut; any other byte >= 0x80 is \xNN */
		size_t n = v[i] >= 0x80 ? utf8_seq(v + i, len - i) : 0;
		if (n > 0 && i + n <= KV_VALUE_MAX) {
			for (size_t j = 0; j < n; j++)
				kv_putc(kv, (char)v[i + j]);
			i += n - 1;
		} else if (n > 0) {
			break;
		} else {
			kv_put_escaped(kv, v[i]);
		}
	}
	if (len > KV_VALUE_MAX)
		kv_puts(kv, "...");
	kv_putc(kv, '"');
}

void kv_add(struct kvline *kv, const char *key, const char *value)
{
	kv_addn(kv, key, value, value != NULL ? strlen(value) : 0);
}

void kv_addf(struct kvline *kv, const char *key, const char *fmt, ...)
{
	char tmp[KV_VALUE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	kv_add(kv, key, tmp);
}

const char *kv_str(const struct kvline *kv)
{
	return kv->buf;
}
