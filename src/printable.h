/*
 * printable.h
 *		How text written by others into etcd (candidates' names, keys, error
 *		messages) is shown in SQL results, error messages and the log.
 */
#ifndef LEADER_ELECTION_PRINTABLE_H
#define LEADER_ELECTION_PRINTABLE_H

/*
 * Writes src (srclen arbitrary bytes) to dst as printable ASCII: every byte
 * outside 0x20..0x7e becomes \xNN (lowercase hex).  The result is valid in
 * every server and client encoding and has no control characters; it is cut
 * to fit dstsize (> 0) between two escapes, never inside one.  Printable
 * ASCII maps to itself, so applying it twice changes nothing.
 */
extern void le_printable(const char *src, size_t srclen, char *dst, size_t dstsize);

#endif
