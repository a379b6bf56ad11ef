package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// StreamState returns the stream's state (messages, first and last
// sequence and time), or an error wrapping consumer.ErrStreamMissing.
func StreamState(ctx context.Context, js natsjs.JetStream, stream string) (natsjs.StreamState, error) {
	return streamState(ctx, js, stream)
}

// streamState returns the stream's state, or an error wrapping
// consumer.ErrStreamMissing that says to run setup.
func streamState(ctx context.Context, js natsjs.JetStream, stream string) (natsjs.StreamState, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return natsjs.StreamState{}, streamError(stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return natsjs.StreamState{}, streamError(stream, err)
	}
	return info.State, nil
}

func streamError(stream string, err error) error {
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		cfg := Config{Stream: stream}
		return lookupError(&cfg, err)
	}
	return fmt.Errorf("jetstream: stream %q: %w", stream, err)
}

// msgGetRequest is the part of the server's stream message get request
// this package sends: start_time asks for the first message stored at or
// after a time (servers >= 2.11).
type msgGetRequest struct {
	StartTime *time.Time `json:"start_time,omitempty"`
}

type msgGetResponse struct {
	Error   *natsjs.APIError `json:"error,omitempty"`
	Message *struct {
		Seq  uint64    `json:"seq"`
		Time time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// SeqAtTime returns the sequence of the stream's first message stored at
// or after t (the server's clock), and false if there is none (every
// message is older). It asks the server (servers >= 2.11 find it with
// their index; older ones through a short-lived consumer).
func SeqAtTime(ctx context.Context, js natsjs.JetStream, stream string, t time.Time) (uint64, bool, error) {
	st, err := streamState(ctx, js, stream)
	if err != nil {
		return 0, false, err
	}
	if st.Msgs == 0 || t.After(st.LastTime) {
		return 0, false, nil
	}
	if !t.After(st.FirstTime) {
		return st.FirstSeq, true, nil
	}
	req, _ := json.Marshal(msgGetRequest{StartTime: &t})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := js.Conn().RequestWithContext(rctx, apiPrefix(js.Options())+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, false, fmt.Errorf("jetstream: find the first message of %s at or after %s: %w", stream, t.Format(time.RFC3339Nano), err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, false, fmt.Errorf("jetstream: find a message by time: unreadable reply: %w", err)
	}
	switch {
	case resp.Error == nil && resp.Message != nil:
		return resp.Message.Seq, true, nil
	case resp.Error != nil && resp.Error.ErrorCode == natsjs.JSErrCodeMessageNotFound:
		return 0, false, nil
	}
	return seqAtTimeByConsumer(ctx, js, stream, t)
}

// seqAtTimeByConsumer finds the first message at or after t with a
// short-lived consumer starting at t, for servers whose message get does
// not take a time.
func seqAtTimeByConsumer(ctx context.Context, js natsjs.JetStream, stream string, t time.Time) (uint64, bool, error) {
	c, err := js.CreateConsumer(ctx, stream, natsjs.ConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartTimePolicy, OptStartTime: &t,
		AckPolicy: natsjs.AckNonePolicy, InactiveThreshold: time.Minute, MemoryStorage: true,
	})
	if err != nil {
		return 0, false, fmt.Errorf("jetstream: find a message by time in %s: %w", stream, err)
	}
	defer js.DeleteConsumer(context.WithoutCancel(ctx), stream, c.CachedInfo().Name)
	msgs, err := c.Fetch(1, natsjs.FetchMaxWait(5*time.Second))
	if err != nil {
		return 0, false, fmt.Errorf("jetstream: find a message by time in %s: %w", stream, err)
	}
	m, ok := <-msgs.Messages()
	if !ok {
		return 0, false, msgs.Error()
	}
	md, err := m.Metadata()
	if err != nil {
		return 0, false, err
	}
	return md.Sequence.Stream, true, nil
}

// Oldest returns when the oldest message the stream holds was stored, and
// false if it holds none. A missing stream is an error wrapping
// consumer.ErrStreamMissing: tombstone collection must not guess.
func Oldest(ctx context.Context, js natsjs.JetStream, stream string) (time.Time, bool, error) {
	st, err := streamState(ctx, js, stream)
	if err != nil || st.Msgs == 0 {
		return time.Time{}, false, err
	}
	return st.FirstTime, true, nil
}
