#ifndef DW_EMU_B64_H
#define DW_EMU_B64_H

#include <stddef.h>

/*
 * Standard base64 (RFC 4648, "+/" alphabet, "=" padding) for the emulators' ETags and Basic
 * credentials.
 */

/* Encodes n bytes into out (cap bytes, NUL-terminated). Returns the text's length, or 0 when it
 * does not fit. */
size_t b64_encode(const void *in, size_t n, char *out, size_t cap);

/* Decodes text in[0..n) (padding optional) into out (cap bytes, NUL-terminated). Returns the
 * decoded length, or -1 on a character outside the alphabet or when it does not fit. */
long b64_decode(const char *in, size_t n, char *out, size_t cap);

#endif
