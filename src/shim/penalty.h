/* Brute-force protection with the real client address: failure scores per
   client network (IPv4 /32, IPv6 /64 by default) and per user, turned into a
   growing Auth-Wait delay, a cap on attempts per nginx connection, exemption
   after a success, and trusted networks.

   The state (struct penalty) is independent of the configuration so that it
   survives SIGHUP: build it once, apply each new config with
   penalty_configure(). Memory is bounded: at most max_entries keys, least
   recently used evicted first, every operation O(1) (hash table + intrusive
   LRU list). Time is passed in (monotonic seconds) so tests are exact.
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
	size_t max_entries;             /* LRU bound (IP + user keys); default 65536 */
	unsigned max_delay;             /* cap of the curve, s; default 15 */
	unsigned forget_after;          /* quiet seconds that reset a score; default 300 */
	unsigned exempt_after_success;  /* s an IP stays exempt after a success; default 600, 0 off */
	unsigned max_attempts;          /* the failure on this attempt closes; 0: no cap; default 5 */
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
/* A successful login: clears the IP's score and exempts the IP for
   exempt_after_success seconds. The user's score is kept: it limits guessing
   of that user from everywhere else, and it decays by itself. */
void penalty_success(struct penalty *p, const struct penalty_addr *ip, const char *user,
		     int64_t now);
/* Current max(IP, user) score without changing anything (LRU order included). */
unsigned penalty_peek(const struct penalty *p, const struct penalty_addr *ip,
		      const char *user, int64_t now);
/* True when attempt already exceeds the cap (a request that should not come). */
bool penalty_attempt_over(const struct penalty *p, unsigned attempt);
bool penalty_trusted(const struct penalty *p, const struct penalty_addr *ip);

/* For metrics: keys held, and keys with a live score. O(1) amortised:
   penalty_active() forgets the scores that expired since its last call
   (as their next failure would) and never walks the table. */
size_t penalty_entries(const struct penalty *p);
size_t penalty_active(struct penalty *p, int64_t now);

#endif
