/* Director semantics for routing in cluster mode (what Dovecot 2.3's
   director did, on the cluster store): a user's logins go to the backend
   the user is assigned to while that backend is usable here, so all of the
   user's sessions meet on one backend even when edges disagree about other
   backends. Without an assignment, or when it names a backend this edge
   cannot use, the usual sticky hash (routing_pick) decides and the result
   becomes the assignment. Pure: the store is read and written by cluster.h. */
#ifndef DOVEGATE_SHIM_DIRECTOR_H
#define DOVEGATE_SHIM_DIRECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster.h"
#include "routing.h"

struct director_choice {
	enum cluster_assign assign;     /* what cluster_record() does with it */
	/* for the decision log: "honoured", "created", "replaced"; NULL: the
	   director did not apply (assignments off, or one this edge does not know) */
	const char *how;
};

/* Picks proto's backend for the user into out. key/key_len: the hashing key
   (routing_pick). assigned: the user's host id from the store ("": none);
   NULL: assignments off or the store did not answer, so only the hash
   counts and nothing is recorded. False: no backend at all. */
bool director_pick(struct routing *r, enum dg_proto proto, const char *key, size_t key_len,
		   const char *assigned, struct routing_choice *out, struct director_choice *how);

#endif
