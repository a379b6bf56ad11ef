package redisstream

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/publish/redispub"
)

// message converts an entry delivered for the deliveries-th time. Its
// payload is copied to the end of buf, which is returned.
func (s *Source) message(x *redis.XMessage, deliveries int, buf []byte) (consumer.Message, []byte) {
	m := consumer.Message{ID: x.ID, Deliveries: deliveries, Time: idTime(x.ID)}
	if x.Values == nil {
		m.Lost = true
		return m, buf
	}
	m.ContentType, _ = x.Values[fieldCT].(string)
	data, ok := x.Values[fieldData].(string)
	if !ok {
		nd := &noData{fields: fieldNames(x.Values)}
		m.Handle = nd
		s.log.Warn("stream entry has no data field; it will be dead-lettered", "msg_id", x.ID, "fields", nd.fields)
		return m, buf
	}
	start := len(buf)
	buf = append(buf, data...)
	m.Data = buf[start:len(buf):len(buf)]
	return m, buf
}

// Entry fields.
const (
	fieldData = redispub.FieldData
	fieldCT   = redispub.FieldCT
)

// noData is the Handle of a message whose entry had no data field.
type noData struct{ fields string }

func (n *noData) reason() string {
	return fmt.Sprintf("stream entry has no %q field (its fields: %s); writers must publish fields data and ct", fieldData, n.fields)
}

func fieldNames(v map[string]any) string {
	if len(v) == 0 {
		return "none"
	}
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, strconv.Quote(k))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// dataSize sums the payload sizes of xs.
func dataSize(xs []redis.XMessage) int {
	n := 0
	for i := range xs {
		if d, ok := xs[i].Values[fieldData].(string); ok {
			n += len(d)
		}
	}
	return n
}

// idTime returns when the entry id was generated (its milliseconds part).
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// compareIDs compares two stream entry ids ("ms-seq" or "ms").
func compareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(as, bs)
}

func splitID(id string) (ms, seq uint64) {
	m, q, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(q, 10, 64)
	return ms, seq
}

// hashTag returns the Redis Cluster hash tag of key, or "".
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return ""
}
