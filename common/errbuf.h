#ifndef DW_ERRBUF_H
#define DW_ERRBUF_H

#include <stddef.h>

/* Formats a reason into a caller's errbuf of errlen bytes (truncating, always NUL-terminated).
 * A NULL errbuf or zero errlen is allowed and writes nothing. */
void errbuf_set(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
