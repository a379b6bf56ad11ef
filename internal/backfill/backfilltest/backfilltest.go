// Package backfilltest writes Parquet files for the tests of backfill and
// of the commands that run it.
package backfilltest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// WriteParquet writes rows to root/rel (creating its directories) with the
// given writer options, seven rows per Write, and returns the file's name.
func WriteParquet[T any](t testing.TB, root, rel string, rows []T, opts ...parquet.WriterOption) string {
	t.Helper()
	name := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, opts...)
	for i := 0; i < len(rows); i += 7 {
		if _, err := w.Write(rows[i:min(i+7, len(rows))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return name
}
