#ifndef DW_COMMON_STRBUF_H
#define DW_COMMON_STRBUF_H

#include <stddef.h>

/*
 * A growing NUL-terminated text buffer for output built piece by piece (JSON, SQL array literals,
 * multipart bodies). Appends never fail loudly: the first failure is kept in `failed` and later
 * appends do nothing, so a writer checks once at the end. Start from { 0 } (no cap) or set `max`
 * (bytes, without the NUL): past it nothing more is written but `len` goes on counting, so the
 * error can say how large the text would have been.
 */
enum { STRBUF_OK = 0, STRBUF_OOM = 1, STRBUF_TOO_BIG = 2 };

struct strbuf {
	char *p;     /* the text (NULL until something is written) */
	size_t len;  /* its length (or, once TOO_BIG, the length it would have) */
	size_t cap;
	size_t max;  /* 0: no cap */
	int failed;  /* STRBUF_OK, STRBUF_OOM or STRBUF_TOO_BIG */
};

/* Appends n bytes of s. */
void strbuf_put(struct strbuf *b, const char *s, size_t n);
/* Appends the string s. */
void strbuf_puts(struct strbuf *b, const char *s);
/* Appends printf(fmt, ...). */
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the text and zeroes the buffer (its cap included); NULL-safe. */
void strbuf_free(struct strbuf *b);

#endif
