package event_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/streamindex/indexer/event"
)

// validEvent returns a valid file.created event.
func validEvent() event.Event {
	return event.Event{
		ID: "01HMB4X1J7Q2ZK3V9W8T6R5S4P", Type: event.FileCreated, Time: 1705327260000000000,
		Database: "metrics", Table: "cpu_usage",
		File: event.File{
			Layer: "hot", Path: "date=2024-01-15/hour=14/0a1b2c3d.1.parquet",
			SizeBytes: 1048576, RowCount: 25000, ChunkTime: 1705327200000000000,
			MinTime: 1705327200000000000, MaxTime: 1705330799999999999,
		},
	}
}

// kv is one member of a JSON object given as raw JSON text.
type kv struct{ name, raw string }

var (
	baseEvent = []kv{
		{"v", "1"}, {"id", `"01HMB4X1J7Q2ZK3V9W8T6R5S4P"`}, {"type", `"file.created"`},
		{"time", "1705327260000000000"}, {"database", `"metrics"`}, {"table", `"cpu_usage"`},
	}
	baseFile = []kv{
		{"layer", `"hot"`}, {"path", `"date=2024-01-15/hour=14/a.1.parquet"`},
		{"size_bytes", "1048576"}, {"row_count", "25000"}, {"chunk_time", "1705327200000000000"},
		{"min_time", "1705327200000000000"}, {"max_time", "1705330799999999999"},
	}
	baseRemoved = []kv{{"layer", `"hot"`}, {"path", `"date=2024-01-15/hour=14/b.1.parquet"`}}
)

// object writes members as a JSON object after applying overrides, given
// as name, raw pairs: a raw of "-" deletes the member, a new name is
// appended.
func object(base []kv, overrides ...string) string {
	members := append([]kv(nil), base...)
	for i := 0; i+1 < len(overrides); i += 2 {
		name, raw := overrides[i], overrides[i+1]
		found := false
		for j := range members {
			if members[j].name == name {
				members[j].raw, found = raw, true
			}
		}
		if !found {
			members = append(members, kv{name, raw})
		}
	}
	var b strings.Builder
	b.WriteByte('{')
	for _, m := range members {
		if m.raw == "-" {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(m.name))
		b.WriteByte(':')
		b.WriteString(m.raw)
	}
	b.WriteByte('}')
	return b.String()
}

// created returns a file.created event with overrides (see object).
func created(overrides ...string) string {
	return object(append(append([]kv(nil), baseEvent...), baseFile...), overrides...)
}

// deleted returns a file.deleted event with only layer and path.
func deleted(overrides ...string) string {
	return object(append(append([]kv(nil), baseEvent...), baseRemoved...), append([]string{"type", `"file.deleted"`}, overrides...)...)
}

// replaced returns a files.replaced event with one file in add and one in
// remove.
func replaced(overrides ...string) string {
	return object(baseEvent, append([]string{"type", `"files.replaced"`,
		"add", "[" + object(baseFile) + "]", "remove", "[" + object(baseRemoved) + "]"}, overrides...)...)
}

// q returns s as a JSON string.
func q(s string) string {
	b, err := jsontext.AppendQuote(nil, s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// files returns a JSON array of n copies of the file object o.
func files(n int, o string) string {
	return "[" + strings.TrimSuffix(strings.Repeat(o+",", n), ",") + "]"
}

func nested(open, close string, depth int) string {
	return strings.Repeat(open, depth) + strings.Repeat(close, depth)
}

// decodeCase is one message and its expected outcome: ok, or a
// ValidationError on field whose reason contains reason.
type decodeCase struct {
	name   string
	data   string
	ok     bool
	field  string
	reason string
}

func accept(name, data string) decodeCase { return decodeCase{name: name, data: data, ok: true} }
func reject(name, data, field, reason string) decodeCase {
	return decodeCase{name: name, data: data, field: field, reason: reason}
}

const (
	nameReason = "1 to 128 characters of A-Z a-z 0-9 _ . -"
	pathReason = "must be date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet"
	timeReason = "without sign, point or leading zeros"
	sizeReason = "must be an integer from 0 to 9007199254740991"
	luaString  = `]]..redis.call('FLUSHALL')--`
)

func nameCases(field string) []decodeCase {
	ev := created
	if field == "database" || field == "table" {
		ev = func(o ...string) string { return created(o...) }
	}
	cs := []decodeCase{
		accept(field+"/letter", ev(field, q("a"))),
		accept(field+"/digit", ev(field, q("0"))),
		accept(field+"/underscore", ev(field, q("_"))),
		accept(field+"/leading underscore", ev(field, q("_a.b-c"))),
		accept(field+"/128 chars", ev(field, q(strings.Repeat("n", 128)))),
		reject(field+"/129 chars", ev(field, q(strings.Repeat("n", 129))), field, nameReason),
		reject(field+"/leading dot", ev(field, q(".a")), field, "starting with a letter, digit or _"),
		reject(field+"/leading dash", ev(field, q("-a")), field, "starting with a letter, digit or _"),
		reject(field+"/colon", ev(field, q("a:b")), field, nameReason),
		reject(field+"/open brace", ev(field, q("a{b")), field, nameReason),
		reject(field+"/close brace", ev(field, q("a}b")), field, nameReason),
		reject(field+"/slash", ev(field, q("a/b")), field, nameReason),
		reject(field+"/space", ev(field, q("a b")), field, nameReason),
		reject(field+"/NUL", ev(field, q("a\x00")), field, nameReason),
		reject(field+"/non-ASCII", ev(field, q("é")), field, nameReason),
		reject(field+"/lua", ev(field, q(luaString)), field, nameReason),
		reject(field+"/number", ev(field, "1"), field, "must be a string, not a number"),
		reject(field+"/null", ev(field, "null"), field, "must be a string, not null"),
	}
	if field == "writer_id" {
		cs = append(cs, accept(field+"/empty", ev(field, `""`)))
	} else {
		cs = append(cs, reject(field+"/empty", ev(field, `""`), field, nameReason))
	}
	return cs
}

func pathCases() []decodeCase {
	p := func(name, path string) decodeCase { return accept("path/"+name, created("path", q(path))) }
	bad := func(name, path, reason string) decodeCase {
		return reject("path/"+name, created("path", q(path)), "path", reason)
	}
	return []decodeCase{
		p("plain", "date=2024-01-15/hour=14/a.1.parquet"),
		p("leap day", "date=2024-02-29/hour=00/a.1.parquet"),
		p("leap day 2000", "date=2000-02-29/hour=00/a.1.parquet"),
		p("1970-01-01", "date=1970-01-01/hour=00/a.1.parquet"),
		p("leap day 1972", "date=1972-02-29/hour=00/a.1.parquet"),
		bad("leap day year 0", "date=0000-02-29/hour=00/a.1.parquet", "before 1970"),
		bad("1969-12-31", "date=1969-12-31/hour=23/a.1.parquet", "date 1969-12-31 is before 1970"),
		p("leap day 9996", "date=9996-02-29/hour=00/a.1.parquet"),
		p("hour 23", "date=2023-12-31/hour=23/a.1.parquet"),
		p("name charset", "date=2024-01-15/hour=14/aZ09_-.1.parquet"),
		p("name 128", "date=2024-01-15/hour=14/"+strings.Repeat("n", 128)+".1.parquet"),
		p("N 999999", "date=2024-01-15/hour=14/a.999999.parquet"),
		bad("2023-02-29", "date=2023-02-29/hour=00/a.1.parquet", "date 2023-02-29 is not a real calendar date"),
		bad("1900-02-29", "date=1900-02-29/hour=00/a.1.parquet", "not a real calendar date"),
		bad("2100-02-29", "date=2100-02-29/hour=00/a.1.parquet", "not a real calendar date"),
		bad("02-30", "date=2024-02-30/hour=00/a.1.parquet", "not a real calendar date"),
		bad("04-31", "date=2024-04-31/hour=00/a.1.parquet", "not a real calendar date"),
		bad("month 00", "date=2024-00-10/hour=00/a.1.parquet", "not a real calendar date"),
		bad("month 13", "date=2024-13-10/hour=00/a.1.parquet", "not a real calendar date"),
		bad("day 00", "date=2024-01-00/hour=00/a.1.parquet", "not a real calendar date"),
		bad("day 32", "date=2024-01-32/hour=00/a.1.parquet", "not a real calendar date"),
		bad("hour 24", "date=2024-01-15/hour=24/a.1.parquet", "hour 24 is not 00-23"),
		bad("hour 99", "date=2024-01-15/hour=99/a.1.parquet", "hour 99 is not 00-23"),
		bad("one-digit hour", "date=2024-01-15/hour=4/a.1.parquet", pathReason),
		bad("one-digit month", "date=2024-1-15/hour=14/a.1.parquet", pathReason),
		bad("N 0", "date=2024-01-15/hour=14/a.0.parquet", pathReason),
		bad("N leading zero", "date=2024-01-15/hour=14/a.01.parquet", pathReason),
		bad("N 7 digits", "date=2024-01-15/hour=14/a.1000000.parquet", pathReason),
		bad("N negative", "date=2024-01-15/hour=14/a.-1.parquet", pathReason),
		bad("no N", "date=2024-01-15/hour=14/a.parquet", pathReason),
		bad("empty name", "date=2024-01-15/hour=14/.1.parquet", pathReason),
		bad("name with dot", "date=2024-01-15/hour=14/a.b.1.parquet", pathReason),
		bad("name with space", "date=2024-01-15/hour=14/a b.1.parquet", pathReason),
		bad("name 129", "date=2024-01-15/hour=14/"+strings.Repeat("n", 129)+".1.parquet", pathReason),
		bad("upper-case extension", "date=2024-01-15/hour=14/a.1.PARQUET", pathReason),
		bad("extra suffix", "date=2024-01-15/hour=14/a.1.parquet.tmp", pathReason),
		bad("sub-directory", "date=2024-01-15/hour=14/x/a.1.parquet", pathReason),
		bad("traversal", "date=2024-01-15/hour=14/../a.1.parquet", pathReason),
		bad("leading slash", "/date=2024-01-15/hour=14/a.1.parquet", pathReason),
		bad("backslash", `date=2024-01-15\hour=14\a.1.parquet`, pathReason),
		bad("Date=", "Date=2024-01-15/hour=14/a.1.parquet", pathReason),
		bad("directory only", "date=2024-01-15/hour=14/", pathReason),
		bad("short", "date=2024-01-15/hour=14", pathReason),
		bad("empty", "", pathReason),
		bad("trailing newline", "date=2024-01-15/hour=14/a.1.parquet\n", pathReason),
		bad("full-width digits", "date=２０２４-01-15/hour=14/a.1.parquet", pathReason),
		bad("5 KB", "date=2024-01-15/hour=14/"+strings.Repeat("n", 5000)+".1.parquet", pathReason),
		reject("path/number", created("path", "1"), "path", "must be a string, not a number"),
	}
}

func numberCases() []decodeCase {
	var cs []decodeCase
	for _, field := range []string{"size_bytes", "row_count"} {
		ok := func(name, raw string) decodeCase { return accept(field+"/"+name, created(field, raw)) }
		bad := func(name, raw, reason string) decodeCase {
			return reject(field+"/"+name, created(field, raw), field, reason)
		}
		cs = append(cs,
			ok("0", "0"), ok("-0", "-0"),
			ok("2^53-1", "9007199254740991"),
			ok("2^53-1 exponent form", "9.007199254740991e15"),
			ok("1.0", "1.0"), ok("1e3", "1e3"), ok("1E+3", "1E+3"), ok("0.5e1", "0.5e1"), ok("10e-1", "10e-1"),
			ok("0e999999", "0e999999"),
			bad("2^53", "9007199254740992", sizeReason),
			bad("-1", "-1", sizeReason),
			bad("max int64", "9223372036854775807", sizeReason),
			bad("min int64", "-9223372036854775808", sizeReason),
			bad("2^63", "9223372036854775808", "integer is out of range"),
			bad("1.5", "1.5", "must be an integer, not a fraction"),
			bad("0.1", "0.1", "must be an integer, not a fraction"),
			bad("1e-999999", "1e-999999", "must be an integer, not a fraction"),
			bad("1e999999", "1e999999", "integer is out of range"),
			bad("1e19", "1e19", "integer is out of range"),
			bad("string", `"1"`, "must be an integer, not a string"),
			bad("null", "null", "must be an integer, not null"),
			bad("bool", "true", "must be an integer, not a boolean"),
			bad("array", "[1]", "must be an integer, not an array"),
		)
	}
	for _, field := range []string{"time", "chunk_time", "min_time", "max_time"} {
		// Keep min_time <= max_time while testing one of them.
		ev := func(raw string) string {
			switch field {
			case "min_time":
				return created(field, raw, "max_time", `"8999999999999999999"`)
			case "max_time":
				return created(field, raw, "min_time", "0")
			}
			return created(field, raw)
		}
		ok := func(name, raw string) decodeCase { return accept(field+"/"+name, ev(raw)) }
		bad := func(name, raw, reason string) decodeCase { return reject(field+"/"+name, ev(raw), field, reason) }
		cs = append(cs,
			ok("0", "0"), ok(`"0"`, `"0"`), ok("1.0", "1.0"), ok("exponent", "1.7e18"),
			ok("max", "8999999999999999999"), ok(`"max"`, `"8999999999999999999"`),
			ok("decimal string", `"1705327200123456789"`),
			bad("-1", "-1", "must be Unix nanoseconds from 0 to 8999999999999999999"),
			bad("max+1", "9000000000000000000", "must be Unix nanoseconds from 0 to"),
			bad(`"max+1"`, `"9000000000000000000"`, "must be Unix nanoseconds from 0 to"),
			bad("max int64", "9223372036854775807", "must be Unix nanoseconds from 0 to"),
			bad("2^63", "9223372036854775808", "integer is out of range"),
			bad(`"2^63"`, `"9223372036854775808"`, timeReason),
			bad("20 digits", `"10000000000000000000"`, timeReason),
			bad("1.5", "1.5", "not a fraction"),
			bad(`"00"`, `"00"`, timeReason),
			bad("leading zero", `"01705327200000000000"`, timeReason),
			bad("plus sign", `"+1705327200000000000"`, timeReason),
			bad("minus sign", `"-1"`, timeReason),
			bad("point", `"1705327200000000000.0"`, timeReason),
			bad("exponent string", `"1e18"`, timeReason),
			bad("space", `" 1"`, timeReason),
			bad("empty string", `""`, timeReason),
			bad("full-width digit", `"１"`, timeReason),
			bad("null", "null", "must be Unix nanoseconds as an integer or a decimal string, not null"),
			bad("object", "{}", "not an object"),
		)
	}
	return cs
}

func structureCases() []decodeCase {
	return []decodeCase{
		accept("created", created()),
		accept("deleted minimal", deleted()),
		accept("deleted full", deleted("writer_id", `"w"`, "size_bytes", "1", "row_count", "2", "chunk_time", "3", "min_time", "4", "max_time", "5", "min", `{"a":1}`, "max", "null")),
		accept("replaced", replaced()),
		accept("replaced add only", replaced("remove", "[]")),
		accept("replaced remove only", replaced("add", "[]")),
		accept("v 1.0", created("v", "1.0")),
		accept("members in any order", `{"max_time":2,"min_time":1,"chunk_time":0,"row_count":0,"size_bytes":0,"path":"date=2024-01-15/hour=14/a.1.parquet","layer":"hot","table":"t","database":"d","time":0,"type":"file.created","id":"x","v":1}`),
		accept("whitespace", " \t\n"+strings.ReplaceAll(created(), ",", " ,\n ")+"\n"),
		reject("v 2", created("v", "2"), "v", "unsupported schema version 2: this indexer reads version 1"),
		reject("v 0", created("v", "0"), "v", "unsupported schema version 0"),
		reject("v missing", created("v", "-"), "v", "required field is missing"),
		reject("v string", created("v", `"1"`), "v", "must be an integer, not a string"),
		reject("id 129", created("id", q(strings.Repeat("i", 129))), "id", "must be 1 to 128 characters"),
		accept("id 128", created("id", q(strings.Repeat("i", 128)))),
		accept("id with colon", created("id", q("urn:uuid:1b4e28ba-2fa1"))),
		reject("id leading underscore", created("id", q("_a")), "id", "starting with a letter or digit"),
		reject("id lua", created("id", q(luaString)), "id", "must be 1 to 128 characters"),
		reject("type unknown", created("type", `"file.updated"`), "type", `unknown type "file.updated"`),
		reject("type case", created("type", `"File.Created"`), "type", "unknown type"),
		reject("type missing", created("type", "-"), "type", "required field is missing"),
		reject("unknown field", created("extra", "1"), "extra", "unknown field"),
		reject("unknown field in file", replaced("remove", "["+object(baseRemoved, "x", "1")+"]"), "remove[0].x", "unknown field"),
		reject("duplicate field", created()[:len(created())-1]+`,"id":"b"}`, "id", "duplicate field"),
		reject("duplicate file field", replaced("add", `[{"layer":"hot","layer":"hot"}]`), "add[0].layer", "duplicate field"),
		reject("file fields on replaced", replaced("path", q("date=2024-01-15/hour=14/a.1.parquet")), "path", "not at the top level"),
		reject("null file field on replaced", replaced("max", "null"), "max", "not at the top level"),
		reject("add on created", created("add", "[]"), "add", "only files.replaced events carry add and remove"),
		reject("remove on deleted", deleted("remove", "[]"), "remove", "only files.replaced events carry add and remove"),
		reject("created missing max_time", created("max_time", "-"), "max_time", "required field of file.created is missing"),
		reject("deleted missing layer", deleted("layer", "-"), "layer", "required field of file.deleted is missing"),
		reject("replaced missing add", replaced("add", "-"), "add", "required field of files.replaced is missing"),
		reject("replaced empty", replaced("add", "[]", "remove", "[]"), "add", "needs at least one file"),
		reject("add item missing row_count", replaced("add", "["+object(baseFile, "row_count", "-")+"]"), "add[0].row_count", "required field is missing"),
		reject("remove item missing path", replaced("remove", "["+object(baseRemoved)+","+object(baseRemoved, "path", "-")+"]"), "remove[1].path", "required field is missing"),
		reject("add item bad size", replaced("add", "["+object(baseFile, "size_bytes", "-1")+"]"), "add[0].size_bytes", sizeReason),
		reject("remove item bad path", replaced("remove", "["+object(baseRemoved, "path", `"x"`)+"]"), "remove[0].path", pathReason),
		reject("add not an array", replaced("add", "{}"), "add", "must be an array, not an object"),
		reject("add item not an object", replaced("add", "[1]"), "add[0]", "must be an object, not a number"),
		reject("1001 files in add", replaced("add", files(1001, object(baseFile)), "remove", "[]"), "add", "more than 1000 files"),
		reject("1001 files in remove", replaced("add", "[]", "remove", files(1001, object(baseRemoved))), "remove", "more than 1000 files"),
		accept("1000 files", replaced("add", "[]", "remove", files(1000, object(baseRemoved)))),
		reject("1001 files in all", replaced("add", files(1, object(baseFile)), "remove", files(1000, object(baseRemoved))), "add", "at most 1000 files in add and remove together, not 1001"),
		reject("min_time after max_time", created("min_time", "2", "max_time", "1"), "min_time", "must not be after max_time (2 > 1)"),
		accept("min_time equals max_time", created("min_time", "1", "max_time", "1")),
		accept("deleted min_time without max_time", deleted("min_time", "5")),
		reject("deleted min_time after max_time", deleted("min_time", "5", "max_time", "4"), "min_time", "must not be after max_time"),
		reject("add min_time after max_time", replaced("add", "["+object(baseFile, "min_time", "5", "max_time", "4")+"]"), "add[0].min_time", "must not be after max_time"),
		reject("top-level array", "[]", "", "must be an object, not an array"),
		reject("top-level string", `"x"`, "", "must be an object, not a string"),
		reject("empty input", "", "", "unexpected end of input"),
		reject("whitespace only", "  \n", "", "unexpected end of input"),
		reject("trailing object", created()+" {}", "", "data after the event object"),
		reject("trailing garbage", created()+"x", "", "invalid JSON"),
		reject("truncated", created()[:40], "", "unexpected end of input"),
		reject("10000 nested arrays", nested("[", "]", 10000), "", "must be an object, not an array"),
		reject("10000 nested arrays in a column", created("min", `{"a":`+nested("[", "]", 10000)+`}`), "min.a", "not an array"),
		reject("10000 nested objects in a column", created("min", `{"a":`+strings.Repeat(`{"a":`, 9999)+"1"+strings.Repeat("}", 10000)), "min.a", "not an object"),
		reject("10000 nested arrays in add", replaced("add", nested("[", "]", 10000)), "add[0]", "must be an object, not an array"),
		reject("10000 nested arrays in an unknown field", created("x", nested("[", "]", 10000)), "x", "unknown field"),
		reject("lua in table", created("table", q(luaString)), "table", nameReason),
	}
}

func statsCases() []decodeCase {
	cols := func(n int) string {
		var b strings.Builder
		b.WriteByte('{')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"c%d":%d`, i, i)
		}
		b.WriteByte('}')
		return b.String()
	}
	long := strings.Repeat("c", 129)
	return []decodeCase{
		accept("stats scalars", created("min", `{"s":"x","i":-5,"f":1.5,"b":true,"n":null}`, "max", `{"s":"y"}`)),
		accept("stats null", created("min", "null", "max", "null")),
		accept("stats empty", created("min", "{}")),
		accept("stats 256 columns", created("min", cols(256))),
		accept("stats column name 128", created("min", `{"`+strings.Repeat("c", 128)+`":1}`)),
		accept("stats column name 128 runes", created("min", `{"`+strings.Repeat("é", 128)+`":1}`)),
		accept("stats string 1024 runes", created("min", `{"s":"`+strings.Repeat("é", 1024)+`"}`)),
		accept("stats lua string", created("min", `{"s":`+q(luaString)+`}`)),
		reject("stats 257 columns", created("min", cols(257)), "min", "more than 256 columns"),
		reject("stats column name 129", created("max", `{"`+long+`":1}`), "max."+long, "column names must be 1 to 128 characters"),
		reject("stats column name empty", created("min", `{"":1}`), "min", "column names must be 1 to 128 characters"),
		reject("stats duplicate column", created("min", `{"a":1,"a":2}`), "min.a", "duplicate column"),
		reject("stats string 1025 runes", created("min", `{"s":"`+strings.Repeat("é", 1025)+`"}`), "min.s", "limited to 1024 characters"),
		reject("stats nested object", created("min", `{"a":{"b":1}}`), "min.a", "must be a string, number, boolean or null, not an object"),
		reject("stats nested array", created("max", `{"a":[1]}`), "max.a", "not an array"),
		reject("stats not an object", created("min", "[]"), "min", "must be an object, not an array"),
		reject("stats number", created("min", "1"), "min", "must be an object, not a number"),
		reject("stats 1e309", created("min", `{"x":1e309}`), "min.x", "out of the range of a 64-bit float"),
		reject("stats in add", replaced("add", "["+object(baseFile, "max", `{"x":[]}`)+"]"), "add[0].max.x", "not an array"),
	}
}

func allDecodeCases() []decodeCase {
	var cs []decodeCase
	for _, f := range []string{"database", "table", "layer", "writer_id"} {
		cs = append(cs, nameCases(f)...)
	}
	cs = append(cs, pathCases()...)
	cs = append(cs, numberCases()...)
	cs = append(cs, structureCases()...)
	return append(cs, statsCases()...)
}

// bigDecoder lifts the size limit so that the 1000-file cases fit.
var bigDecoder = func() *event.Decoder {
	d, err := event.NewDecoder(event.Config{MaxMessageBytes: 1 << 20})
	if err != nil {
		panic(err)
	}
	return d
}()

func checkCase(t *testing.T, f event.Format, data []byte, c decodeCase, checkReason bool) {
	t.Helper()
	e, err := bigDecoder.Decode(f, data)
	if c.ok {
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		checkRoundTrip(t, e)
		return
	}
	if err == nil {
		t.Fatalf("%v: accepted, want an error on %q", f, c.field)
	}
	if !reflect.DeepEqual(e, event.Event{}) {
		t.Errorf("%v: a failed Decode returned a non-zero Event %+v", f, e)
	}
	checkRejected(t, f.String(), err, &expectedError{Field: c.field, ReasonContains: c.reason}, checkReason)
	if !strings.HasPrefix(err.Error(), "invalid event: ") {
		t.Errorf("%v: error %q lacks the invalid event: prefix", f, err)
	}
}

// TestDecode runs every case through JSON and, converted, through msgpack.
// The reason is checked for JSON only: msgpack words syntax errors its
// own way.
func TestDecode(t *testing.T) {
	for _, c := range allDecodeCases() {
		t.Run(c.name, func(t *testing.T) {
			checkCase(t, event.JSON, []byte(c.data), c, true)
			mp, err := jsonToMsgpack([]byte(c.data))
			if err != nil {
				return // not a JSON document (syntax cases) or no msgpack form
			}
			checkCase(t, event.MsgPack, mp, c, false)
		})
	}
}

// mpMap is an ordered msgpack map for building msgpack-only cases.
type mpMap []mpKV

type mpKV struct {
	key   any // usually a string
	value any
}

func writeMsgpack(enc *msgpack.Encoder, v any) error {
	switch v := v.(type) {
	case mpMap:
		if err := enc.EncodeMapLen(len(v)); err != nil {
			return err
		}
		for _, m := range v {
			if err := writeMsgpack(enc, m.key); err != nil {
				return err
			}
			if err := writeMsgpack(enc, m.value); err != nil {
				return err
			}
		}
		return nil
	case []any:
		if err := enc.EncodeArrayLen(len(v)); err != nil {
			return err
		}
		for _, e := range v {
			if err := writeMsgpack(enc, e); err != nil {
				return err
			}
		}
		return nil
	case msgpack.RawMessage:
		return enc.Encode(v)
	}
	return enc.Encode(v)
}

// mpEvent returns a msgpack file.created event with overrides given as
// name, value pairs (value deleteMember deletes).
func mpEvent(t *testing.T, overrides ...any) []byte {
	t.Helper()
	m := mpMap{
		{"v", 1}, {"id", "01HMB4X1J7Q2ZK3V9W8T6R5S4P"}, {"type", "file.created"},
		{"time", int64(1705327260000000000)}, {"database", "metrics"}, {"table", "cpu_usage"},
		{"layer", "hot"}, {"path", "date=2024-01-15/hour=14/a.1.parquet"},
		{"size_bytes", 1048576}, {"row_count", 25000}, {"chunk_time", int64(1705327200000000000)},
		{"min_time", int64(1705327200000000000)}, {"max_time", int64(1705330799999999999)},
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		name, v := overrides[i].(string), overrides[i+1]
		found := false
		for j := range m {
			if m[j].key == name {
				m[j].value, found = v, true
			}
		}
		if !found {
			m = append(m, mpKV{name, v})
		}
	}
	kept := m[:0]
	for _, e := range m {
		if e.value != deleteMember {
			kept = append(kept, e)
		}
	}
	var buf bytes.Buffer
	if err := writeMsgpack(msgpack.NewEncoder(&buf), kept); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type deleteMarker struct{}

var deleteMember = deleteMarker{}

// TestDecodeMsgpack covers what JSON cannot say: kinds msgpack has and
// JSON lacks, NaN, and msgpack-level corruption.
func TestDecodeMsgpack(t *testing.T) {
	ext := msgpack.RawMessage{0xd4, 0x01, 0x00}                                                // fixext1
	deepArrays := msgpack.RawMessage(append(bytes.Repeat([]byte{0x91}, 10000), 0xc0))          // [[[…nil…]]]
	deepMaps := msgpack.RawMessage(append(bytes.Repeat([]byte{0x81, 0xa1, 'a'}, 10000), 0xc0)) // {"a":{"a":…nil…}}
	cases := []struct {
		name   string
		data   []byte
		ok     bool
		field  string
		reason string
	}{
		{name: "valid", data: mpEvent(t), ok: true},
		{name: "float 1.0 as size", data: mpEvent(t, "size_bytes", 1.0), ok: true},
		{name: "float32 1.0 as size", data: mpEvent(t, "size_bytes", float32(1)), ok: true},
		{name: "uint64 time", data: mpEvent(t, "time", uint64(5)), ok: true},
		{name: "float32 stats", data: mpEvent(t, "min", mpMap{{"f", float32(0.1)}}), ok: true},
		{name: "uint64 max stats", data: mpEvent(t, "min", mpMap{{"u", uint64(math.MaxUint64)}}), ok: true},
		{name: "bin id", data: mpEvent(t, "id", []byte("abc")), field: "id", reason: "must be a string, not binary data"},
		{name: "bin path", data: mpEvent(t, "path", []byte("date=2024-01-15/hour=14/a.1.parquet")), field: "path", reason: "must be a string, not binary data"},
		{name: "bin stats value", data: mpEvent(t, "min", mpMap{{"a", []byte("x")}}), field: "min.a", reason: "not binary data"},
		{name: "bin member name", data: mpEvent(t, "min", mpMap{{[]byte("a"), 1}}), field: "min", reason: "member name must be a string, not binary data"},
		{name: "int member name", data: func() []byte {
			var buf bytes.Buffer
			if err := writeMsgpack(msgpack.NewEncoder(&buf), mpMap{{1, 1}}); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}(), field: "", reason: "member name must be a string, not a number"},
		{name: "nil id", data: mpEvent(t, "id", nil), field: "id", reason: "must be a string, not null"},
		{name: "nil database", data: mpEvent(t, "database", nil), field: "database", reason: "must be a string, not null"},
		{name: "nil size", data: mpEvent(t, "size_bytes", nil), field: "size_bytes", reason: "must be an integer, not null"},
		{name: "nil time", data: mpEvent(t, "time", nil), field: "time", reason: "must be an integer, not null"},
		{name: "bool time", data: mpEvent(t, "time", true), field: "time", reason: "must be an integer, not a boolean"},
		{name: "ext time", data: mpEvent(t, "time", ext), field: "time", reason: "not an extension value"},
		{name: "ext stats value", data: mpEvent(t, "min", mpMap{{"a", ext}}), field: "min.a", reason: "not an extension value"},
		{name: "NaN stats", data: mpEvent(t, "min", mpMap{{"a", math.NaN()}}), field: "min.a", reason: "number must be finite"},
		{name: "float32 NaN stats", data: mpEvent(t, "max", mpMap{{"a", float32(math.NaN())}}), field: "max.a", reason: "number must be finite"},
		{name: "Inf stats", data: mpEvent(t, "min", mpMap{{"a", math.Inf(-1)}}), field: "min.a", reason: "number must be finite"},
		{name: "NaN size", data: mpEvent(t, "size_bytes", math.NaN()), field: "size_bytes", reason: "must be an integer"},
		{name: "Inf time", data: mpEvent(t, "time", math.Inf(1)), field: "time", reason: "must be an integer"},
		{name: "float 1.5 size", data: mpEvent(t, "size_bytes", 1.5), field: "size_bytes", reason: "not a fraction"},
		{name: "float 2^63 time", data: mpEvent(t, "time", 9223372036854775808.0), field: "time", reason: "integer is out of range"},
		{name: "uint64 over int64", data: mpEvent(t, "time", uint64(math.MaxUint64)), field: "time", reason: "integer is out of range"},
		{name: "invalid UTF-8 id", data: mpEvent(t, "id", "a\xff"), field: "id", reason: "string is not valid UTF-8"},
		{name: "invalid UTF-8 stats value", data: mpEvent(t, "min", mpMap{{"a", "\xff"}}), field: "min.a", reason: "not valid UTF-8"},
		{name: "invalid UTF-8 column", data: mpEvent(t, "min", mpMap{{"\xff", 1}}), field: "min", reason: "not valid UTF-8"},
		{name: "invalid UTF-8 member", data: mpEvent(t, "\xff", 1), field: "", reason: "not valid UTF-8"},
		{name: "stats nested map", data: mpEvent(t, "min", mpMap{{"a", mpMap{}}}), field: "min.a", reason: "not an object"},
		{name: "stats as array", data: mpEvent(t, "min", []any{1}), field: "min", reason: "must be an object, not an array"},
		{name: "top-level array", data: []byte{0x90}, field: "", reason: "must be an object, not an array"},
		{name: "top-level nil", data: []byte{0xc0}, field: "", reason: "must be an object, not null"},
		{name: "reserved code", data: []byte{0xc1}, field: "", reason: "must be an object, not malformed input"},
		{name: "empty", data: nil, field: "", reason: "unexpected end of input"},
		{name: "truncated", data: mpEvent(t)[:20], field: "id", reason: "invalid msgpack: unexpected end of input"},
		{name: "trailing byte", data: append(mpEvent(t), 0xc0), field: "", reason: "data after the event map"},
		{name: "map32 with a huge count", data: []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01}, field: "", reason: "invalid msgpack"},
		{name: "str32 longer than the input", data: []byte{0x81, 0xa2, 'i', 'd', 0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'}, field: "id", reason: "invalid msgpack"},
		{name: "array32 with a huge count", data: mpEvent(t, "type", "files.replaced", "add", msgpack.RawMessage{0xdd, 0xff, 0xff, 0xff, 0xff}), field: "add[0]", reason: "unexpected end of input"},
		{name: "10000 nested arrays", data: deepArrays, field: "", reason: "must be an object, not an array"},
		{name: "10000 nested maps", data: deepMaps, field: "a", reason: "unknown field"},
		{name: "10000 nested arrays in a column", data: mpEvent(t, "min", mpMap{{"a", deepArrays}}), field: "min.a", reason: "not an array"},
		{name: "10000 nested maps in a column", data: mpEvent(t, "max", mpMap{{"a", deepMaps}}), field: "max.a", reason: "not an object"},
		{name: "10000 nested arrays in add", data: mpEvent(t, "type", "files.replaced", "add", deepArrays), field: "add[0]", reason: "must be an object, not an array"},
		{name: "lua in layer", data: mpEvent(t, "layer", luaString), field: "layer", reason: nameReason},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := bigDecoder.Decode(event.MsgPack, c.data)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				checkRoundTrip(t, e)
				return
			}
			checkRejected(t, "msgpack", err, &expectedError{Field: c.field, ReasonContains: c.reason}, true)
		})
	}
}

// TestDecodeTruncated decodes every proper prefix of valid messages: each
// must fail cleanly (a ValidationError, no panic).
func TestDecodeTruncated(t *testing.T) {
	for _, ex := range loadExamples(t, "valid") {
		e, err := event.Decode(event.JSON, ex.data)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []event.Format{event.JSON, event.MsgPack} {
			data, err := event.Encode(f, &e)
			if err != nil {
				t.Fatal(err)
			}
			for n := range len(data) {
				_, err := event.Decode(f, data[:n])
				var ve *event.ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("%s %v: prefix of %d bytes: got %v, want a ValidationError", ex.name, f, n, err)
				}
			}
		}
	}
}

func TestDecoderLimits(t *testing.T) {
	d, err := event.NewDecoder(event.Config{Layers: []string{"hot"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []decodeCase{
		accept("hot", created()),
		reject("cold", created("layer", `"cold"`), "layer", `layer "cold" is not configured`),
		reject("cold in add", replaced("add", "["+object(baseFile, "layer", `"cold"`)+"]"), "add[0].layer", "is not configured"),
		reject("cold in remove", replaced("remove", "["+object(baseRemoved, "layer", `"cold"`)+"]"), "remove[0].layer", "is not configured"),
		reject("cold deleted", deleted("layer", `"cold"`), "layer", "is not configured"),
	} {
		for _, f := range []event.Format{event.JSON, event.MsgPack} {
			data := []byte(c.data)
			if f == event.MsgPack {
				if data, err = jsonToMsgpack(data); err != nil {
					t.Fatal(err)
				}
			}
			_, err := d.Decode(f, data)
			if c.ok {
				if err != nil {
					t.Errorf("%s %v: %v", c.name, f, err)
				}
				continue
			}
			checkRejected(t, c.name+" "+f.String(), err, &expectedError{Field: c.field, ReasonContains: c.reason}, true)
		}
	}

	// The size limit counts the encoded bytes, before anything is parsed.
	small, err := event.NewDecoder(event.Config{MaxMessageBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, err = small.Decode(event.JSON, []byte(created()))
	checkRejected(t, "100 bytes", err, &expectedError{Field: "", ReasonContains: "more than the limit of 100"}, true)
	_, err = small.Decode(event.JSON, bytes.Repeat([]byte{'{'}, 101))
	checkRejected(t, "101 bytes of garbage", err, &expectedError{Field: "", ReasonContains: "is 101 bytes, more than the limit of 100"}, true)
	_, err = event.Decode(event.JSON, oversizedEvent(t))
	checkRejected(t, "default limit", err, &expectedError{Field: "", ReasonContains: "more than the limit of 65536"}, true)

	for _, cfg := range []event.Config{
		{MaxMessageBytes: -1},
		{Layers: []string{"hot", "a:b"}},
		{Layers: []string{""}},
	} {
		if _, err := event.NewDecoder(cfg); err == nil {
			t.Errorf("NewDecoder(%+v) accepted an invalid config", cfg)
		}
	}
	if _, err := event.Decode(event.Format(7), []byte(created())); err == nil {
		t.Error("Decode accepted an unknown format")
	}
}

// TestDecoderConcurrent decodes from many goroutines with one Decoder (run
// with -race): pooled state must not leak between calls.
func TestDecoderConcurrent(t *testing.T) {
	examples := loadExamples(t, "valid")
	want := make([]event.Event, len(examples))
	msgs := make([][2][]byte, len(examples))
	for i, ex := range examples {
		var err error
		if want[i], err = event.Decode(event.JSON, ex.data); err != nil {
			t.Fatal(err)
		}
		msgs[i][0] = ex.data
		if msgs[i][1], err = event.Encode(event.MsgPack, &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(examples)
				f := event.Format(n % 2)
				got, err := event.Decode(f, msgs[i][f])
				if err != nil || !reflect.DeepEqual(got, want[i]) {
					t.Errorf("%s %v: got %+v, %v", examples[i].name, f, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func mustDecode(t *testing.T, f event.Format, data []byte) event.Event {
	t.Helper()
	e, err := event.Decode(f, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestStatsCanonical: one canonical text whatever the spelling or format.
func TestStatsCanonical(t *testing.T) {
	in := created("min", `{"a":1.50,"b":1e3,"c":-0,"d":"\u00e9","e":1705327200123456789,"f":-9223372036854775808,`+
		`"g":18446744073709551615,"h":1e21,"i":0.1,"j":true,"k":null,"l":"\u2028<&>\"\\\/","m":-1.25E-7,"n":5e-324}`)
	const want = `{"a":1.5,"b":1000,"c":0,"d":"é","e":1705327200123456789,"f":-9223372036854775808,` +
		`"g":18446744073709551615,"h":1e+21,"i":0.1,"j":true,"k":null,"l":"` + "\u2028" + `<&>\"\\/","m":-1.25e-7,"n":5e-324}`
	e := mustDecode(t, event.JSON, []byte(in))
	if got := e.File.Min.String(); got != want {
		t.Errorf("JSON:\n got %s\nwant %s", got, want)
	}
	if e.File.Min.Len() != 14 || !e.File.Max.IsZero() || e.File.Max.String() != "null" {
		t.Errorf("Len %d, Max %q", e.File.Min.Len(), e.File.Max.String())
	}
	if got := string(e.File.Min.AppendJSON([]byte("x="))); got != "x="+want {
		t.Errorf("AppendJSON: %s", got)
	}

	// The same values in msgpack, and the event re-encoded in msgpack.
	mp, err := jsonToMsgpack([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDecode(t, event.MsgPack, mp).File.Min.String(); got != want {
		t.Errorf("msgpack:\n got %s\nwant %s", got, want)
	}
	enc, err := event.Encode(event.MsgPack, &e)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDecode(t, event.MsgPack, enc).File.Min.String(); got != want {
		t.Errorf("msgpack re-encoded:\n got %s\nwant %s", got, want)
	}

	// An int64 stays exact in both formats, as msgpack int and as JSON.
	const exact = 1705327200123456789
	mpe := mustDecode(t, event.MsgPack, mpEvent(t, "min", mpMap{{"ts", int64(exact)}}, "max", mpMap{{"ts", uint64(exact)}}))
	if mpe.File.Min.String() != `{"ts":1705327200123456789}` || mpe.File.Max.String() != `{"ts":1705327200123456789}` {
		t.Errorf("msgpack int64: %s %s", mpe.File.Min, mpe.File.Max)
	}
	js, err := event.Encode(event.JSON, &mpe)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"min":{"ts":1705327200123456789}`)) {
		t.Errorf("JSON encoding lost the int64: %s", js)
	}
}

func TestStatsFromMap(t *testing.T) {
	s, err := event.StatsFromMap(map[string]any{
		"z": nil, "b": true, "s": "é", "i": -3, "i8": int8(-8), "i16": int16(16), "i32": int32(32),
		"i64": int64(1705327200123456789), "u": uint(1), "u8": uint8(8), "u16": uint16(16), "u32": uint32(32),
		"u64": uint64(math.MaxUint64), "f32": float32(0.1), "f64": 1.5, "whole": 3.0,
	})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"b":true,"f32":0.1,"f64":1.5,"i":-3,"i16":16,"i32":32,"i64":1705327200123456789,"i8":-8,` +
		`"s":"é","u":1,"u16":16,"u32":32,"u64":18446744073709551615,"u8":8,"whole":3,"z":null}`
	if s.String() != want || s.Len() != 16 {
		t.Errorf("got %s (%d columns)\nwant %s", s, s.Len(), want)
	}
	// It is the same Stats as decoding gives.
	e := mustDecode(t, event.JSON, []byte(created("min", want)))
	if !reflect.DeepEqual(e.File.Min, s) {
		t.Errorf("decoded %#v, built %#v", e.File.Min, s)
	}

	if s, err := event.StatsFromMap(nil); err != nil || !s.IsZero() {
		t.Errorf("nil map: %v, %v", s, err)
	}
	if s, err := event.StatsFromMap(map[string]any{}); err != nil || s.IsZero() || s.String() != "{}" {
		t.Errorf("empty map: %v, %v", s, err)
	}
	many := make(map[string]any)
	for i := range 257 {
		many[strconv.Itoa(i)] = i
	}
	for name, m := range map[string]map[string]any{
		"NaN":         {"a": math.NaN()},
		"Inf":         {"a": math.Inf(1)},
		"slice":       {"a": []int{1}},
		"map":         {"a": map[string]any{}},
		"long name":   {strings.Repeat("c", 129): 1},
		"empty name":  {"": 1},
		"bad UTF-8":   {"a": "\xff"},
		"long string": {"a": strings.Repeat("x", 1025)},
		"257 columns": many,
	} {
		if _, err := event.StatsFromMap(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPathHelpers(t *testing.T) {
	for path, want := range map[string]int{
		"date=2024-01-15/hour=14/a.1.parquet":      1,
		"date=2024-01-15/hour=14/a.12.parquet":     12,
		"date=2024-01-15/hour=14/a.999999.parquet": 999999,
		"a.7.parquet":                          7,
		"a.parquet":                            0,
		".parquet":                             0,
		"":                                     0,
		"a.b.parquet":                          0,
		"a.1.csv":                              0,
		"1.parquet":                            0,
		"a.99999999999999999999999.parquet":    0,
		"date=2024-01-15/hour=14/a.1.parquetx": 0,
		"date=2024-01-15/hour=14/a..parquet":   0,
	} {
		if got := event.PathIteration(path); got != want {
			t.Errorf("PathIteration(%q) = %d, want %d", path, got, want)
		}
	}
	f := event.File{Path: "date=2024-02-29/hour=23/merged-7f.42.parquet"}
	if f.Date() != "date=2024-02-29" || f.Dir() != "date=2024-02-29/hour=23" || f.Iteration() != 42 {
		t.Errorf("Date %q, Dir %q, Iteration %d", f.Date(), f.Dir(), f.Iteration())
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]event.Format{
		"": event.JSON, "json": event.JSON, "JSON": event.JSON, "application/json": event.JSON,
		"application/json; charset=utf-8": event.JSON, " msgpack ": event.MsgPack,
		"application/msgpack": event.MsgPack, "application/x-msgpack": event.MsgPack,
		"application/vnd.msgpack": event.MsgPack, "Application/MsgPack;v=1": event.MsgPack,
	} {
		got, err := event.ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"xml", "application/xml", "text/plain", "jsonx"} {
		_, err := event.ParseFormat(in)
		var ve *event.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("ParseFormat(%q): got %v, want a ValidationError", in, err)
		}
	}
	for f, want := range map[event.Format][2]string{
		event.JSON:    {"json", "application/json"},
		event.MsgPack: {"msgpack", "application/msgpack"},
	} {
		if f.String() != want[0] || f.ContentType() != want[1] {
			t.Errorf("%d: %s %s", f, f, f.ContentType())
		}
		if back, err := event.ParseFormat(f.String()); err != nil || back != f {
			t.Errorf("ParseFormat(%v.String()) = %v, %v", f, back, err)
		}
		if back, err := event.ParseFormat(f.ContentType()); err != nil || back != f {
			t.Errorf("ParseFormat(%v.ContentType()) = %v, %v", f, back, err)
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for name, c := range map[string]struct {
		mod   func(e *event.Event)
		field string
	}{
		"bad path":         {func(e *event.Event) { e.File.Path = "x.parquet" }, "path"},
		"no id":            {func(e *event.Event) { e.ID = "" }, "id"},
		"unknown type":     {func(e *event.Event) { e.Type = "file.moved" }, "type"},
		"negative time":    {func(e *event.Event) { e.Time = -1 }, "time"},
		"lua database":     {func(e *event.Event) { e.Database = luaString }, "database"},
		"size 2^53":        {func(e *event.Event) { e.File.SizeBytes = 1 << 53 }, "size_bytes"},
		"min after max":    {func(e *event.Event) { e.File.MinTime = e.File.MaxTime + 1 }, "min_time"},
		"replaced no file": {func(e *event.Event) { e.Type = event.FilesReplaced }, "add"},
		"replaced bad add": {func(e *event.Event) {
			e.Type, e.Add = event.FilesReplaced, []event.File{e.File, e.File}
			e.Add[1].Layer = "a:b"
		}, "add[1].layer"},
		"replaced 1001 files": {func(e *event.Event) {
			e.Type, e.Remove = event.FilesReplaced, make([]event.File, 1001)
		}, "add"},
	} {
		e := validEvent()
		c.mod(&e)
		for _, f := range []event.Format{event.JSON, event.MsgPack} {
			data, err := event.Encode(f, &e)
			if data != nil {
				t.Errorf("%s %v: Encode returned data with an error", name, f)
			}
			checkRejected(t, name+" "+f.String(), err, &expectedError{Field: c.field}, false)
		}
		checkRejected(t, name+" Validate", event.Validate(&e), &expectedError{Field: c.field}, false)
	}
	e := validEvent()
	cold, _ := event.NewDecoder(event.Config{Layers: []string{"cold"}})
	if err := cold.Validate(&e); err == nil {
		t.Error("Validate ignored the layer set")
	}
	if _, err := cold.Encode(event.JSON, &e); err == nil {
		t.Error("Encode ignored the layer set")
	}
	hot, _ := event.NewDecoder(event.Config{Layers: []string{"hot"}})
	if err := hot.Validate(&e); err != nil {
		t.Error(err)
	}
}

func TestEncode(t *testing.T) {
	e := validEvent()
	js, err := event.Encode(event.JSON, &e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"v":1,"id":"01HMB4X1J7Q2ZK3V9W8T6R5S4P","type":"file.created","time":1705327260000000000,` +
		`"database":"metrics","table":"cpu_usage","layer":"hot","path":"date=2024-01-15/hour=14/0a1b2c3d.1.parquet",` +
		`"size_bytes":1048576,"row_count":25000,"chunk_time":1705327200000000000,"min_time":1705327200000000000,"max_time":1705330799999999999}`
	if string(js) != want {
		t.Errorf("got  %s\nwant %s", js, want)
	}
	// Append* append.
	out, err := event.AppendJSON([]byte("x"), &e)
	if err != nil || string(out) != "x"+want {
		t.Errorf("AppendJSON: %s, %v", out, err)
	}
	mp, err := event.Encode(event.MsgPack, &e)
	if err != nil {
		t.Fatal(err)
	}
	out, err = event.AppendMsgpack([]byte("x"), &e)
	if err != nil || string(out) != "x"+string(mp) {
		t.Errorf("AppendMsgpack: %x, %v", out, err)
	}
	// A deleted event writes only what is set; a replaced one both arrays.
	d := event.Event{ID: "d", Type: event.FileDeleted, Time: 1, Database: "d", Table: "t",
		File: event.File{Layer: "hot", Path: "date=2024-01-15/hour=14/a.1.parquet", MinTime: 5}}
	if js, err := event.Encode(event.JSON, &d); err != nil || string(js) !=
		`{"v":1,"id":"d","type":"file.deleted","time":1,"database":"d","table":"t","layer":"hot","path":"date=2024-01-15/hour=14/a.1.parquet","min_time":5}` {
		t.Errorf("deleted: %s, %v", js, err)
	}
	r := event.Event{ID: "r", Type: event.FilesReplaced, Time: 1, Database: "d", Table: "t", Remove: []event.File{d.File}}
	if js, err := event.Encode(event.JSON, &r); err != nil || string(js) !=
		`{"v":1,"id":"r","type":"files.replaced","time":1,"database":"d","table":"t","add":[],"remove":[{"layer":"hot","path":"date=2024-01-15/hour=14/a.1.parquet","min_time":5}]}` {
		t.Errorf("replaced: %s, %v", js, err)
	}
}

func TestEventFiles(t *testing.T) {
	e := validEvent()
	r := event.Event{Type: event.FilesReplaced,
		Add:    []event.File{{Path: "a1"}, {Path: "a2"}},
		Remove: []event.File{{Path: "r1"}}}
	d := event.Event{Type: event.FileDeleted, File: event.File{Path: "d"}}
	for _, c := range []struct {
		e    *event.Event
		want string
		n    int
	}{
		{&e, "+" + e.File.Path, 1},
		{&d, "-d", 1},
		{&r, "-r1 +a1 +a2", 3},
	} {
		var got []string
		c.e.Files(func(f *event.File, deleted bool) {
			sign := "+"
			if deleted {
				sign = "-"
			}
			got = append(got, sign+f.Path)
		})
		if strings.Join(got, " ") != c.want || c.e.NumFiles() != c.n {
			t.Errorf("%s: Files %v, NumFiles %d", c.e.Type, got, c.e.NumFiles())
		}
	}
}

func TestValidationError(t *testing.T) {
	if got := (&event.ValidationError{Field: "path", Reason: "bad"}).Error(); got != "invalid event: path: bad" {
		t.Error(got)
	}
	if got := (&event.ValidationError{Reason: "bad"}).Error(); got != "invalid event: bad" {
		t.Error(got)
	}
}
