package event

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// SchemaExampleFiles returns the bytes of every file under
// schemas/examples, valid and invalid: the fuzz targets' seeds.
func SchemaExampleFiles(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	err := filepath.WalkDir("../schemas/examples", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		out = append(out, data)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// decodeWith decodes data with one JSON source alone, without the
// fallback of Decoder.Decode.
func decodeWith(s interface {
	source
	reset([]byte)
}, data []byte) (Event, *ValidationError) {
	var e Event
	s.reset(data)
	err := decodeEvent(s, &e)
	return e, err
}

// scanSeeds are the schema's examples and messages that stress the
// places where the fast path must step aside.
func scanSeeds(t testing.TB) [][]byte {
	t.Helper()
	out := SchemaExampleFiles(t)
	for _, s := range []string{
		typical,
		` ` + typical + "\n\t",
		strings.Replace(typical, `"hot"`, `"h\u006ft"`, 1),
		strings.Replace(typical, `"hot"`, "\"h\xffot\"", 1),
		strings.Replace(typical, `"web-01"`, `"wéb-01"`, 1),
		strings.Replace(typical, `"web-01"`, "\"web\x01\"", 1),
		strings.Replace(typical, `25000`, `25000.0`, 1),
		strings.Replace(typical, `25000`, `2.5e4`, 1),
		strings.Replace(typical, `25000`, `025000`, 1),
		strings.Replace(typical, `25000`, `-0`, 1),
		strings.Replace(typical, `25000`, `1.`, 1),
		strings.Replace(typical, `25000`, `1e`, 1),
		strings.Replace(typical, `0.25`, `-0.0`, 1),
		strings.Replace(typical, `0.25`, `1E+2`, 1),
		strings.Replace(typical, `0.25`, `true`, 1),
		strings.Replace(typical, `0.25`, `nul`, 1),
		strings.Replace(typical, `"max"`, `"min"`, 1),
		strings.Replace(typical, `"host":"web-01"`, `"host":"web-01","host":"x"`, 1),
		strings.Replace(typical, `,"layer"`, `,,"layer"`, 1),
		strings.Replace(typical, `}}`, `},}`, 1),
		typical + `{}`,
		typical[:len(typical)-1],
		`{"v":1,"id":"r","type":"files.replaced","time":1,"database":"d","table":"t","add":[],"remove":[{"layer":"hot","path":"date=2024-01-15/hour=14/a.1.parquet"},]}`,
		`{"v":1,"id":"r","type":"files.replaced","time":"1","database":"d","table":"t","add":[],"remove":[]}`,
		`[]`, `{`, ``, `null`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// typical is an event as a writer sends it.
const typical = `{"v":1,"id":"01HMB4X1J7Q2ZK3V9W8T6R5S4P","type":"file.created","time":1705327200123456789,` +
	`"database":"metrics","table":"cpu_usage","layer":"hot","path":"date=2024-01-15/hour=14/0a1b2c3d.1.parquet",` +
	`"size_bytes":1048576,"row_count":25000,"chunk_time":1705327200000000000,"min_time":"1705327200000000000",` +
	`"max_time":1705330799999999999,"min":{"__timestamp":1705327200000000000,"host":"web-01","usage":0.25,"up":true,"note":null},` +
	`"max":{"__timestamp":1705330799999999999,"host":"web-99","usage":99.75,"up":false,"note":null}}`

// referenceDecode is Decode as it was before the fast path: jsonSource
// alone, then the same validation.
func referenceDecode(data []byte) (Event, error) {
	e, err := decodeWith(newJSONSource(), data)
	if err == nil {
		err = validateEvent(&e, nil)
	}
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

// checkScan fails if the fast path accepts data as something other than
// what jsonSource decodes, or if Decode (fast path, then jsonSource) gives
// another verdict, event or error text than jsonSource alone.
func checkScan(t *testing.T, data []byte) {
	want, werr := referenceDecode(data)
	if fast, ferr := decodeWith(new(scanSource), data); ferr == nil {
		slow, serr := decodeWith(newJSONSource(), data)
		if serr != nil {
			t.Fatalf("the fast path accepted %q, jsonSource refuses it: %v", data, serr)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: the fast path decoded\n%+v\njsonSource\n%+v", data, fast, slow)
		}
	}
	got, gerr := Decode(JSON, data)
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		t.Fatalf("%q: Decode says %v, jsonSource alone %v", data, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: Decode gives\n%+v\njsonSource alone\n%+v", data, got, want)
	}
}

// FuzzScanSource: whatever the fast path accepts, jsonSource accepts as
// the same event, and Decode's verdict and error text are jsonSource's.
//
//	go test -run='^$' -fuzz=FuzzScanSource -fuzztime=60s ./event
func FuzzScanSource(f *testing.F) {
	for _, s := range scanSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkScan)
}

// TestScanSource runs the seeds, and checks that the events writers send
// take the fast path.
func TestScanSource(t *testing.T) {
	for _, s := range scanSeeds(t) {
		checkScan(t, s)
	}
	for _, s := range []string{typical, ` ` + typical + "\n\t", strings.Replace(typical, `"web-01"`, `"wéb-01"`, 1)} {
		if _, err := decodeWith(new(scanSource), []byte(s)); err != nil {
			t.Errorf("%s: not on the fast path: %v", s, err)
		}
	}
	var e Event
	src, data := new(scanSource), []byte(typical)
	allocs := testing.AllocsPerRun(100, func() {
		e = Event{}
		src.reset(data)
		if err := decodeEvent(src, &e); err != nil {
			t.Fatal(err)
		}
	})
	// id, database, table, layer, path and the two Stats texts.
	if allocs > 7 {
		t.Errorf("the fast path allocates %.0f times per event, want at most 7", allocs)
	}
}

// BenchmarkScanSource compares the fast path with jsonSource on a typical
// event (decodeEvent only; Decode also validates).
func BenchmarkScanSource(b *testing.B) {
	data := []byte(typical)
	for _, c := range []struct {
		name string
		src  interface {
			source
			reset([]byte)
		}
	}{{"scan", new(scanSource)}, {"jsontext", newJSONSource()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := decodeWith(c.src, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
