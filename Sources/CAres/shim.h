#ifndef PGMUX_CARES_SHIM_H
#define PGMUX_CARES_SHIM_H
/* c-ares, the asynchronous resolver PgBouncer uses: server host names are looked up without
   blocking the event loop. arpa/nameser.h for the SOA query of dns_zone_check_period. */
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>

typedef void (*pgmux_ares_sock_state_cb)(void *data, ares_socket_t fd, int readable, int writable);
typedef void (*pgmux_ares_addrinfo_cb)(void *arg, int status, int timeouts, struct ares_addrinfo *res);
typedef void (*pgmux_ares_query_cb)(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
#endif
