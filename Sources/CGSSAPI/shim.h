#ifndef PGMUX_CGSSAPI_SHIM_H
#define PGMUX_CGSSAPI_SHIM_H
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
/* GSS_C_NO_CONTEXT, GSS_ERROR() and friends are macros: spelled for Swift. */
static inline int pgmux_gss_error(OM_uint32 major) { return GSS_ERROR(major) != 0; }
static inline int pgmux_gss_continue_needed(OM_uint32 major) { return (major & GSS_S_CONTINUE_NEEDED) != 0; }
static inline OM_uint32 pgmux_gss_c_gss_code(void) { return GSS_C_GSS_CODE; }
static inline OM_uint32 pgmux_gss_c_mech_code(void) { return GSS_C_MECH_CODE; }
#endif
