package event_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/streamindex/indexer/event"
)

// Fuzz targets (STYLE.md 14): no input may panic a decoder, and whatever
// decodes must survive encoding: decode(encode(e)) == e in both formats,
// and encoding is deterministic. Run with
//
//	go test -run='^$' -fuzz=FuzzDecodeJSON -fuzztime=60s ./event
//
// New failing inputs land in testdata/fuzz/<target>/ and stay there as
// regression seeds.

func FuzzDecodeJSON(f *testing.F) {
	for _, data := range event.SchemaExampleFiles(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecodeProperty(t, event.JSON, data) })
}

func FuzzDecodeMsgpack(f *testing.F) {
	for _, data := range event.SchemaExampleFiles(f) {
		// The valid examples as the codec writes them, and every example
		// that msgpack can carry as it is (invalid ones included).
		if e, err := event.Decode(event.JSON, data); err == nil {
			mp, err := event.Encode(event.MsgPack, &e)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(mp)
		}
		if mp, err := jsonToMsgpack(data); err == nil {
			f.Add(mp)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecodeProperty(t, event.MsgPack, data) })
}

func checkDecodeProperty(t *testing.T, f event.Format, data []byte) {
	e, err := event.Decode(f, data)
	if err != nil {
		var ve *event.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("Decode failed with %T %v, want a *event.ValidationError", err, err)
		}
		return
	}
	first, err := event.Encode(f, &e)
	if err != nil {
		t.Fatalf("Encode of a decoded event: %v", err)
	}
	// The encoding may be longer than the input (1e3 becomes 1000), so
	// decode it without the size limit.
	again, err := bigDecoder.Decode(f, first)
	if err != nil {
		t.Fatalf("Decode(Encode(e)): %v\n%q", err, first)
	}
	if !reflect.DeepEqual(again, e) {
		t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", again, e)
	}
	second, err := event.Encode(f, &again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("encoding is not deterministic:\n%q\n%q", first, second)
	}
	// The other format carries the same event.
	other := event.MsgPack
	if f == event.MsgPack {
		other = event.JSON
	}
	cross, err := event.Encode(other, &e)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := bigDecoder.Decode(other, cross); err != nil || !reflect.DeepEqual(back, e) {
		t.Fatalf("%v leg: %v\n got %+v\nwant %+v", other, err, back, e)
	}
}
