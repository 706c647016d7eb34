"""Every credential notifier watches, in one list: the store's tokens and what the others found.

A pass reads each source; what a source other than the store read (everything, for a source
that reads everything each pass; its window, for ``sql``, which reads only that) is kept in
the ``credentials`` table by :func:`.found.record_found`, which writes only what changed since the
source's last read, and the time of that read in ``meta``. A source that fails keeps its
last rows and time, so the list shows what it last saw and when.

The list (:mod:`.listing`: ``GET /api/v1/credentials``, ``credentials list``, the page) is
merged from two parts, each paged by its own keyset (:class:`notifier.db.keyset.Merged`):
the store's tokens, read from ``tokens`` (never copied: a million tokens would be rewritten
by every pass), and the ``credentials`` table. Filters are conditions in SQL on each part,
with the status rules of the tokens list (:class:`notifier.tokens.listing.Statuses`).
"""
