#ifndef PGMUX_CPAM_SHIM_H
#define PGMUX_CPAM_SHIM_H
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>
#endif
