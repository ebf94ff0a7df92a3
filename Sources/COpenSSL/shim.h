#ifndef PGMUX_COPENSSL_SHIM_H
#define PGMUX_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
/* These are macros over *_ctrl, invisible to Swift. */
static inline int pgmux_SSL_CTX_set_min_proto_version(SSL_CTX *c, int v) { return (int)SSL_CTX_set_min_proto_version(c, v); }
static inline long pgmux_SSL_CTX_set_mode(SSL_CTX *c, long m) { return SSL_CTX_set_mode(c, m); }
static inline long pgmux_SSL_CTX_set_max_send_fragment(SSL_CTX *c, long m) { return SSL_CTX_set_max_send_fragment(c, m); }
static inline int pgmux_SSL_CTX_set_max_proto_version(SSL_CTX *c, int v) { return (int)SSL_CTX_set_max_proto_version(c, v); }
static inline long pgmux_SSL_set_tlsext_host_name(SSL *s, const char *n) { return SSL_set_tlsext_host_name(s, n); }
static inline long pgmux_SSL_CTX_set_options(SSL_CTX *c, long o) { return (long)SSL_CTX_set_options(c, (uint64_t)o); }
static inline long pgmux_SSL_CTX_set1_groups_list(SSL_CTX *c, const char *l) { return SSL_CTX_set1_groups_list(c, l); }
static inline long pgmux_SSL_CTX_set_dh_auto(SSL_CTX *c, int on) { return SSL_CTX_set_dh_auto(c, on); }
#endif
