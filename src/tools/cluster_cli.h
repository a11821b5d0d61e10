/* `dovegate cluster`: look at and steer the store dovegate-auth's edges
   share (status, assignments, move, unassign, drain, undrain), from
   dovegate-auth.conf's [cluster] section and backends. */
#ifndef DOVEGATE_TOOLS_CLUSTER_CLI_H
#define DOVEGATE_TOOLS_CLUSTER_CLI_H

#include <stdio.h>

#define CLUSTER_SYNOPSIS "[-c CONFIG] status|assignments [USER]|move USER BACKEND|" \
	"unassign USER|drain BACKEND|undrain BACKEND"

/* argv[0] is "cluster". Exit status: 0 done, 1 failed, 2 usage. */
int cluster_run(int argc, char **argv);
void cluster_help(FILE *out);

#endif
