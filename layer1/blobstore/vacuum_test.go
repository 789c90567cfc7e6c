package blobstore

import (
	"bytes"
	"testing"
)

// TestVacuumLargeObjects checks that orphaned large objects are unlinked,
// and that those of blobs and of other tables' oid columns are kept.
func TestVacuumLargeObjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	ctx := t.Context()
	if _, err := e.store.Put(ctx, "slugs/demo/a.tgz", bytes.NewReader(content(1, 100)), 0); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `SELECT lo_from_bytea(0, 'orphan 1'), lo_from_bytea(0, 'orphan 2')`)
	e.exec(t, `CREATE TABLE other_docs (doc oid)`)
	e.exec(t, `INSERT INTO other_docs SELECT lo_from_bytea(0, 'referenced elsewhere')`)
	if n := e.largeObjects(t); n != 4 {
		t.Fatalf("%d large objects before, want 4", n)
	}

	for i, want := range []int{2, 0} { // the second pass finds nothing
		n, err := e.store.VacuumLargeObjects(ctx)
		if err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
		if n != want {
			t.Errorf("pass %d unlinked %d, want %d", i, n, want)
		}
	}
	if n := e.largeObjects(t); n != 2 {
		t.Errorf("%d large objects after, want 2 (the blob's and other_docs')", n)
	}
	if _, got, err := readAll(t, e.store, "slugs/demo/a.tgz"); err != nil || !bytes.Equal(got, content(1, 100)) {
		t.Errorf("the blob after the vacuum: %v", err)
	}
}
