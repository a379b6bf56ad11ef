package resp_test

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/resp"
)

func TestReader(t *testing.T) {
	r := resp.NewReader([]byte("*3\r\n$3\r\nabc\r\n$-1\r\n_\r\n%1\r\n~0\r\n"))
	if n, err := r.Aggregate(); n != 3 || err != nil {
		t.Fatalf("Aggregate = %d, %v", n, err)
	}
	if b, ok, err := r.Bulk(); string(b) != "abc" || !ok || err != nil || cap(b) != 3 {
		t.Fatalf("Bulk = %q (cap %d), %v, %v", b, cap(b), ok, err)
	}
	for _, what := range []string{"RESP2 null", "RESP3 null"} {
		if b, ok, err := r.Bulk(); b != nil || ok || err != nil {
			t.Fatalf("%s: Bulk = %q, %v, %v", what, b, ok, err)
		}
	}
	if typ, n, err := r.Header(); typ != '%' || n != 1 || err != nil {
		t.Fatalf("map Header = %c %d %v", typ, n, err)
	}
	if n, err := r.Aggregate(); n != 0 || err != nil {
		t.Fatalf("set Aggregate = %d, %v", n, err)
	}
	if _, err := r.Aggregate(); !errors.Is(err, resp.ErrMalformed) {
		t.Fatalf("past the end: %v, want ErrMalformed", err)
	}
}

func TestReaderErrors(t *testing.T) {
	_, _, err := resp.NewReader([]byte("-WRONGTYPE Operation against a key\r\n")).Bulk()
	var rerr redis.Error
	if !errors.As(err, &rerr) || !redis.HasErrorPrefix(err, "WRONGTYPE") {
		t.Fatalf("error reply: %v (%T), want a redis.Error WRONGTYPE", err, err)
	}
	for name, raw := range map[string]string{
		"truncated string": "$10\r\nabc\r\n",
		"truncated line":   "*2",
		"bad length":       "$x\r\n",
		"empty line":       "\r\n",
		"string for array": "$1\r\na\r\n",
		"array for string": "*1\r\n",
		"unknown type":     "?1\r\n",
	} {
		r := resp.NewReader([]byte(raw))
		var err error
		if name == "string for array" {
			_, err = r.Aggregate()
		} else {
			_, _, err = r.Bulk()
		}
		if !errors.Is(err, resp.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
