// Package blobstore keeps blobs (slugs, build caches, source tarballs) in
// PostgreSQL large objects, addressed by a path such as
// "slugs/demo/3f2a.tgz", and serves them over HTTP.
//
// A blob is one large object plus a row of the table blobstore_blobs (path,
// large object OID, "sha256:<hex>" digest, size, creation time). The Store
// creates that table when it is missing (Open), so the controller's own
// migrations need not know about it.
//
// Blobs stream both ways and are never held whole in memory:
//
//   - Put reads its input in chunks of ChunkSize bytes, hashes each chunk and
//     writes it to a new large object, all in one transaction. The row is
//     upserted and the large object it replaces is unlinked in that same
//     transaction, so a failed or rejected upload stores nothing, concurrent
//     uploads to one path end with the last one committed, and no large
//     object is ever left behind.
//   - Get opens the large object in a read-only, repeatable-read transaction
//     on a connection of its own, held until the reader is closed (or its
//     context ends, whichever comes first). The reader hashes what it reads;
//     when the recorded size has been read it checks the digest and that the
//     object ends there, and fails with ErrDigestMismatch, withholding the
//     last chunk, when either does not hold. A blob replaced while it is
//     being read is read whole as it was when Get began.
//
// Handler serves PUT, GET, HEAD and DELETE on PathPrefix+"{path}" with the
// controller API's error shape (docs/API.md). Paths are validated by
// ValidatePath. The handler does no authentication: the controller mounts
// it behind its own (user tokens and the host agents' token).
//
// Garbage collection is the caller's policy, on top of List, ListOlder,
// DeleteOlder (blobs under a prefix not written since a time) and
// DeletePrefix (every blob under a prefix, e.g. a deleted app's). Each blob
// goes in a transaction of its own, so a collection never holds up uploads.
package blobstore
