#include "passdb_dovecot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backend.h"

/* ---- escaping ------------------------------------------------------------------ */

size_t pdc_tabescape(const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char esc = 0;

		switch (in[i]) {
		case '\001': esc = '1'; break;
		case '\t': esc = 't'; break;
		case '\r': esc = 'r'; break;
		case '\n': esc = 'n'; break;
		default: break;
		}
		if (esc != 0) {
			out[o++] = '\001';
			out[o++] = esc;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	return o;
}

void pdc_tabunescape(char *s)
{
	char *w = s;

	for (const char *r = s; *r != '\0'; r++) {
		if (*r != '\001' || r[1] == '\0') {
			*w++ = *r;
			continue;
		}
		r++;
		switch (*r) {
		case '1': *w++ = '\001'; break;
		case 't': *w++ = '\t'; break;
		case 'r': *w++ = '\r'; break;
		case 'n': *w++ = '\n'; break;
		default: *w++ = *r; break;
		}
	}
	*w = '\0';
}

/* ---- building AUTH -------------------------------------------------------------- */

struct linebuf {
	char *data;
	size_t len, cap;
	bool failed;
};

static void lb_reserve(struct linebuf *b, size_t more)
{
	char *n;
	size_t cap;

	if (b->failed || b->len + more + 1 <= b->cap)
		return;
	cap = (b->len + more + 1) * 2;
	n = malloc(cap);
	if (n == NULL) {
		b->failed = true;
		return;
	}
	/* copy and wipe by hand: the buffer may already hold the password */
	if (b->data != NULL) {
		memcpy(n, b->data, b->len + 1);
		sodium_memzero(b->data, b->cap);
		free(b->data);
	}
	b->data = n;
	b->cap = cap;
}

static void lb_add(struct linebuf *b, const char *s, size_t len)
{
	lb_reserve(b, len);
	if (b->failed)
		return;
	memcpy(b->data + b->len, s, len);
	b->len += len;
	b->data[b->len] = '\0';
}

static void lb_str(struct linebuf *b, const char *s)
{
	lb_add(b, s, strlen(s));
}

/* "\tkey=<escaped value>" */
static void lb_param(struct linebuf *b, const char *key, const char *value)
{
	size_t len = strlen(value);

	lb_str(b, "\t");
	lb_str(b, key);
	lb_str(b, "=");
	lb_reserve(b, 2 * len);
	if (!b->failed)
		b->len += pdc_tabescape(value, len, b->data + b->len);
}

/* resp = base64("" NUL user NUL pass): no authorization id. */
static void lb_plain_resp(struct linebuf *b, const struct pdc_auth *a)
{
	size_t raw_len = a->user_len + a->pass_len + 2;
	size_t b64_len = sodium_base64_ENCODED_LEN(raw_len, sodium_base64_VARIANT_ORIGINAL);
	unsigned char *raw = malloc(raw_len);

	lb_str(b, "\tresp=");
	lb_reserve(b, b64_len);
	if (raw == NULL || b->failed) {
		b->failed = true;
		free(raw);
		return;
	}
	raw[0] = '\0';
	memcpy(raw + 1, a->user, a->user_len);
	raw[1 + a->user_len] = '\0';
	memcpy(raw + 2 + a->user_len, a->pass, a->pass_len);
	sodium_bin2base64(b->data + b->len, b64_len, raw, raw_len,
			  sodium_base64_VARIANT_ORIGINAL);
	b->len += strlen(b->data + b->len);
	sodium_memzero(raw, raw_len);
	free(raw);
}

int pdc_build_auth(const struct pdc_auth *a, char **line_r, size_t *len_r)
{
	struct linebuf b = { NULL, 0, 0, false };
	char id[16];

	*line_r = NULL;
	*len_r = 0;
	if (memchr(a->user, '\0', a->user_len) != NULL ||
	    memchr(a->pass, '\0', a->pass_len) != NULL || a->id == 0)
		return -1;
	snprintf(id, sizeof(id), "%u", a->id);
	lb_str(&b, "AUTH\t");
	lb_str(&b, id);
	lb_str(&b, "\tPLAIN");
	lb_param(&b, "service", a->service);
	if (a->lip != NULL && a->lip[0] != '\0')
		lb_param(&b, "lip", a->lip);
	if (a->rip != NULL && a->rip[0] != '\0')
		lb_param(&b, "rip", a->rip);
	if (a->session != NULL && a->session[0] != '\0')
		lb_param(&b, "session", a->session);
	if (a->secured)
		lb_str(&b, "\tsecured");
	if (a->no_penalty)
		lb_str(&b, "\tno-penalty");
	lb_plain_resp(&b, a);           /* must be the last parameter */
	lb_str(&b, "\n");
	if (b.failed || b.len > PDC_MAX_LINE) {
		if (b.data != NULL)
			sodium_memzero(b.data, b.cap);
		free(b.data);
		return -1;
	}
	*line_r = b.data;
	*len_r = b.len;
	return 0;
}

/* ---- parsing server lines --------------------------------------------------------- */

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

/* One "key=value" or bare "key" field of an OK/FAIL reply. */
static void reply_field(char *field, struct pdc_reply *r)
{
	char *eq = strchr(field, '=');
	const char *value = "";
	unsigned port;

	if (eq != NULL) {
		*eq = '\0';
		value = eq + 1;
	}
	pdc_tabunescape(field);
	if (eq != NULL)
		pdc_tabunescape(eq + 1);
	if (strcmp(field, "user") == 0)
		r->user = value;
	else if (strcmp(field, "host") == 0)
		r->host = value[0] != '\0' ? value : NULL;
	else if (strcmp(field, "port") == 0)
		r->port = parse_uint(value, 65535, &port) && port > 0 ? (int)port : 0;
	else if (strcmp(field, "reason") == 0)
		r->reason = value;
	else if (strcmp(field, "code") == 0)
		r->code = value;
	else if (strcmp(field, "nologin") == 0)
		r->nologin = true;
	else if (strcmp(field, "proxy") == 0)
		r->proxy = true;
	else if (strcmp(field, "temp") == 0)
		r->temp_fail = true;    /* older servers; harmless to honour */
}

static const struct {
	const char *name;
	enum pdc_line_kind kind;
} commands[] = {
	{ "VERSION", PDC_LINE_VERSION }, { "MECH", PDC_LINE_MECH },
	{ "SPID", PDC_LINE_SPID }, { "CUID", PDC_LINE_CUID },
	{ "COOKIE", PDC_LINE_COOKIE }, { "DONE", PDC_LINE_DONE },
	{ "OK", PDC_LINE_OK }, { "FAIL", PDC_LINE_FAIL }, { "CONT", PDC_LINE_CONT },
};

static enum pdc_line_kind line_kind(const char *cmd)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, cmd) == 0)
			return commands[i].kind;
	}
	return PDC_LINE_OTHER;
}

/* strsep() on TAB; NULL at the end. */
static char *next_field(char **rest)
{
	return *rest != NULL ? strsep(rest, "\t") : NULL;
}

static enum pdc_line_kind parse_version(char *rest, struct pdc_reply *r)
{
	const char *major = next_field(&rest), *minor = next_field(&rest);

	if (!parse_uint(major, 65535, &r->version_major) ||
	    !parse_uint(minor, 65535, &r->version_minor))
		return PDC_LINE_BAD;
	return PDC_LINE_VERSION;
}

enum pdc_line_kind pdc_parse_line(char *line, struct pdc_reply *r)
{
	char *rest = line, *cmd, *id, *f;
	enum pdc_line_kind kind;

	memset(r, 0, sizeof(*r));
	cmd = next_field(&rest);
	kind = line_kind(cmd);
	if (kind == PDC_LINE_VERSION)
		return parse_version(rest, r);
	if (kind != PDC_LINE_OK && kind != PDC_LINE_FAIL && kind != PDC_LINE_CONT)
		return kind;
	id = next_field(&rest);
	if (!parse_uint(id, 0xffffffffu, &r->id) || r->id == 0)
		return PDC_LINE_BAD;
	if (kind == PDC_LINE_CONT) {
		r->cont = rest != NULL ? rest : "";
		return kind;
	}
	while ((f = next_field(&rest)) != NULL) {
		if (f[0] != '\0')       /* empty fields: "\t\t", a trailing TAB */
			reply_field(f, r);
	}
	if (kind == PDC_LINE_FAIL && r->code != NULL && strcmp(r->code, "temp_fail") == 0)
		r->temp_fail = true;
	return kind;
}

/* ---- the client ------------------------------------------------------------------ */

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HANDSHAKE_TIMEOUT_S 5

enum conn_state { CONN_DOWN, CONN_HANDSHAKE, CONN_READY };

struct pdc_request {
	struct pdc_client *c;
	unsigned id;
	pdc_done_fn *done;
	void *ctx;
	struct event *timer;
	struct pdc_request *prev, *next;
};

struct pdc_client {
	unsigned owners;        /* runtimes sharing this connection */
	unsigned refs;          /* 1 for all owners, +1 during callbacks */
	bool closed;            /* the owner let go: do not reconnect */
	struct event_base *base;
	struct dglog *log;
	char *spec;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned timeout_s;

	enum conn_state state;
	struct bufferevent *bev;
	struct event *retry;    /* reconnect timer, also the handshake timeout */
	unsigned backoff_ms;
	bool logged_down;       /* "cannot connect" is logged once per outage */
	bool version_ok;
	unsigned next_id;
	struct pdc_request *requests;
};

int pdc_spec_check(const char *spec, char *why, size_t whylen)
{
	struct backend b;
	const char *error;

	if (strncmp(spec, "unix:", 5) == 0) {
		if (spec[5] != '/' ||
		    strlen(spec + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			snprintf(why, whylen, "unix socket path must be absolute and short");
			return -1;
		}
		return 0;
	}
	if (strncmp(spec, "tcp:", 4) == 0 && backend_parse(spec + 4, &b, &error) == 0)
		return 0;
	snprintf(why, whylen, "expected unix:/path or tcp:IP:PORT");
	return -1;
}

static int spec_to_addr(struct pdc_client *c)
{
	struct backend b;
	const char *error;
	struct sockaddr_un *sun = (struct sockaddr_un *)&c->addr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->addr;

	memset(&c->addr, 0, sizeof(c->addr));
	if (strncmp(c->spec, "unix:", 5) == 0) {
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", c->spec + 5);
		c->addrlen = sizeof(*sun);
		return 0;
	}
	if (backend_parse(c->spec + 4, &b, &error) < 0)
		return -1;
	if (inet_pton(AF_INET, b.ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(b.port);
		c->addrlen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, b.ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(b.port);
		c->addrlen = sizeof(*sin6);
		return 0;
	}
	return -1;
}

static void client_release(struct pdc_client *c);

/* ---- requests ---- */

static void request_unlink(struct pdc_request *r)
{
	struct pdc_client *c = r->c;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		c->requests = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

/* Unlinks and frees r before calling back, so the callback may do anything. */
static void request_complete(struct pdc_request *r, const struct pdc_result *res)
{
	pdc_done_fn *done = r->done;
	void *ctx = r->ctx;

	request_unlink(r);
	event_free(r->timer);
	free(r);
	done(ctx, res);
}

static void complete_temp(struct pdc_request *r, const char *detail)
{
	struct pdc_result res;

	memset(&res, 0, sizeof(res));
	res.status = PDC_TEMP;
	res.detail = detail;
	request_complete(r, &res);
}

static struct pdc_request *request_find(struct pdc_client *c, unsigned id)
{
	for (struct pdc_request *r = c->requests; r != NULL; r = r->next) {
		if (r->id == id)
			return r;
	}
	return NULL;
}

static void fail_all(struct pdc_client *c, const char *detail)
{
	while (c->requests != NULL)
		complete_temp(c->requests, detail);
}

static void send_cancel(struct pdc_client *c, unsigned id)
{
	if (c->state == CONN_READY)
		evbuffer_add_printf(bufferevent_get_output(c->bev), "CANCEL\t%u\n", id);
}

/* The server did not answer in time: forget the request (a late reply finds
   no id and is dropped) and tell the server so it can drop it too. */
static void on_request_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pdc_request *r = arg;
	struct pdc_client *c = r->c;

	(void)fd;
	(void)what;
	c->refs++;
	send_cancel(c, r->id);
	complete_temp(r, "dovecot auth: timeout");
	client_release(c);
}

/* ---- connection ---- */

static void schedule_reconnect(struct pdc_client *c);

static void disconnect(struct pdc_client *c, const char *why)
{
	bool was_ready = c->state == CONN_READY;

	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	c->state = CONN_DOWN;
	if (was_ready || !c->logged_down)
		dglog(c->log, LOG_ERR, "dovecot auth %s: %s; logins fail temporarily "
		      "until it is back", c->spec, why);
	c->logged_down = true;
	fail_all(c, "dovecot auth: connection lost");
	if (!c->closed)
		schedule_reconnect(c);
}

static void handle_result(struct pdc_client *c, enum pdc_line_kind kind,
			  const struct pdc_reply *rep)
{
	struct pdc_request *r = request_find(c, rep->id);
	struct pdc_result res;

	if (r == NULL)
		return;         /* timed out earlier: nobody waits for it */
	memset(&res, 0, sizeof(res));
	res.user = rep->user;
	res.host = rep->host;
	res.port = rep->port;
	res.nologin = rep->nologin;
	res.proxy = rep->proxy;
	res.reason = rep->reason;
	res.code = rep->code;
	if (kind == PDC_LINE_OK) {
		res.status = PDC_OK;
	} else if (kind == PDC_LINE_CONT) {
		/* PLAIN with resp= never needs another round */
		send_cancel(c, rep->id);
		res.status = PDC_TEMP;
		res.detail = "dovecot auth: unexpected CONT";
	} else if (rep->temp_fail) {
		res.status = PDC_TEMP;
		res.detail = "dovecot auth: code=temp_fail";
	} else {
		res.status = PDC_FAIL;
	}
	request_complete(r, &res);
}

/* Returns -1 when the connection must be dropped. */
static int handle_line(struct pdc_client *c, char *line)
{
	struct pdc_reply rep;
	enum pdc_line_kind kind = pdc_parse_line(line, &rep);

	switch (kind) {
	case PDC_LINE_VERSION:
		c->version_ok = rep.version_major == 1;
		return c->version_ok ? 0 : -1;
	case PDC_LINE_DONE:
		if (!c->version_ok || c->state != CONN_HANDSHAKE)
			return -1;
		c->state = CONN_READY;
		c->backoff_ms = BACKOFF_MIN_MS;
		evtimer_del(c->retry);
		dglog(c->log, c->logged_down ? LOG_NOTICE : LOG_INFO,
		      "dovecot auth %s: connected", c->spec);
		c->logged_down = false;
		return 0;
	case PDC_LINE_OK:
	case PDC_LINE_FAIL:
	case PDC_LINE_CONT:
		if (c->state != CONN_READY)
			return -1;
		handle_result(c, kind, &rep);
		return 0;
	case PDC_LINE_BAD:
		return -1;
	default:
		return 0;       /* MECH, SPID, CUID, COOKIE, newer commands */
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct pdc_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	c->refs++;
	while (c->bev == bev &&
	       (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		int rc = len > PDC_MAX_LINE ? -1 : handle_line(c, line);

		free(line);
		if (rc < 0) {
			disconnect(c, "protocol error");
			break;
		}
	}
	if (c->bev == bev && evbuffer_get_length(in) > PDC_MAX_LINE)
		disconnect(c, "line too long");
	client_release(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct pdc_client *c = arg;
	char why[128];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		/* handshake: we may send AUTH only after the server's DONE */
		evbuffer_add_printf(bufferevent_get_output(c->bev),
				    "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
		return;
	}
	c->refs++;
	if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by the server");
	else
		snprintf(why, sizeof(why), "%s",
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	disconnect(c, why);
	client_release(c);
}

static void connect_now(struct pdc_client *c)
{
	struct timeval tv = { HANDSHAKE_TIMEOUT_S, 0 };

	c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		schedule_reconnect(c);
		return;
	}
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = CONN_HANDSHAKE;
	c->version_ok = false;
	/* the retry timer doubles as the handshake timeout */
	evtimer_add(c->retry, &tv);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->addr,
				       (int)c->addrlen) < 0)
		disconnect(c, strerror(errno));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct pdc_client *c = arg;

	(void)fd;
	(void)what;
	if (c->state == CONN_HANDSHAKE) {
		c->refs++;
		disconnect(c, "no handshake from the server");
		client_release(c);
		return;
	}
	if (c->state == CONN_DOWN)
		connect_now(c);
}

static void schedule_reconnect(struct pdc_client *c)
{
	struct timeval tv = { c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000 };

	evtimer_add(c->retry, &tv);
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
							   : c->backoff_ms * 2;
}

struct pdc_client *pdc_client_new(struct event_base *base, const char *spec,
				  unsigned timeout_s, struct dglog *log,
				  char *err, size_t errlen)
{
	struct pdc_client *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->spec = strdup(spec)) == NULL) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->refs = 1;
	c->owners = 1;
	c->base = base;
	c->log = log;
	c->timeout_s = timeout_s;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->retry = evtimer_new(base, on_retry, c);
	if (c->retry == NULL || spec_to_addr(c) < 0) {
		snprintf(err, errlen, "%s: cannot use this socket", spec);
		if (c->retry != NULL)
			event_free(c->retry);
		free(c->spec);
		free(c);
		return NULL;
	}
	connect_now(c);
	return c;
}

static void client_release(struct pdc_client *c)
{
	if (--c->refs > 0)
		return;
	event_free(c->retry);
	free(c->spec);
	free(c);
}

void pdc_client_free(struct pdc_client *c)
{
	if (c == NULL || --c->owners > 0)
		return;
	c->closed = true;
	evtimer_del(c->retry);
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	c->state = CONN_DOWN;
	fail_all(c, "dovecot auth: shutting down");
	client_release(c);
}

struct pdc_client *pdc_client_share(struct pdc_client *c, unsigned timeout_s)
{
	c->owners++;
	c->timeout_s = timeout_s;       /* new requests use the newest config's */
	return c;
}

const char *pdc_client_spec(const struct pdc_client *c)
{
	return c->spec;
}

bool pdc_client_ready(const struct pdc_client *c)
{
	return c->state == CONN_READY;
}

static void fail_now(pdc_done_fn *done, void *ctx, const char *detail)
{
	struct pdc_result res;

	memset(&res, 0, sizeof(res));
	res.status = PDC_TEMP;
	res.detail = detail;
	done(ctx, &res);
}

static void wipe_line(const void *data, size_t len, void *arg)
{
	(void)arg;
	sodium_memzero((void *)data, len);
	free((void *)data);
}

/* Ids wrap around but skip 0 and ids still outstanding. */
static unsigned new_id(struct pdc_client *c)
{
	do {
		if (++c->next_id == 0)
			c->next_id = 1;
	} while (request_find(c, c->next_id) != NULL);
	return c->next_id;
}

void pdc_client_auth(struct pdc_client *c, struct pdc_auth *a,
		     pdc_done_fn *done, void *ctx)
{
	struct pdc_request *r;
	struct timeval tv = { c->timeout_s, 0 };
	char *line;
	size_t len;

	if (c->state != CONN_READY) {
		fail_now(done, ctx, "dovecot auth: not connected");
		return;
	}
	a->id = new_id(c);
	if (pdc_build_auth(a, &line, &len) < 0) {
		fail_now(done, ctx, "dovecot auth: request not representable");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL || (r->timer = evtimer_new(c->base, on_request_timeout, r)) == NULL) {
		free(r);
		sodium_memzero(line, len);
		free(line);
		fail_now(done, ctx, "dovecot auth: out of memory");
		return;
	}
	r->c = c;
	r->id = a->id;
	r->done = done;
	r->ctx = ctx;
	r->next = c->requests;
	if (c->requests != NULL)
		c->requests->prev = r;
	c->requests = r;
	evtimer_add(r->timer, &tv);
	/* by reference, so the line (the password in base64) is wiped as soon
	   as libevent has written it, rather than left in a freed copy */
	if (evbuffer_add_reference(bufferevent_get_output(c->bev), line, len,
				   wipe_line, NULL) < 0) {
		wipe_line(line, len, NULL);
		complete_temp(r, "dovecot auth: out of memory");
	}
}
