/* Brute-force protection with the real client address: failure scores per
   client network (IPv4 /32, IPv6 /64 by default) and per user. Before a
   login is verified, penalty_admit() holds it for the score's delay (success
   and failure alike), refuses it without verifying at a hard limit, and caps
   the logins one network has in flight; after a failure, the score grows and
   becomes the reply's Auth-Wait. Also: a cap on attempts per nginx
   connection, exemption after a success, users known at a network (their
   own score does not slow them there), and trusted networks.

   The state (struct penalty) is independent of the configuration so that it
   survives SIGHUP: build it once, apply each new config with
   penalty_configure(). Memory is bounded: at most max_entries keys of each
   kind (networks, users, known user-network pairs), so a flood of one kind
   never evicts another; within a kind the least recently used key with a
   low score goes first (keys with a real score sit on a list of their own),
   every operation O(1) (hash table + intrusive LRU lists). Time is passed in (monotonic seconds) so tests are exact.
   Passwords are never stored: only a keyed hash (per-process random key) of
   the last few wrong ones per key, to count a repeated one once.
   Not thread safe: use it on the event loop thread. */
#ifndef DOVEGATE_SHIM_PENALTY_H
#define DOVEGATE_SHIM_PENALTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An address in network byte order; v4-mapped IPv6 is folded to IPv4. */
struct penalty_addr {
	int family;                     /* AF_INET or AF_INET6 */
	unsigned char b[16];            /* IPv4 uses the first 4 bytes */
};

struct penalty_net {
	struct penalty_addr addr;       /* already masked */
	unsigned prefix;
};

struct penalty_config {
	unsigned v4_prefix;             /* 1-32; default 32 */
	unsigned v6_prefix;             /* 1-128; default 64 */
	size_t max_entries;             /* LRU bound per kind of key; default 65536 */
	unsigned max_delay;             /* cap of the curve, s; default 15 */
	unsigned forget_after;          /* quiet seconds that reset a score; default 300 */
	unsigned exempt_after_success;  /* s an IP stays exempt after a success; default 600, 0 off */
	unsigned max_attempts;          /* the failure on this attempt closes; 0: no cap; default 5 */
	unsigned refuse_at;             /* score at which logins are refused unverified; 0: never; default 10 */
	unsigned max_pending;           /* logins a network with a score may have in flight; 0: no cap; default 16 */
	unsigned known_network_ttl;     /* s a success makes the user known at its network; 0 off; default 30 d */
	const struct penalty_net *trusted;  /* copied by penalty_configure() */
	size_t trusted_count;
};

#define PENALTY_REASON_MAX 80

struct penalty_decision {
	unsigned delay;                 /* Auth-Wait seconds; >= 1 unless close */
	bool close;                     /* answer without Auth-Wait: nginx closes */
	unsigned score;                 /* max(IP score, user score) after this failure */
	unsigned attempt;
	/* "counted", "repeat" (same wrong password), "trusted", "exempt" */
	const char *why;
	/* "penalty=<score> delay=<s> attempt=<n>" for the decision log line */
	char reason[PENALTY_REASON_MAX];
};

enum penalty_verdict {
	PENALTY_GO,                     /* verify now */
	PENALTY_HOLD,                   /* verify after hold seconds */
	PENALTY_REFUSE,                 /* score at refuse_at: temporary error, not verified */
	PENALTY_BUSY,                   /* the network has a score and max_pending logins in flight */
};

struct penalty_admission {
	enum penalty_verdict verdict;
	unsigned hold;                  /* HOLD: s to wait; REFUSE/BUSY: Auth-Wait, 1 */
	unsigned score;                 /* the score that decided */
	/* "none", "trusted", "network", "user", "pending" */
	const char *why;
	bool taken;                     /* GO/HOLD: counted in flight; penalty_release() it */
};

/* What the cluster store knows about a login's network and user (several
   dovegate-auth edges share it: cluster.h). Folded into this edge's own
   state: the higher score counts, and known/exempt from either holds. */
struct penalty_shared {
	unsigned net_score;
	unsigned user_score;
	bool known;                     /* the user logged in from this network */
	bool exempt;                    /* the network had a success lately */
};

struct penalty;

void penalty_config_defaults(struct penalty_config *cfg);

/* Text forms. 0 on success; -1 with *error_r (static text) otherwise. */
int penalty_addr_parse(const char *text, struct penalty_addr *out);
int penalty_net_parse(const char *cidr, struct penalty_net *out, const char **error_r);
bool penalty_net_contains(const struct penalty_net *net, const struct penalty_addr *a);

/* The delay curve: 0 for score 0, then 1, 2, 4, 8, ... capped at max_delay. */
unsigned penalty_delay_for_score(unsigned score, unsigned max_delay);

/* Requires sodium_init(). Starts with penalty_config_defaults(); NULL on ENOMEM. */
struct penalty *penalty_new(void);
void penalty_free(struct penalty *p);
/* Copies cfg (and its trusted list); evicts down to the new max_entries.
   Keeps every score. -1 (state unchanged) on an invalid value or ENOMEM. */
int penalty_configure(struct penalty *p, const struct penalty_config *cfg,
		      const char **error_r);

/* A failed login. user may be NULL (no user: only the IP counts). secret is
   what the client proved nothing with (the password, or the APOP/CRAM
   response); NULL counts every time. attempt is nginx's Auth-Login-Attempt. */
void penalty_fail(struct penalty *p, const struct penalty_addr *ip, const char *user,
		  const void *secret, size_t secret_len, unsigned attempt, int64_t now,
		  struct penalty_decision *out);
/* penalty_fail, with the cluster's scores (NULL: none): a counted failure
   scores at least one more than the store's score, so the Auth-Wait is the
   cluster's. */
void penalty_fail_shared(struct penalty *p, const struct penalty_addr *ip, const char *user,
			 const void *secret, size_t secret_len, unsigned attempt, int64_t now,
			 const struct penalty_shared *shared, struct penalty_decision *out);
/* A successful login: clears the IP's score, exempts the IP from refusal
   for exempt_after_success seconds (its failures still count), and makes
   the user known at the IP's network for known_network_ttl seconds. The
   user's score is kept: it limits guessing of that user from everywhere
   else, and it decays by itself. */
void penalty_success(struct penalty *p, const struct penalty_addr *ip, const char *user,
		     int64_t now);
/* Before verifying a login (see penalty_admission). The user's score counts
   unless the user is known at ip's network (a success from it within
   known_network_ttl); a network exempt after a success is held but never
   refused by its own score. With out->taken, call penalty_release() when
   the login is decided. */
void penalty_admit(struct penalty *p, const struct penalty_addr *ip, const char *user,
		   int64_t now, struct penalty_admission *out);
/* penalty_admit with the cluster's facts folded in (NULL: none). */
void penalty_admit_shared(struct penalty *p, const struct penalty_addr *ip, const char *user,
			  int64_t now, const struct penalty_shared *shared,
			  struct penalty_admission *out);
void penalty_release(struct penalty *p, const struct penalty_addr *ip);
/* Current max(IP, user) score without changing anything (LRU order included). */
unsigned penalty_peek(const struct penalty *p, const struct penalty_addr *ip,
		      const char *user, int64_t now);
/* True when attempt already exceeds the cap (a request that should not come). */
bool penalty_attempt_over(const struct penalty *p, unsigned attempt);
bool penalty_trusted(const struct penalty *p, const struct penalty_addr *ip);
/* The network ip counts under (the configured prefix), as "192.0.2.7/32" or
   "2001:db8::/64": the cluster store's name for it. */
void penalty_network_text(const struct penalty *p, const struct penalty_addr *ip, char *out,
			  size_t len);
/* The configuration in force (for the cluster store's expiry times). */
const struct penalty_config *penalty_get_config(const struct penalty *p);

/* For metrics: keys held, and keys with a live score. O(1) amortised:
   penalty_active() forgets the scores that expired since its last call
   (as their next failure would) and never walks the table. */
size_t penalty_entries(const struct penalty *p);
size_t penalty_active(struct penalty *p, int64_t now);

#endif
