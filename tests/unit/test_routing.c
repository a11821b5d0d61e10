/* Backend pools from the config ([backend NAME], [health], [route]), their
   errors, and the choice of a backend without health checks (routing.h):
   stickiness, weights, a passdb's host/port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "passdb.h"
#include "routing.h"

#include "conf_fixture.h"

#define HEAD \
	"[server]\n"                                    /* 1 */ \
	"secret_file = secret\n"                        /* 2 */ \
	"[passdb]\n"                                    /* 3 */ \
	"path = users\n"                                /* 4 */ \
	"[ticket]\n"                                    /* 5 */ \
	"signing_key = ticket.key\n"                    /* 6 */

#define POOLS HEAD \
	"[backend mx1]\n"                               /* 7 */ \
	"protocol = imap\n"                             /* 8 */ \
	"address = 10.0.0.1:10143\n"                    /* 9 */ \
	"audience = mx1.example.org\n"                  /* 10 */ \
	"[backend mx2]\n"                               /* 11 */ \
	"protocol = imap\n"                             /* 12 */ \
	"address = [2001:db8::2]:10143\n"               /* 13 */ \
	"weight = 3\n"                                  /* 14 */ \
	"audience = mx2.example.org\n"                  /* 15 */ \
	"[backend old]\n"                               /* 16 */ \
	"protocol = imap\n"                             /* 17 */ \
	"address = 10.0.0.3:10143\n"                    /* 18 */ \
	"weight = 0\n"                                  /* 19 */ \
	"proxy_protocol = yes\n"                        /* 20 */ \
	"[backend]\n"                                   /* 21 */ \
	"smtp = 10.0.0.1:10587\n"                       /* 22 */ \
	"[ticket]\n"                                    /* 23: sections may repeat */ \
	"audience = edge.example.org\n"                 /* 24 */ \
	"[health]\n"                                    /* 25 */ \
	"interval = 500ms\n"                            /* 26 */ \
	"timeout = 2s\n"                                /* 27 */ \
	"rise = 3\n"                                    /* 28 */ \
	"fall = 1\n"                                    /* 29 */ \
	"proxy_protocol = no\n"                         /* 30 */ \
	"[route]\n"                                     /* 31 */ \
	"key = our-fleet-2026\n"                        /* 32 */

static void test_pools_parse(void **state)
{
	struct fx *f = *state;
	struct dg_config cfg;

	assert_int_equal(load(f, POOLS, &cfg), 0);
	assert_int_equal(cfg.backend_count, 4);
	assert_string_equal(cfg.backends[0].name, "mx1");
	assert_int_equal(cfg.backends[0].line, 8);
	assert_int_equal(cfg.backends[0].weight, 1);
	assert_string_equal(cfg.backends[0].audience, "mx1.example.org");
	assert_string_equal(cfg.backends[1].addr.ip, "2001:db8::2");
	assert_int_equal(cfg.backends[1].weight, 3);
	assert_int_equal(cfg.backends[2].weight, 0);
	assert_int_equal(cfg.backends[2].proxy_protocol, 1);
	assert_int_equal(cfg.backends[0].proxy_protocol, -1);
	assert_null(cfg.backends[3].name);
	assert_int_equal(cfg.backends[3].proto, DG_PROTO_SMTP);
	assert_null(cfg.backends[3].audience);
	assert_true(cfg.has_backend[DG_PROTO_IMAP]);
	assert_false(cfg.has_backend[DG_PROTO_POP3]);
	assert_true(cfg.has_backend[DG_PROTO_SMTP]);
	assert_int_equal(cfg.health_interval_ms, 500);
	assert_int_equal(cfg.health_timeout_ms, 2000);
	assert_int_equal(cfg.health_rise, 3);
	assert_int_equal(cfg.health_fall, 1);
	assert_false(cfg.health_proxy_protocol);
	assert_true(cfg.health_enabled);
	assert_string_equal(cfg.route_key, "our-fleet-2026");
	config_free(&cfg);

	/* defaults */
	assert_int_equal(load(f, HEAD "audience = a\n[backend]\nimap = 127.0.0.1:1\n", &cfg), 0);
	assert_int_equal(cfg.health_interval_ms, 2000);
	assert_int_equal(cfg.health_timeout_ms, 2000);
	assert_int_equal(cfg.health_rise, 2);
	assert_int_equal(cfg.health_fall, 2);
	assert_true(cfg.health_proxy_protocol);
	assert_null(cfg.route_key);
	config_free(&cfg);
}

static void test_pool_errors(void **state)
{
	struct fx *f = *state;

	expect_error(f, HEAD "[backend a]\nprotocol = imap\n", 8,
		     "[backend a] address is required");
	expect_error(f, HEAD "[backend a]\naddress = 127.0.0.1:1\n", 8,
		     "[backend a] protocol is required");
	expect_error(f, HEAD "[backend a]\nprotocol = lmtp\n", 8,
		     "protocol: must be imap, pop3 or smtp");
	expect_error(f, HEAD "[backend a]\naddress = mx.example.org:143\n", 8,
		     "address: not an IP literal (host names are not allowed: nginx needs an IP)");
	expect_error(f, HEAD "[backend a]\nweight = -1\n", 8,
		     "weight: must be a number from 0 (drained) to 1000");
	expect_error(f, HEAD "[backend a]\naudience = a b\n", 8,
		     "audience: must be 1-127 letters, digits, '.', '_', ':' or '-'");
	expect_error(f, HEAD "[backend a]\nport = 1\n", 8, "unknown key 'port' in [backend a]");
	expect_error(f, HEAD "[backend a]\nproxy_protocol = on\n", 8,
		     "proxy_protocol: must be yes or no");
	expect_error(f, HEAD "[backend a]\nweight = 1\nweight = 2\n", 9,
		     "duplicate key 'weight' (first set on line 8)");
	expect_error(f, HEAD "[backend a b]\n", 7, "unknown section [backend a b]");
	/* the same server twice in one pool */
	expect_error(f, HEAD "audience = x\n[backend]\nimap = 127.0.0.1:1\n[backend a]\n"
		     "protocol = imap\naddress = 127.0.0.1:1\naudience = a\n", 11,
		     "[backend a]: 127.0.0.1:1 is already in the imap pool ([backend] imap, line 9)");
	/* tickets: one audience per server (single use is per Dovecot) */
	expect_error(f, HEAD "audience = x\n[backend a]\nprotocol = imap\naddress = 127.0.0.1:1\n"
		     "[backend b]\nprotocol = imap\naddress = 127.0.0.1:2\n", 12,
		     "[backend b]: audience x is also [backend a]'s (line 9): each backend needs its own");
	/* ... which master mode does not care about */
	{
		struct dg_config cfg;
		assert_int_equal(load(f, HEAD "[credentials]\nmode = master\nmaster_user = m\n"
				      "master_password_file = m\n[backend a]\nprotocol = imap\n"
				      "address = 127.0.0.1:1\n[backend b]\nprotocol = imap\n"
				      "address = 127.0.0.1:2\n", &cfg), 0);
		config_free(&cfg);
	}
	expect_error(f, HEAD "[backend a]\nprotocol = imap\naddress = 127.0.0.1:1\n", 8,
		     "[backend a] needs an audience (or set [ticket] audience): imap uses tickets");
	expect_error(f, HEAD "audience = x\n[backend]\nimap = 127.0.0.1:1\n[health]\n"
		     "interval = 50ms\n", 11,
		     "interval: must be a duration from 100ms to 3600s, e.g. 2s or 500ms");
	expect_error(f, HEAD "audience = x\n[backend]\nimap = 127.0.0.1:1\n[health]\n"
		     "timeout = 2m\n", 11,
		     "timeout: must be a duration from 100ms to 60s, e.g. 2s or 500ms");
	expect_error(f, HEAD "audience = x\n[backend]\nimap = 127.0.0.1:1\n[health]\n"
		     "rise = 0\n", 11, "rise: must be a number from 1 to 100");
}

static struct routing *configured(struct fx *f, const char *text)
{
	struct dg_config cfg;
	struct routing *r = routing_new(NULL, &f->log);

	assert_non_null(r);
	assert_int_equal(load(f, text, &cfg), 0);
	assert_int_equal(routing_configure(r, &cfg, f->err, sizeof(f->err)), 0);
	config_free(&cfg);     /* the routing keeps its own copies */
	return r;
}

/* Sticky per user, spread by weight, never to a drained backend. */
static void test_pick(void **state)
{
	struct fx *f = *state;
	struct routing *r = configured(f, POOLS);
	struct routing_choice c, again;
	unsigned hits[3] = { 0 };
	char user[32];

	assert_true(routing_serves(r, DG_PROTO_IMAP));
	assert_false(routing_serves(r, DG_PROTO_POP3));
	assert_false(routing_pick(r, DG_PROTO_POP3, "alice", 5, &c));
	for (int i = 0; i < 4000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		assert_true(routing_pick(r, DG_PROTO_IMAP, user, strlen(user), &c));
		assert_true(routing_pick(r, DG_PROTO_IMAP, user, strlen(user), &again));
		assert_string_equal(c.addr.text, again.addr.text);
		if (strcmp(c.addr.text, "10.0.0.1:10143") == 0) {
			assert_string_equal(c.audience, "mx1.example.org");
			hits[0]++;
		} else if (strcmp(c.addr.text, "[2001:db8::2]:10143") == 0) {
			assert_string_equal(c.audience, "mx2.example.org");
			assert_string_equal(c.addr.ip, "2001:db8::2");
			hits[1]++;
		} else {
			hits[2]++;
		}
	}
	print_message("weights 1:3:0 -> %u %u %u\n", hits[0], hits[1], hits[2]);
	assert_int_equal(hits[2], 0);
	assert_in_range(hits[0], 800, 1200);     /* 1/4 of 4000 */
	/* the [backend] smtp line: a pool of one without its own audience */
	assert_true(routing_pick(r, DG_PROTO_SMTP, "alice", 5, &c));
	assert_string_equal(c.addr.text, "10.0.0.1:10587");
	assert_string_equal(c.audience, "");
	routing_free(r);
}

/* A passdb's host/port: a backend of the protocol's pool (its port and
   audience when only the IP is given); any other address is refused. */
static void test_choice_for(void **state)
{
	struct fx *f = *state;
	struct routing *r = configured(f, POOLS);
	struct routing_choice c;

	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.1", 0, &c), 0);
	assert_string_equal(c.addr.text, "10.0.0.1:10143");
	assert_string_equal(c.audience, "mx1.example.org");
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "2001:db8:0::2", 10143, &c), 0);
	assert_string_equal(c.addr.text, "[2001:db8::2]:10143");
	assert_string_equal(c.audience, "mx2.example.org");
	/* a drained backend is still one of the pool's */
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.3", 0, &c), 0);
	assert_string_equal(c.addr.text, "10.0.0.3:10143");
	/* a pool backend's IP with another port, another protocol's backend,
	   an address of no pool, a protocol without a pool: outside */
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.1", 1143, &c),
			 ROUTING_OUTSIDE_POOL);
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.1", 10587, &c),
			 ROUTING_OUTSIDE_POOL);
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "192.0.2.9", 0, &c),
			 ROUTING_OUTSIDE_POOL);
	assert_int_equal(routing_choice_for(r, DG_PROTO_POP3, "10.0.0.1", 0, &c),
			 ROUTING_OUTSIDE_POOL);
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "mail.example.org", 0, &c), -1);
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.1:143", 0, &c), -1);
	routing_free(r);
}

/* [route] allow_hosts_outside_pools = yes: any address, the protocol's
   standard port when none is given. */
static void test_choice_for_outside_allowed(void **state)
{
	struct fx *f = *state;
	struct routing *r = configured(f, POOLS "[route]\nallow_hosts_outside_pools = yes\n");
	struct routing_choice c;

	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.1", 0, &c), 0);
	assert_string_equal(c.addr.text, "10.0.0.1:10143");
	assert_string_equal(c.audience, "mx1.example.org");
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "10.0.0.1", 1143, &c), 0);
	assert_string_equal(c.addr.text, "10.0.0.1:1143");
	assert_string_equal(c.audience, "");
	assert_int_equal(routing_choice_for(r, DG_PROTO_POP3, "192.0.2.9", 0, &c), 0);
	assert_string_equal(c.addr.text, "192.0.2.9:110");
	assert_int_equal(routing_choice_for(r, DG_PROTO_SMTP, "192.0.2.9", 0, &c), 0);
	assert_string_equal(c.addr.text, "192.0.2.9:587");
	assert_int_equal(routing_choice_for(r, DG_PROTO_IMAP, "mail.example.org", 0, &c), -1);
	routing_free(r);
}

/* The read-only view the metrics use; without health checks all are up. */
static void test_backend_view(void **state)
{
	struct fx *f = *state;
	struct routing *r = configured(f, POOLS);
	struct routing_backend_info b;

	assert_int_equal(routing_backend_count(r), 4);
	routing_backend_get(r, 1, &b);
	assert_string_equal(b.proto, "imap");
	assert_string_equal(b.backend, "[2001:db8::2]:10143");
	assert_string_equal(b.name, "mx2");
	assert_true(b.up);
	assert_int_equal(b.weight, 3);
	routing_backend_get(r, 3, &b);
	assert_string_equal(b.proto, "smtp");
	assert_string_equal(b.name, "");
	/* a reload with a new pool replaces the view */
	{
		struct dg_config cfg;
		assert_int_equal(load(f, HEAD "audience = a\n[backend]\npop3 = 127.0.0.1:1\n", &cfg), 0);
		assert_int_equal(routing_configure(r, &cfg, f->err, sizeof(f->err)), 0);
		config_free(&cfg);
	}
	assert_int_equal(routing_backend_count(r), 1);
	assert_false(routing_serves(r, DG_PROTO_IMAP));
	routing_backend_get(r, 0, &b);
	assert_string_equal(b.backend, "127.0.0.1:1");
	routing_free(r);
}

/* host=/port= extra fields of the users file that has the user. */
static void test_passdb_route(void **state)
{
	struct fx *f = *state;
	struct dg_config cfg;
	struct passdb *db;
	char path[128], *host, *port;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/users", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("alice:{PLAIN}a::::::host=10.0.0.6 port=10143\n"
	      "bob:{PLAIN}b::::::host=mail2.example.org\n"
	      "carol:{PLAIN}c::::::\n", fp);
	fclose(fp);
	assert_int_equal(load(f, HEAD "audience = a\n[backend]\nimap = 127.0.0.1:1\n", &cfg), 0);
	assert_non_null(db = passdb_new(&cfg));
	assert_int_equal(passdb_load(db, &f->log, f->err, sizeof(f->err)), 0);
	assert_int_equal(passdb_route(db, "alice", &host, &port), 0);
	assert_string_equal(host, "10.0.0.6");
	assert_string_equal(port, "10143");
	free(host);
	free(port);
	assert_int_equal(passdb_route(db, "bob", &host, &port), 0);
	assert_string_equal(host, "mail2.example.org");
	assert_null(port);
	free(host);
	assert_int_equal(passdb_route(db, "carol", &host, &port), 0);
	assert_null(host);
	assert_null(port);
	assert_int_equal(passdb_route(db, "zed", &host, &port), 0);
	assert_null(host);
	passdb_free(db);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pools_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_choice_for, setup, teardown),
		cmocka_unit_test_setup_teardown(test_choice_for_outside_allowed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_view, setup, teardown),
		cmocka_unit_test_setup_teardown(test_passdb_route, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
