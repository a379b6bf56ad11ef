package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/streamindex/indexer/event"
)

// schemas/ is the source of truth (STYLE.md 15): every golden example is
// checked against the JSON Schema and through both codecs, and the schema
// and the Go rules must agree on each of them.
const (
	schemaFile  = "../schemas/event.v1.schema.json"
	examplesDir = "../schemas/examples"
)

// expectedError is the content of an "<name>.error.json" file.
type expectedError struct {
	Field          string `json:"field"`
	ReasonContains string `json:"reason_contains"`
	Why            string `json:"why"` // invalid-go-only: why the schema cannot tell
}

type example struct {
	name string
	data []byte
	want *expectedError // nil in valid/
}

// loadExamples reads every example of schemas/examples/<dir>, pairing each
// with its .error.json file outside valid/.
func loadExamples(tb testing.TB, dir string) []example {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(examplesDir, dir, "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []example
	for _, p := range paths {
		if strings.HasSuffix(p, ".error.json") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		ex := example{name: strings.TrimSuffix(filepath.Base(p), ".json"), data: data}
		if dir != "valid" {
			raw, err := os.ReadFile(strings.TrimSuffix(p, ".json") + ".error.json")
			if err != nil {
				tb.Fatalf("%s: every invalid example needs its .error.json: %v", p, err)
			}
			ex.want = new(expectedError)
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(ex.want); err != nil {
				tb.Fatalf("%s.error.json: %v", ex.name, err)
			}
			if ex.want.ReasonContains == "" {
				tb.Fatalf("%s.error.json: reason_contains is empty", ex.name)
			}
			if (dir == "invalid-go-only") != (ex.want.Why != "") {
				tb.Fatalf("%s.error.json: a why field is required in invalid-go-only/ and only there", ex.name)
			}
		}
		out = append(out, ex)
	}
	if len(out) == 0 {
		tb.Fatalf("no examples in %s", dir)
	}
	return out
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := doc.(map[string]any)["$id"].(string)
	if id == "" {
		t.Fatal("schema has no $id")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(id)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// schemaErr validates data against the schema; numbers stay exact.
func schemaErr(t *testing.T, sch *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("example is not JSON the schema can read: %v", err)
	}
	return sch.Validate(inst)
}

// checkRejected asserts that err is a *event.ValidationError on want.Field
// whose reason contains want.ReasonContains (when checkReason).
func checkRejected(t *testing.T, leg string, err error, want *expectedError, checkReason bool) {
	t.Helper()
	var ve *event.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("%s: got %v, want a *event.ValidationError on %q", leg, err, want.Field)
		return
	}
	if ve.Field != want.Field {
		t.Errorf("%s: field %q, want %q (reason: %s)", leg, ve.Field, want.Field, ve.Reason)
	}
	if checkReason && !strings.Contains(ve.Reason, want.ReasonContains) {
		t.Errorf("%s: reason %q does not contain %q", leg, ve.Reason, want.ReasonContains)
	}
}

// checkRoundTrip encodes e in both formats and decodes it back.
func checkRoundTrip(t *testing.T, e event.Event) {
	t.Helper()
	for _, f := range []event.Format{event.JSON, event.MsgPack} {
		data, err := event.Encode(f, &e)
		if err != nil {
			t.Errorf("Encode(%v): %v", f, err)
			continue
		}
		got, err := event.Decode(f, data)
		if err != nil {
			t.Errorf("Decode(%v, Encode(%v)): %v", f, f, err)
			continue
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%v round trip:\n got %+v\nwant %+v", f, got, e)
		}
	}
}

func TestSchemaValidExamples(t *testing.T) {
	sch := compileSchema(t)
	examples := loadExamples(t, "valid")
	if len(examples) < 12 {
		t.Errorf("only %d valid examples, want at least 12", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			if err := schemaErr(t, sch, ex.data); err != nil {
				t.Errorf("schema rejects a valid example: %v", err)
			}
			e, err := event.Decode(event.JSON, ex.data)
			if err != nil {
				t.Fatalf("Decode(JSON): %v", err)
			}
			checkRoundTrip(t, e)
			// The same document written generically as msgpack decodes
			// to the same event.
			mp, err := jsonToMsgpack(ex.data)
			if err != nil {
				t.Fatalf("valid examples must be representable in msgpack: %v", err)
			}
			got, err := event.Decode(event.MsgPack, mp)
			if err != nil {
				t.Fatalf("Decode(msgpack of the example): %v", err)
			}
			if !reflect.DeepEqual(got, e) {
				t.Errorf("msgpack and JSON disagree:\n msgpack %+v\n    json %+v", got, e)
			}
		})
	}
}

// TestSchemaInvalidExamples: the schema and Go both reject every example
// of invalid/, and Go names the expected field in both formats.
func TestSchemaInvalidExamples(t *testing.T) {
	sch := compileSchema(t)
	examples := loadExamples(t, "invalid")
	if len(examples) < 30 {
		t.Errorf("only %d invalid examples, want at least 30", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			if schemaErr(t, sch, ex.data) == nil {
				t.Errorf("schema accepts it, Go must not: the two disagree")
			}
			checkInvalid(t, ex.data, ex.want)
		})
	}
	for _, g := range generatedInvalid(t) {
		t.Run(g.name, func(t *testing.T) {
			if schemaErr(t, sch, g.data) == nil {
				t.Errorf("schema accepts it, Go must not: the two disagree")
			}
			checkInvalid(t, g.data, g.want)
		})
	}
}

// TestSchemaGoOnlyExamples: Go rejects every example of invalid-go-only/,
// which the schema accepts. When the schema learns to express one of these
// rules, this test fails: move the example to invalid/.
func TestSchemaGoOnlyExamples(t *testing.T) {
	sch := compileSchema(t)
	for _, ex := range append(loadExamples(t, "invalid-go-only"), generatedGoOnly(t)...) {
		t.Run(ex.name, func(t *testing.T) {
			if err := schemaErr(t, sch, ex.data); err != nil {
				t.Errorf("schema now rejects it (%v): move it to invalid/ and drop its why", err)
			}
			checkInvalid(t, ex.data, ex.want)
		})
	}
}

// checkInvalid asserts that Go rejects data as want says, and the same
// document in msgpack on the same field, where msgpack can carry it.
func checkInvalid(t *testing.T, data []byte, want *expectedError) {
	t.Helper()
	_, err := event.Decode(event.JSON, data)
	checkRejected(t, "json", err, want, true)
	mp, cerr := jsonToMsgpack(data)
	if cerr != nil {
		t.Logf("no msgpack leg: %v", cerr)
		return
	}
	_, err = event.Decode(event.MsgPack, mp)
	checkRejected(t, "msgpack", err, want, false)
}

// generatedInvalid are invalid examples too large to commit usefully.
func generatedInvalid(t *testing.T) []example {
	t.Helper()
	return []example{{
		name: "generated/remove-1001-files",
		data: replacedWith(t, 0, 1001),
		want: &expectedError{Field: "remove", ReasonContains: "more than 1000 files"},
	}}
}

// generatedGoOnly are go-only examples too large to commit usefully: the
// schema sees each array's length and the document, not the total of add
// and remove nor the size of the message in bytes.
func generatedGoOnly(t *testing.T) []example {
	t.Helper()
	return []example{
		{
			name: "generated/add-and-remove-1001-files",
			data: replacedWith(t, 1, 1000),
			want: &expectedError{Field: "add", ReasonContains: "at most 1000 files in add and remove together, not 1001",
				Why: "JSON Schema bounds each array, not the sum of two."},
		},
		{
			name: "generated/message-over-64KiB",
			data: oversizedEvent(t),
			want: &expectedError{Field: "", ReasonContains: "more than the limit of 65536",
				Why: "JSON Schema does not see the encoded size of a document."},
		},
	}
}

// replacedWith returns a compact files.replaced event with nAdd and nRemove
// files.
func replacedWith(tb testing.TB, nAdd, nRemove int) []byte {
	tb.Helper()
	var b strings.Builder
	b.WriteString(`{"v":1,"id":"big","type":"files.replaced","time":1,"database":"d","table":"t","add":[`)
	for i := range nAdd {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"layer":"h","path":"date=2024-01-01/hour=00/a%d.2.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":1}`, i)
	}
	b.WriteString(`],"remove":[`)
	for i := range nRemove {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"layer":"h","path":"date=2024-01-01/hour=00/r%d.1.parquet"}`, i)
	}
	b.WriteString(`]}`)
	if b.Len() > event.DefaultMaxMessageBytes {
		tb.Fatalf("generated event is %d bytes, over the message limit", b.Len())
	}
	return []byte(b.String())
}

// oversizedEvent returns a file.created event that breaks no rule but the
// 64 KiB message limit: 100 columns of 1000-character strings.
func oversizedEvent(tb testing.TB) []byte {
	tb.Helper()
	m := make(map[string]any)
	for i := range 100 {
		m[fmt.Sprintf("c%03d", i)] = strings.Repeat("x", 1000)
	}
	st, err := event.StatsFromMap(m)
	if err != nil {
		tb.Fatal(err)
	}
	e := validEvent()
	e.File.Min = st
	data, err := event.AppendJSON(nil, &e)
	if err != nil {
		tb.Fatal(err)
	}
	if len(data) <= event.DefaultMaxMessageBytes {
		tb.Fatalf("oversized event is only %d bytes", len(data))
	}
	return data
}

// jsonToMsgpack writes a JSON document as msgpack generically: members in
// their order, duplicates kept, each number as an integer when it is one
// and as a float64 otherwise. It fails when msgpack cannot carry the same
// meaning: invalid UTF-8, or a number whose float64 is not what the text
// says (1e400, or 1705327260000000000.5, which rounds to an integer).
func jsonToMsgpack(data []byte) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	v, err := readNode(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, fmt.Errorf("data after the document: %v", err)
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := v.encode(enc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// node is a JSON value that keeps member order and duplicate names.
type node struct {
	kind    jsontext.Kind
	text    string // string content, or number text
	members []member
	elems   []node
}

type member struct {
	name  string
	value node
}

func readNode(dec *jsontext.Decoder) (node, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return node{}, err
	}
	n := node{kind: tok.Kind()}
	switch n.kind {
	case '{':
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return node{}, err
			}
			name := tok.String() // before the next call voids tok
			v, err := readNode(dec)
			if err != nil {
				return node{}, err
			}
			n.members = append(n.members, member{name, v})
		}
		_, err = dec.ReadToken()
	case '[':
		for dec.PeekKind() != ']' {
			v, err := readNode(dec)
			if err != nil {
				return node{}, err
			}
			n.elems = append(n.elems, v)
		}
		_, err = dec.ReadToken()
	case '"':
		n.text = tok.String()
	case '0':
		n.text = tok.String()
	}
	return n, err
}

func (n node) encode(enc *msgpack.Encoder) error {
	switch n.kind {
	case '{':
		if err := enc.EncodeMapLen(len(n.members)); err != nil {
			return err
		}
		for _, m := range n.members {
			if err := enc.EncodeString(m.name); err != nil {
				return err
			}
			if err := m.value.encode(enc); err != nil {
				return err
			}
		}
		return nil
	case '[':
		if err := enc.EncodeArrayLen(len(n.elems)); err != nil {
			return err
		}
		for _, e := range n.elems {
			if err := e.encode(enc); err != nil {
				return err
			}
		}
		return nil
	case '"':
		return enc.EncodeString(n.text)
	case 'n':
		return enc.EncodeNil()
	case 't', 'f':
		return enc.EncodeBool(n.kind == 't')
	}
	if !strings.ContainsAny(n.text, ".eE") {
		if v, err := strconv.ParseInt(n.text, 10, 64); err == nil {
			return enc.EncodeInt(v)
		}
		if v, err := strconv.ParseUint(n.text, 10, 64); err == nil {
			return enc.EncodeUint(v)
		}
	}
	f, err := strconv.ParseFloat(n.text, 64)
	if err != nil {
		return fmt.Errorf("number %s has no float64", n.text)
	}
	// Integers below 2^64 must be exact (they may be counts or times, or
	// exact statistics); larger numbers and fractions are float64 to Go
	// anyway, but a fraction must stay one.
	r, _ := new(big.Rat).SetString(n.text)
	fr := new(big.Rat).SetFloat64(f)
	exact := r.IsInt() && new(big.Int).Abs(r.Num()).BitLen() <= 64
	if r.IsInt() != fr.IsInt() || exact && r.Cmp(fr) != 0 {
		return fmt.Errorf("number %s is %v as a float64", n.text, f)
	}
	return enc.EncodeFloat64(f)
}

// TestSchemaAgreesWithGo compares the schema with Go on generated values of
// the fields whose rules are patterns, the leap-year path pattern above
// all: for each value, both accept or both reject.
func TestSchemaAgreesWithGo(t *testing.T) {
	sch := compileSchema(t)
	var values []kv // field, raw JSON value
	add := func(field string, ss ...string) {
		for _, s := range ss {
			values = append(values, kv{field, q(s)})
		}
	}
	// Every date of years that matter to the leap rule, with impossible
	// months and days around them; every hour 00-29.
	for _, y := range []string{"0000", "0004", "0100", "0400", "1600", "1700", "1900", "1968", "1969", "1970", "1972", "1996", "2000", "2023", "2024", "2100", "2400", "9996", "9999"} {
		for m := 0; m <= 13; m++ {
			for d := 0; d <= 32; d++ {
				add("path", fmt.Sprintf("date=%s-%02d-%02d/hour=14/a.1.parquet", y, m, d))
			}
		}
	}
	for h := range 30 {
		add("path", fmt.Sprintf("date=2024-01-15/hour=%02d/a.1.parquet", h))
	}
	for _, n := range []string{"0", "1", "01", "9", "10", "999999", "1000000", "0001", "", "-1", "+1", "1a"} {
		add("path", "date=2024-01-15/hour=14/a."+n+".parquet")
	}
	for _, name := range []string{"", "a", "-", "_", "A-z_9", "a.b", "a b", strings.Repeat("x", 128), strings.Repeat("x", 129), "é"} {
		add("path", "date=2024-01-15/hour=14/"+name+".1.parquet")
	}
	// Names and ids: every printable ASCII character first, inside, and
	// at the length limit.
	for c := byte(0x20); c < 0x7f; c++ {
		for _, field := range []string{"database", "table", "layer", "writer_id", "id"} {
			add(field, string(c), "a"+string(c), string(c)+"a", strings.Repeat("a", 127)+string(c))
		}
	}
	for _, field := range []string{"database", "writer_id", "id"} {
		add(field, "", strings.Repeat("a", 128), strings.Repeat("a", 129), "é", "a\u00e9", "a\n")
	}
	// Times as strings and numbers.
	for _, field := range []string{"time", "chunk_time"} {
		add(field, "0", "00", "1", "01", "9", "8999999999999999999", "9000000000000000000", "1000000000000000000",
			"9223372036854775807", "9223372036854775808", "99999999999999999999", "-0", "+0", "1.0", "1e3", " 1", "1 ", "")
		for _, raw := range []string{"0", "-0", "1.0", "1.5", "1e3", "1E-3", "-1", "8999999999999999999", "9e18", "9.000000000000000001e18", "8.999999999999999999e18", "null", "true"} {
			values = append(values, kv{field, raw})
		}
	}
	for _, raw := range []string{"0", "9007199254740991", "9007199254740992", "9.007199254740991e15", "-1", "1.5", "2.0", "1e999", "1e-999"} {
		values = append(values, kv{"size_bytes", raw})
	}
	accepted := make(map[string]int)
	for _, v := range values {
		doc := created(v.name, v.raw)
		if v.name == "chunk_time" || v.name == "time" {
			doc = created(v.name, v.raw, "min_time", "0", "max_time", "0")
		}
		_, goErr := event.Decode(event.JSON, []byte(doc))
		schErr := schemaErr(t, sch, []byte(doc))
		if (goErr == nil) != (schErr == nil) {
			t.Errorf("%s = %s: Go says %v; schema says %v", v.name, v.raw, goErr, schErr)
		}
		if goErr == nil {
			accepted[v.name]++
		}
	}
	// From 1970 on: 6 leap years of 366 days and 4 others of 365, 24
	// hours, 4 good N and 5 good names: proof that the agreement is not
	// both rejecting.
	if want := 6*366 + 4*365 + 24 + 4 + 5; accepted["path"] != want {
		t.Errorf("%d paths accepted, want %d", accepted["path"], want)
	}
	t.Logf("%d values compared; accepted per field: %v", len(values), accepted)
}

// TestSchemaStricterThanGo pins the one known case where the schema rejects
// what Go accepts: a statistic above MaxFloat64 by less than half a unit in
// the last place, which Go reads as MaxFloat64 and the schema compares
// exactly with its maximum. See schemas/README.md.
func TestSchemaStricterThanGo(t *testing.T) {
	sch := compileSchema(t)
	doc := []byte(created("max", `{"x":1.7976931348623158e308}`))
	e, err := event.Decode(event.JSON, doc)
	if err != nil {
		t.Fatalf("Go rejects it: %v", err)
	}
	if got := e.File.Max.String(); got != `{"x":1.7976931348623157e+308}` {
		t.Errorf("Go reads %s", got)
	}
	if schemaErr(t, sch, doc) == nil {
		t.Error("the schema accepts it now: update schemas/README.md")
	}
}
