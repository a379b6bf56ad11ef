package jetstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// msgHandle is a message delivered by a pull request, as a natsjs.Msg
// (consumer.Message.Handle). A struct of one pointer is stored in an
// interface without an allocation.
type msgHandle struct{ m *nats.Msg }

var _ natsjs.Msg = msgHandle{}

func (h msgHandle) msg() *nats.Msg { return h.m }

// Metadata parses the delivery metadata from the ack subject.
func (h msgHandle) Metadata() (*natsjs.MsgMetadata, error) {
	a, ok := parseAckSubject(h.m.Reply)
	if !ok {
		return nil, natsjs.ErrNotJSMessage
	}
	seq, _ := strconv.ParseUint(a.seq, 10, 64)
	return &natsjs.MsgMetadata{
		Sequence:     natsjs.SequencePair{Stream: seq, Consumer: a.cseq},
		NumDelivered: a.delivered,
		NumPending:   a.pending,
		Timestamp:    time.Unix(0, a.time),
		Stream:       a.stream,
		Consumer:     a.consumer,
		Domain:       a.domain,
	}, nil
}

func (h msgHandle) Data() []byte                           { return h.msg().Data }
func (h msgHandle) Headers() nats.Header                   { return h.msg().Header }
func (h msgHandle) Subject() string                        { return h.msg().Subject }
func (h msgHandle) Reply() string                          { return h.msg().Reply }
func (h msgHandle) Ack() error                             { return h.msg().Ack() }
func (h msgHandle) DoubleAck(ctx context.Context) error    { return h.msg().AckSync(nats.Context(ctx)) }
func (h msgHandle) Nak() error                             { return h.msg().Nak() }
func (h msgHandle) NakWithDelay(delay time.Duration) error { return h.msg().NakWithDelay(delay) }
func (h msgHandle) InProgress() error                      { return h.msg().InProgress() }
func (h msgHandle) Term() error                            { return h.msg().Term() }
func (h msgHandle) TermWithReason(reason string) error {
	return h.msg().Respond([]byte("+TERM " + reason))
}

// ackInfo is what a JetStream ack subject says about a delivery.
type ackInfo struct {
	domain, stream, consumer string
	delivered, cseq, pending uint64
	seq                      string // stream sequence, decimal
	time                     int64  // when the message was stored, Unix ns
}

// parseAckSubject parses a JetStream ack subject without allocating:
//
//	v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>
//	v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>[.<token>…]
func parseAckSubject(s string) (ackInfo, bool) {
	var tok [12]string
	n := 0
	for n < len(tok) {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			tok[n] = s
			n++
			break
		}
		tok[n], s = s[:i], s[i+1:]
		n++
	}
	if tok[0] != "$JS" || tok[1] != "ACK" {
		return ackInfo{}, false
	}
	var a ackInfo
	off := 0
	switch {
	case n == 9:
	case n >= 11:
		off = 2
		if a.domain = tok[2]; a.domain == "_" {
			a.domain = ""
		}
	default:
		return ackInfo{}, false
	}
	a.stream, a.consumer, a.seq = tok[2+off], tok[3+off], tok[5+off]
	var ok1, ok2, ok3, ok4, ok5 bool
	a.delivered, ok1 = parseUint(tok[4+off])
	_, ok2 = parseUint(a.seq)
	a.cseq, ok3 = parseUint(tok[6+off])
	var t uint64
	t, ok4 = parseUint(tok[7+off])
	a.time = int64(t)
	a.pending, ok5 = parseUint(tok[8+off])
	return a, ok1 && ok2 && ok3 && ok4 && ok5 && a.seq != ""
}

func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// errNotOurs is returned for a consumer.Message this package did not fetch.
var errNotOurs = errors.New("jetstream: message was not fetched by a jetstream Source (no ack subject)")
