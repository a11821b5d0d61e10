/* Static backends: one "ip:port" per mail protocol. */
#ifndef DOVEGATE_SHIM_BACKEND_H
#define DOVEGATE_SHIM_BACKEND_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

struct backend {
	/* IP literal as nginx wants it in Auth-Server: IPv6 without brackets */
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;
	char port_text[8];
	/* "ip:port" or "[ipv6]:port", for logs */
	char text[INET6_ADDRSTRLEN + 8];
};

/* Parse "a.b.c.d:port" or "[v6]:port". Host names are refused: nginx only
   accepts IP literals in Auth-Server. */
int backend_parse(const char *spec, struct backend *out, const char **error_r);

#endif
