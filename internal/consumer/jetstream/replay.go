package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/consumer"
)

// ReplayConsumerPrefix starts the name of every temporary replay consumer.
const ReplayConsumerPrefix = "indexer-replay-"

// ReplayConfig configures NewReplay. Zero fields mean the defaults.
type ReplayConfig struct {
	// Stream is the events stream. Default "IDX_EVENTS".
	Stream string
	// SubjectPrefix is where events are published, as for workers
	// (Config.SubjectPrefix): an event that came on another table's
	// subject is counted invalid, as the workers dead-lettered it.
	// Default "idx.events".
	SubjectPrefix string
	// From is the first stream sequence to replay; the replay starts at
	// the first message at or after it. Default: the stream's first.
	From uint64
	// To is the last stream sequence to replay. Default: the stream's last
	// when NewReplay runs, so messages added during the replay are left to
	// the workers.
	To uint64
	// Name names the temporary consumer. Default
	// "indexer-replay-<unix ms>-<random>".
	Name string
	// AckWait: a message of the replay that was not applied (a failed
	// batch) is delivered again after this long. Default 10 s.
	AckWait time.Duration
	// MaxDeliver is the replay loop's delivery limit (the consumer's is one
	// higher, as for workers). Default 5.
	MaxDeliver int
	// MaxAckPending bounds the messages delivered and not acknowledged.
	// Default 10000.
	MaxAckPending int
	// Inactive: the server deletes the consumer after this long without a
	// pull request (a replay that was killed). Default 1 h.
	Inactive time.Duration
	// Logger receives the source's logs. Default slog.Default().
	Logger *slog.Logger
}

// Replay is a temporary (ephemeral, explicitly acknowledged) pull consumer
// reading a range of the events stream, for 'indexer replay'. NewReplay
// creates it; Close deletes it, and the server deletes it on its own after
// ReplayConfig.Inactive should the replay be killed. It never touches the
// workers' durable consumer.
type Replay struct {
	js    natsjs.JetStream
	cfg   ReplayConfig
	src   *Source
	start uint64
	end   uint64
}

// ErrNothingToReplay: the range holds no message; no consumer was created.
var ErrNothingToReplay = errors.New("jetstream: nothing to replay: no message in the range")

// NewReplay creates the temporary consumer at From and its Source. It
// returns ErrNothingToReplay if the stream holds no message between From
// and To, and an error wrapping consumer.ErrStreamMissing if the stream
// does not exist.
func NewReplay(ctx context.Context, js natsjs.JetStream, cfg ReplayConfig) (*Replay, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 10 * time.Second
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = 10000
	}
	if cfg.Inactive == 0 {
		cfg.Inactive = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		var b [3]byte
		rand.Read(b[:])
		cfg.Name = ReplayConsumerPrefix + strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(b[:])
	}
	st, err := streamState(ctx, js, cfg.Stream)
	if err != nil {
		return nil, err
	}
	start, end := max(cfg.From, st.FirstSeq, 1), st.LastSeq
	if cfg.To > 0 {
		end = min(end, cfg.To)
	}
	if st.Msgs == 0 || start > end {
		return nil, ErrNothingToReplay
	}
	_, err = js.CreateConsumer(ctx, cfg.Stream, natsjs.ConsumerConfig{
		Name:              cfg.Name,
		Description:       "indexer replay of sequences " + strconv.FormatUint(start, 10) + " to " + strconv.FormatUint(end, 10),
		DeliverPolicy:     natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         natsjs.AckExplicitPolicy,
		AckWait:           cfg.AckWait,
		MaxDeliver:        serverMaxDeliver(cfg.MaxDeliver),
		MaxAckPending:     cfg.MaxAckPending,
		ReplayPolicy:      natsjs.ReplayInstantPolicy,
		InactiveThreshold: cfg.Inactive,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: replay: create consumer %q on stream %q at sequence %d: %w", cfg.Name, cfg.Stream, start, err)
	}
	r := &Replay{js: js, cfg: cfg, start: start, end: end}
	src, err := New(ctx, js, Config{Stream: cfg.Stream, Consumer: cfg.Name, SubjectPrefix: cfg.SubjectPrefix, MaxDeliver: cfg.MaxDeliver, Logger: cfg.Logger.With("replay_group", cfg.Name)})
	if err != nil {
		r.Close(ctx)
		return nil, err
	}
	r.src = src
	return r, nil
}

// Source reads the temporary consumer. Its DeadLetter must not be used:
// the replay's messages are dead-lettered, if at all, by the workers.
func (r *Replay) Source() consumer.Source { return r.src }

// Name is the temporary consumer's name.
func (r *Replay) Name() string { return r.cfg.Name }

// Start is the first stream sequence the replay covers.
func (r *Replay) Start() uint64 { return r.start }

// End is the last stream sequence the replay covers.
func (r *Replay) End() uint64 { return r.end }

// Total is how many sequences the replay covers (deleted messages
// included), for progress.
func (r *Replay) Total() int64 { return int64(r.end - r.start + 1) }

// Past reports whether m lies after the replay's last sequence.
func (r *Replay) Past(m *consumer.Message) bool {
	seq, err := strconv.ParseUint(m.ID, 10, 64)
	return err == nil && seq > r.end
}

// Done reports whether every message up to the replay's last sequence has
// been delivered and acknowledged.
func (r *Replay) Done(ctx context.Context) (bool, error) {
	ci, err := lookupConsumer(ctx, r.js, r.cfg.Stream, r.cfg.Name)
	if err != nil {
		return false, err
	}
	delivered := ci.Delivered.Stream >= r.end || ci.NumPending == 0
	acked := ci.AckFloor.Stream >= r.end || ci.NumAckPending == 0
	return delivered && acked, nil
}

// Close closes the Source (waiting for its acks to be confirmed) and
// deletes the temporary consumer; call it also when the replay failed or
// was interrupted. It uses ctx even if it is done (for at most 5 s).
func (r *Replay) Close(ctx context.Context) error {
	if r.src != nil {
		r.src.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.js.DeleteConsumer(ctx, r.cfg.Stream, r.cfg.Name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
		return fmt.Errorf("jetstream: delete the replay consumer %q of stream %q (the server deletes it after %v without use, or: nats consumer rm %s %s): %w",
			r.cfg.Name, r.cfg.Stream, r.cfg.Inactive, r.cfg.Stream, r.cfg.Name, err)
	}
	return nil
}
