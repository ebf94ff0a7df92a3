#ifndef PGMUX_CLDAP_SHIM_H
#define PGMUX_CLDAP_SHIM_H
#include <ldap.h>
#include <sys/time.h>
/* LDAP_SASL_SIMPLE is ((char *) 0): a simple bind, spelled for Swift. */
static inline int pgmux_ldap_simple_bind(LDAP *ld, const char *dn, const char *password, int length) {
    struct berval cred;
    cred.bv_val = (char *)password;
    cred.bv_len = (ber_len_t)length;
    return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}
#endif
