#include "director.h"

#include <string.h>

static void set_how(struct director_choice *how, enum cluster_assign assign, const char *text)
{
	how->assign = assign;
	how->how = text;
}

bool director_pick(struct routing *r, enum dg_proto proto, const char *key, size_t key_len,
		   const char *assigned, struct routing_choice *out, struct director_choice *how)
{
	struct routing_choice kept;

	set_how(how, CLUSTER_ASSIGN_NONE, NULL);
	if (assigned == NULL)
		return routing_pick(r, proto, key, key_len, out);
	if (assigned[0] == '\0') {
		if (!routing_pick(r, proto, key, key_len, out))
			return false;
		/* a pool in panic has no healthy choice worth recording */
		if (!out->panic)
			set_how(how, CLUSTER_ASSIGN_CREATE, "created");
		return true;
	}
	switch (routing_find_host(r, proto, assigned, &kept)) {
	case ROUTING_HOST_USABLE:
		*out = kept;
		set_how(how, CLUSTER_ASSIGN_RENEW, "honoured");
		return true;
	case ROUTING_HOST_UNUSABLE:
		/* down, drained or weight 0 here: the hash moves the user, unless
		   the whole pool is in panic (nothing healthy worth recording) */
		if (!routing_pick(r, proto, key, key_len, out))
			return false;
		if (!out->panic)
			set_how(how, CLUSTER_ASSIGN_REPLACE, "replaced");
		return true;
	default:
		/* a host id this edge's pool does not have (another protocol's
		   backend, or edges configured apart): hash, leave it alone */
		return routing_pick(r, proto, key, key_len, out);
	}
}
