/* Cluster mode without a store: the store's URL and key names
   (cluster_store.h), the [cluster] section, the director's choice of a
   user's backend (director.h) and the store's scores folded into the
   penalty (penalty_admit_shared / penalty_fail_shared). The store itself is
   exercised by tests/integration/test_cluster.py against a real server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_store.h"
#include "conf_fixture.h"
#include "config.h"
#include "director.h"
#include "log.h"
#include "penalty.h"
#include "routing.h"

/* ---- the store's URL ------------------------------------------------------------ */

static void parse_ok(const char *url, enum cluster_transport t, const char *host,
		     unsigned port, unsigned db, const char *text)
{
	struct cluster_addr a;
	char err[256] = "", back[320];

	assert_int_equal(cluster_addr_parse(url, &a, err, sizeof(err)), 0);
	assert_int_equal(a.transport, t);
	assert_string_equal(a.host, host);
	assert_int_equal(a.port, port);
	assert_int_equal(a.db, db);
	cluster_addr_text(&a, back, sizeof(back));
	assert_string_equal(back, text);
}

static void parse_bad(const char *url, const char *want)
{
	struct cluster_addr a;
	char err[256] = "";

	assert_int_equal(cluster_addr_parse(url, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, want));
}

static void test_addr(void **state)
{
	(void)state;
	parse_ok("redis://127.0.0.1", CLUSTER_TCP, "127.0.0.1", 6379, 0, "redis://127.0.0.1:6379/0");
	parse_ok("redis://10.1.2.3:6380/2", CLUSTER_TCP, "10.1.2.3", 6380, 2,
		 "redis://10.1.2.3:6380/2");
	parse_ok("redis://[2001:db8::1]:7000", CLUSTER_TCP, "2001:db8::1", 7000, 0,
		 "redis://[2001:db8::1]:7000/0");
	parse_ok("rediss://192.0.2.1:6390/1", CLUSTER_TLS, "192.0.2.1", 6390, 1,
		 "rediss://192.0.2.1:6390/1");
	parse_ok("unix:/run/redis/redis.sock?db=3", CLUSTER_UNIX, "/run/redis/redis.sock", 0, 3,
		 "unix:/run/redis/redis.sock?db=3");
	/* a password in the URL would end up in every log line naming the store */
	parse_bad("redis://dovegate:secret@127.0.0.1", "no credentials in the URL");
	parse_bad("http://127.0.0.1", "must start with redis://, rediss:// or unix:");
	parse_bad("redis://127.0.0.1:0", "the port must be 1-65535");
	parse_bad("redis://127.0.0.1:70000", "the port must be 1-65535");
	parse_bad("redis://127.0.0.1/x", "the database must be a number");
	parse_bad("unix:relative.sock", "absolute socket path");
	parse_bad("redis://", "no host");
	parse_bad("", "empty");
}

static void test_keys(void **state)
{
	char key[CLUSTER_KEY_MAX], big[300];

	(void)state;
	assert_int_equal(cluster_key(key, sizeof(key), "dovegate:", 'n', "192.0.2.7/32", 12,
				     NULL, 0), (int)strlen("dovegate:n:192.0.2.7/32"));
	assert_string_equal(key, "dovegate:n:192.0.2.7/32");
	cluster_key(key, sizeof(key), "site2:", 'k', "2001:db8::/64", 13, "alice", 5);
	assert_string_equal(key, "site2:k:2001:db8::/64|alice");
	cluster_key(key, sizeof(key), "dovegate:", 'a', "bob@example.org", 15, NULL, 0);
	assert_string_equal(key, "dovegate:a:bob@example.org");
	cluster_drained_key(key, sizeof(key), "dovegate:");
	assert_string_equal(key, "dovegate:drained");
	/* too long for the buffer: refused, never cut (a cut key is another user's) */
	memset(big, 'x', sizeof(big));
	assert_int_equal(cluster_key(key, 40, "dovegate:", 'u', big, 100, NULL, 0), -1);
	assert_true(cluster_prefix_ok("dovegate:"));
	assert_true(cluster_prefix_ok("mail.example_org-1:"));
	assert_false(cluster_prefix_ok(""));
	assert_false(cluster_prefix_ok("dove*"));       /* a SCAN wildcard */
	assert_false(cluster_prefix_ok("a b"));
}

/* ---- [cluster] -------------------------------------------------------------------- */

#define HEAD \
	"[server]\n"                                    /* 1 */ \
	"secret_file = secret\n"                        /* 2 */ \
	"[passdb]\n"                                    /* 3 */ \
	"path = users\n"                                /* 4 */ \
	"[ticket]\n"                                    /* 5 */ \
	"signing_key = ticket.key\n"                    /* 6 */ \
	"[backend mx1]\n"                               /* 7 */ \
	"protocol = imap\n"                             /* 8 */ \
	"address = 10.0.0.1:143\n"                      /* 9 */ \
	"audience = mx1\n"                              /* 10 */ \
	"[backend mx2]\n"                               /* 11 */ \
	"protocol = imap\n"                             /* 12 */ \
	"address = 10.0.0.2:143\n"                      /* 13 */ \
	"audience = mx2\n"                              /* 14 */ \
	"[backend mx3]\n"                               /* 15 */ \
	"protocol = imap\n"                             /* 16 */ \
	"address = 10.0.0.3:143\n"                      /* 17 */ \
	"audience = mx3\n"                              /* 18 */

static void test_config(void **state)
{
	struct fx *f = *state;
	struct dg_config cfg;

	/* no [cluster]: off */
	assert_int_equal(load(f, HEAD, &cfg), 0);
	assert_null(cfg.cluster_store_text);
	config_free(&cfg);
	/* the defaults a postmaster gets from one line */
	assert_int_equal(load(f, HEAD "[cluster]\nstore = redis://127.0.0.1\n", &cfg), 0);
	assert_string_equal(cfg.cluster_store_text, "redis://127.0.0.1:6379/0");
	assert_int_equal(cfg.cluster_timeout_ms, 100);
	assert_int_equal(cfg.cluster_connect_timeout_ms, 1000);
	assert_int_equal(cfg.cluster_retry_ms, 1000);
	assert_int_equal(cfg.cluster_assignment_ttl, 900);
	assert_true(cfg.cluster_shared_penalty);
	assert_string_equal(cfg.cluster_prefix, "dovegate:");
	assert_null(cfg.cluster_password_file);
	config_free(&cfg);
	assert_int_equal(load(f, HEAD "[cluster]\nstore = unix:/run/valkey/valkey.sock?db=1\n"
			      "user = dovegate\npassword_file = store-password\ntimeout = 250ms\n"
			      "assignment_ttl = 0\nshared_penalty = no\nprefix = site2:\n", &cfg), 0);
	assert_int_equal(cfg.cluster_addr.transport, CLUSTER_UNIX);
	assert_int_equal(cfg.cluster_addr.db, 1);
	assert_string_equal(cfg.cluster_user, "dovegate");
	assert_non_null(strstr(cfg.cluster_password_file, "/store-password"));
	assert_int_equal(cfg.cluster_password_file[0], '/');
	assert_int_equal(cfg.cluster_timeout_ms, 250);
	assert_int_equal(cfg.cluster_assignment_ttl, 0);
	assert_false(cfg.cluster_shared_penalty);
	assert_string_equal(cfg.cluster_prefix, "site2:");
	config_free(&cfg);

	expect_error(f, HEAD "[cluster]\nstore = redis://redis.example.org\n", 20,
		     "store: the store's host must be an IP address, not \"redis.example.org\" "
		     "(no name lookups on the event loop)");
	expect_error(f, HEAD "[cluster]\nstore = redis://u:p@127.0.0.1\n", 20,
		     "store: store 'redis://u:p@127.0.0.1': no credentials in the URL: use user = "
		     "and password_file =");
	expect_error(f, HEAD "[cluster]\ntimeout = 100ms\n", 20,
		     "[cluster] timeout needs [cluster] store = (the store's URL)");
	expect_error(f, HEAD "[cluster]\nstore = redis://127.0.0.1\ntimeout = 5ms\n", 21,
		     "timeout: must be a duration from 10ms to 10s, e.g. 2s or 500ms");
	expect_error(f, HEAD "[cluster]\nstore = redis://127.0.0.1\ntls_ca_file = ca.pem\n", 21,
		     "tls_ca_file applies to a rediss:// store only");
	expect_error(f, HEAD "[cluster]\nstore = rediss://127.0.0.1\ntls_cert_file = c.pem\n", 21,
		     "tls_cert_file and tls_key_file go together");
	expect_error(f, HEAD "[cluster]\nstore = redis://127.0.0.1\nuser = dovegate\n", 21,
		     "[cluster] user needs password_file (AUTH user password)");
	expect_error(f, HEAD "[cluster]\nstore = redis://127.0.0.1\nprefix = a*\n", 21,
		     "prefix: must be 1-64 letters, digits, ':', '.', '_' or '-'");
}

/* ---- the director ------------------------------------------------------------------ */

static struct routing *pools(struct fx *f, struct dg_config *cfg)
{
	struct routing *r;

	assert_int_equal(load(f, HEAD, cfg), 0);
	r = routing_new(NULL, &f->log);
	assert_non_null(r);
	assert_int_equal(routing_configure(r, cfg, f->err, sizeof(f->err)), 0);
	return r;
}

/* A user the hash sends somewhere other than `not`. */
static const char *user_hashed_away_from(struct routing *r, const char *not, char *buf,
					  size_t len)
{
	struct routing_choice c;

	for (int i = 0; i < 1000; i++) {
		snprintf(buf, len, "user%d", i);
		assert_true(routing_pick(r, DG_PROTO_IMAP, buf, strlen(buf), &c));
		if (strcmp(routing_host_id(&c), not) != 0)
			return buf;
	}
	fail_msg("every user hashes to %s", not);
	return NULL;
}

static void test_director(void **state)
{
	struct fx *f = *state;
	struct dg_config cfg;
	struct routing *r = pools(f, &cfg);
	struct routing_choice c, hashed;
	struct director_choice how;
	char buf[32];
	const char *user = user_hashed_away_from(r, "mx2", buf, sizeof(buf));
	const char *drained[] = { "mx2" };

	assert_true(routing_pick(r, DG_PROTO_IMAP, user, strlen(user), &hashed));
	/* assignments off (or the store silent): the hash, nothing to record */
	assert_true(director_pick(r, DG_PROTO_IMAP, user, strlen(user), NULL, &c, &how));
	assert_string_equal(routing_host_id(&c), routing_host_id(&hashed));
	assert_int_equal(how.assign, CLUSTER_ASSIGN_NONE);
	assert_null(how.how);
	/* first login: the hash decides and becomes the assignment */
	assert_true(director_pick(r, DG_PROTO_IMAP, user, strlen(user), "", &c, &how));
	assert_string_equal(routing_host_id(&c), routing_host_id(&hashed));
	assert_int_equal(how.assign, CLUSTER_ASSIGN_CREATE);
	assert_string_equal(how.how, "created");
	/* an assignment another edge made beats this edge's hash */
	assert_true(director_pick(r, DG_PROTO_IMAP, user, strlen(user), "mx2", &c, &how));
	assert_string_equal(routing_host_id(&c), "mx2");
	assert_string_equal(c.addr.ip, "10.0.0.2");
	assert_int_equal(how.assign, CLUSTER_ASSIGN_RENEW);
	assert_string_equal(how.how, "honoured");
	/* drained cluster-wide: moved by the hash, the assignment replaced */
	assert_int_equal(routing_set_drained(r, drained, 1), 0);
	assert_true(director_pick(r, DG_PROTO_IMAP, user, strlen(user), "mx2", &c, &how));
	assert_string_not_equal(routing_host_id(&c), "mx2");
	assert_int_equal(how.assign, CLUSTER_ASSIGN_REPLACE);
	assert_string_equal(how.how, "replaced");
	/* ... and the hash no longer picks it for anyone */
	for (int i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "other%d", i);
		assert_true(routing_pick(r, DG_PROTO_IMAP, buf, strlen(buf), &c));
		assert_string_not_equal(routing_host_id(&c), "mx2");
	}
	/* the drained set survives a reload of the pools */
	assert_int_equal(routing_configure(r, &cfg, f->err, sizeof(f->err)), 0);
	assert_true(director_pick(r, DG_PROTO_IMAP, user, strlen(user), "mx2", &c, &how));
	assert_string_equal(how.how, "replaced");
	assert_int_equal(routing_set_drained(r, NULL, 0), 0);
	/* a host id this edge does not have: hashed, left alone */
	assert_true(director_pick(r, DG_PROTO_IMAP, user, strlen(user), "mx9", &c, &how));
	assert_string_equal(routing_host_id(&c), routing_host_id(&hashed));
	assert_int_equal(how.assign, CLUSTER_ASSIGN_NONE);
	assert_null(how.how);
	routing_free(r);
	config_free(&cfg);
}

/* ---- shared scores ----------------------------------------------------------------- */

#define T0 1000000

static void test_penalty_shared(void **state)
{
	struct penalty_config pc;
	const char *why = NULL;
	struct penalty *p = penalty_new();
	struct penalty_addr a;
	struct penalty_admission adm;
	struct penalty_decision d;
	struct penalty_shared sh = { 0 };
	char net[64];

	(void)state;
	penalty_config_defaults(&pc);
	assert_int_equal(penalty_configure(p, &pc, &why), 0);
	assert_int_equal(penalty_addr_parse("192.0.2.77", &a), 0);
	penalty_network_text(p, &a, net, sizeof(net));
	assert_string_equal(net, "192.0.2.77/32");
	assert_int_equal(penalty_addr_parse("2001:db8:1:2::9", &a), 0);
	penalty_network_text(p, &a, net, sizeof(net));
	assert_string_equal(net, "2001:db8:1:2::/64");
	assert_int_equal(penalty_addr_parse("192.0.2.77", &a), 0);

	/* clean here, but other edges saw 3 failures: held as this edge would
	   have held it after 3 of its own */
	sh.net_score = 3;
	penalty_admit_shared(p, &a, "alice", T0, &sh, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	assert_int_equal(adm.score, 3);
	assert_int_equal(adm.hold, penalty_delay_for_score(3, pc.max_delay));
	assert_string_equal(adm.why, "network");
	penalty_release(p, &a);
	/* the next failure scores on top of the cluster's count */
	penalty_fail_shared(p, &a, "alice", "guess-1", 7, 1, T0, &sh, &d);
	assert_string_equal(d.why, "counted");
	assert_int_equal(d.score, 4);
	/* past refuse_at in the store: refused unverified ... */
	sh.net_score = pc.refuse_at;
	penalty_admit_shared(p, &a, "bob", T0 + 1, &sh, &adm);
	assert_int_equal(adm.verdict, PENALTY_REFUSE);
	/* ... unless another edge saw a success from the network lately */
	sh.exempt = true;
	penalty_admit_shared(p, &a, "bob", T0 + 1, &sh, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	penalty_release(p, &a);
	/* a user scored on other edges, from a network where it is not known */
	memset(&sh, 0, sizeof(sh));
	assert_int_equal(penalty_addr_parse("198.51.100.1", &a), 0);
	sh.user_score = 5;
	penalty_admit_shared(p, &a, "carol", T0 + 2, &sh, &adm);
	assert_string_equal(adm.why, "user");
	assert_int_equal(adm.score, 5);
	penalty_release(p, &a);
	/* known there (a success via any edge): not slowed by the user's score */
	sh.known = true;
	penalty_admit_shared(p, &a, "carol", T0 + 2, &sh, &adm);
	assert_int_equal(adm.verdict, PENALTY_GO);
	penalty_release(p, &a);
	/* NULL: this edge alone (the store did not answer) */
	penalty_admit_shared(p, &a, "carol", T0 + 2, NULL, &adm);
	assert_int_equal(adm.verdict, PENALTY_GO);
	penalty_release(p, &a);
	penalty_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_keys),
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_director, setup, teardown),
		cmocka_unit_test(test_penalty_shared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
