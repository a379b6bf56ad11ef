package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/publish/natspub"
)

// Defaults shared by Setup, New and the Publisher (docs/DESIGN.md §2).
const (
	DefaultStream           = "IDX_EVENTS"
	DefaultDeadLetters      = "IDX_DLQ"
	DefaultConsumer         = "indexer"
	DefaultSubjectPrefix    = natspub.DefaultSubjectPrefix
	DefaultDeadLetterPrefix = "idx.dlq"
	// DefaultDeadLetterMaxAge and DefaultDeadLetterMaxMsgs are the
	// retention of the dead-letter stream Setup creates.
	DefaultDeadLetterMaxAge  = 30 * 24 * time.Hour
	DefaultDeadLetterMaxMsgs = 100_000
)

// SetupConfig describes the streams and the durable consumer Setup
// creates. Zero fields mean the defaults.
type SetupConfig struct {
	// Stream is the events stream. Default "IDX_EVENTS".
	Stream string
	// SubjectPrefix: the stream holds SubjectPrefix.> (events are published
	// to SubjectPrefix.<database>.<table>). Default "idx.events".
	SubjectPrefix string
	// DeadLetters is the dead-letter stream. Default "IDX_DLQ".
	DeadLetters string
	// DeadLetterPrefix: the dead-letter stream holds DeadLetterPrefix.>.
	// Default "idx.dlq".
	DeadLetterPrefix string
	// Consumer is the durable pull consumer all workers share.
	// Default "indexer".
	Consumer string
	// Advisories is the stream that stores the server's max-deliveries
	// advisories of Stream's consumers
	// ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<Stream>.*), with a
	// durable consumer named Consumer that the workers read (see
	// Advisories). It is kept as long as Stream (MaxAge). When a stream
	// captures those advisories already, whatever its name, that one is
	// used. Default "<Stream>_MAX_DELIVERIES".
	Advisories string
	// AckWait is how long a delivered message may stay unacknowledged
	// before it is delivered again (workers renew it with InProgress while
	// they apply a batch). Default 30 s.
	AckWait time.Duration
	// MaxDeliver is the worker's delivery limit: a message delivered more
	// often goes to the dead-letter stream. The consumer's own MaxDeliver
	// is set one higher, so the worker still sees that last delivery and
	// dead-letters it instead of the server dropping it silently. An
	// existing consumer with a lower MaxDeliver is raised to it in place;
	// a higher one (or none) is kept (see maxdeliver.go). Default 5.
	MaxDeliver int
	// MaxAckPending bounds the messages delivered and not yet
	// acknowledged, across all workers; it should exceed workers × batch
	// size × 2 (the loop holds one batch while it fetches the next).
	// Default 20000.
	MaxAckPending int
	// MaxAge is the events stream's retention by age: older messages are
	// discarded (discard policy "old"), whether or not the consumer has
	// read them. A negative value keeps messages forever. Default 7 days.
	MaxAge time.Duration
	// MaxBytes caps the events stream's size; past it the oldest messages
	// are discarded, read or not. Zero or negative: unlimited (default).
	MaxBytes int64
	// MaxMsgs caps the events stream's message count, like MaxBytes.
	// Zero or negative: unlimited (default).
	MaxMsgs int64
	// DeadLetterMaxAge and DeadLetterMaxMsgs are the retention of a
	// dead-letter stream Setup creates: dead letters older than
	// DeadLetterMaxAge, or beyond the newest DeadLetterMaxMsgs, are
	// discarded. Negative: no limit. Defaults 30 days and 100,000. An
	// existing dead-letter stream keeps its limits (Setup reports them).
	DeadLetterMaxAge  time.Duration
	DeadLetterMaxMsgs int64
	// Duplicates is the publish de-duplication window: a message whose
	// Nats-Msg-Id was already stored within it is stored once. Default 2 min.
	Duplicates time.Duration
	// PersistAsync creates the events stream with the server's
	// asynchronous persistence (persist_mode "async"): nats-server
	// acknowledges a publish before writing it, and writes what it
	// gathered once 16 KiB or 8 ms have accumulated (nats-server 2.15).
	// That raises what one server stores per second, but a publish
	// acknowledged in that window is lost if nats-server dies (a crash,
	// kill -9, the OOM killer) before writing it: the writer was told it
	// was stored, and the index never sees it ('indexer backfill
	// --reconcile' finds such files). Off by default; the server refuses
	// it on replicated streams (Replicas > 1), and a stream's persist mode
	// is fixed when it is created. The dead-letter stream always persists
	// synchronously.
	PersistAsync bool
	// Replicas is the replication factor of both streams and the consumer
	// (1 for a single server, 3 for a cluster). Default (0): 3 when the
	// connection is to a cluster of 3 or more servers, else 1; an existing
	// events stream keeps its own. Setup warns about 1 on a cluster.
	Replicas int
	// DeliverFrom is where a newly created consumer starts. The zero value
	// starts at the stream's first message. It is ignored, with a warning,
	// when the consumer exists already: ResetConsumer ('indexer group
	// reset') moves an existing one.
	DeliverFrom DeliverFrom
}

// DeliverFrom is a consumer's starting point: a stream sequence or a time.
// At most one field may be set.
type DeliverFrom struct {
	Seq  uint64    // first stream sequence to deliver
	Time time.Time // first message stored at or after this time
}

func (c *SetupConfig) setDefaults() error {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&c.Stream, DefaultStream)
	def(&c.SubjectPrefix, DefaultSubjectPrefix)
	def(&c.DeadLetters, DefaultDeadLetters)
	def(&c.DeadLetterPrefix, DefaultDeadLetterPrefix)
	def(&c.Consumer, DefaultConsumer)
	def(&c.Advisories, DefaultAdvisories(c.Stream))
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 20000
	}
	switch {
	case c.MaxAge == 0:
		c.MaxAge = 7 * 24 * time.Hour
	case c.MaxAge < 0:
		c.MaxAge = 0 // the server's "unlimited"
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = -1
	}
	if c.MaxMsgs <= 0 {
		c.MaxMsgs = -1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	switch {
	case c.DeadLetterMaxAge == 0:
		c.DeadLetterMaxAge = DefaultDeadLetterMaxAge
	case c.DeadLetterMaxAge < 0:
		c.DeadLetterMaxAge = 0 // the server's "unlimited"
	}
	switch {
	case c.DeadLetterMaxMsgs == 0:
		c.DeadLetterMaxMsgs = DefaultDeadLetterMaxMsgs
	case c.DeadLetterMaxMsgs < 0:
		c.DeadLetterMaxMsgs = -1
	}
	switch {
	case c.AckWait < 0, c.MaxDeliver < 1, c.MaxAckPending < 1, c.Duplicates < 0:
		return errors.New("jetstream setup: AckWait, MaxDeliver, MaxAckPending and Duplicates must be positive")
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("jetstream setup: Replicas %d: want 1 to 5", c.Replicas)
	case c.PersistAsync && c.Replicas > 1:
		return fmt.Errorf("jetstream setup: asynchronous persistence needs a stream of one replica, not %d: nats-server refuses it on replicated streams", c.Replicas)
	case c.MaxAge > 0 && c.Duplicates > c.MaxAge:
		return fmt.Errorf("jetstream setup: the de-duplication window %v is longer than MaxAge %v", c.Duplicates, c.MaxAge)
	case c.DeliverFrom.Seq > 0 && !c.DeliverFrom.Time.IsZero():
		return errors.New("jetstream setup: DeliverFrom: give a sequence or a time, not both")
	case c.SubjectPrefix == c.DeadLetterPrefix:
		return errors.New("jetstream setup: the events and dead-letter subject prefixes must differ")
	}
	return nil
}

func (c *SetupConfig) eventsStream() natsjs.StreamConfig {
	mode := natsjs.DefaultPersistMode
	if c.PersistAsync {
		mode = natsjs.AsyncPersistMode
	}
	return natsjs.StreamConfig{
		Name:              c.Stream,
		Description:       "indexer events: " + c.SubjectPrefix + ".<database>.<table>",
		Subjects:          []string{c.SubjectPrefix + ".>"},
		Retention:         natsjs.LimitsPolicy, // kept after acks, for replays
		Storage:           natsjs.FileStorage,
		Discard:           natsjs.DiscardOld,
		MaxAge:            c.MaxAge,
		MaxBytes:          c.MaxBytes,
		MaxMsgs:           c.MaxMsgs,
		MaxMsgsPerSubject: -1,
		Duplicates:        c.Duplicates,
		Replicas:          c.Replicas,
		AllowDirect:       true,
		PersistMode:       mode,
	}
}

func (c *SetupConfig) deadLetterStream() natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              c.DeadLetters,
		Description:       "indexer dead letters: " + c.DeadLetterPrefix + ".<database>.<table>, with Indexer-Reason",
		Subjects:          []string{c.DeadLetterPrefix + ".>"},
		Retention:         natsjs.LimitsPolicy,
		Storage:           natsjs.FileStorage,
		Discard:           natsjs.DiscardOld,
		MaxAge:            c.DeadLetterMaxAge,
		MaxBytes:          -1,
		MaxMsgs:           c.DeadLetterMaxMsgs,
		MaxMsgsPerSubject: -1,
		Duplicates:        c.Duplicates, // a retried dead-letter publish (Nats-Msg-Id dlq-<stream>-<seq>) is stored once
		Replicas:          c.Replicas,
		AllowDirect:       true,
	}
}

func (c *SetupConfig) consumer() natsjs.ConsumerConfig {
	cc := natsjs.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "indexer workers",
		DeliverPolicy: natsjs.DeliverAllPolicy,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    serverMaxDeliver(c.MaxDeliver),
		MaxAckPending: c.MaxAckPending,
		ReplayPolicy:  natsjs.ReplayInstantPolicy,
		Replicas:      c.Replicas,
	}
	switch {
	case c.DeliverFrom.Seq > 0:
		cc.DeliverPolicy, cc.OptStartSeq = natsjs.DeliverByStartSequencePolicy, c.DeliverFrom.Seq
	case !c.DeliverFrom.Time.IsZero():
		t := c.DeliverFrom.Time
		cc.DeliverPolicy, cc.OptStartTime = natsjs.DeliverByStartTimePolicy, &t
	}
	return cc
}

// FieldDiff is one setting where an existing stream or consumer differs
// from the one asked for.
type FieldDiff struct {
	Field      string // the server's name for it, as 'nats stream info --json' shows
	Have, Want string
}

// MismatchError says that a stream or consumer exists with settings other
// than the ones Setup was asked for, and how to fix it.
type MismatchError struct {
	Kind   string // "stream" or "consumer"
	Name   string
	Stream string // the consumer's stream
	Diffs  []FieldDiff
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	if e.Kind == "consumer" {
		fmt.Fprintf(&b, "jetstream setup: consumer %q on stream %q exists with other settings: ", e.Name, e.Stream)
	} else {
		fmt.Fprintf(&b, "jetstream setup: stream %q exists with other settings: ", e.Name)
	}
	for i, d := range e.Diffs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s is %s, want %s", d.Field, d.Have, d.Want)
	}
	if e.Kind == "consumer" {
		fmt.Fprintf(&b, ": pass matching settings to 'indexer setup', or delete the consumer with 'nats consumer rm %s %s' and run setup again (the new consumer starts at the stream's first message unless told otherwise; re-applying events is harmless)", e.Stream, e.Name)
	} else {
		fmt.Fprintf(&b, ": pass matching settings to 'indexer setup', or change the stream with 'nats stream edit %s' (retention, storage and persist_mode cannot be changed: that needs 'nats stream rm %s', which deletes its messages)", e.Name, e.Name)
	}
	return b.String()
}

// Created says which of its objects Setup created; the others existed
// already with compatible settings and were left alone.
type Created struct {
	Stream, DeadLetters, Consumer, Advisories bool
}

// Any reports whether Setup created anything.
func (c Created) Any() bool { return c.Stream || c.DeadLetters || c.Consumer || c.Advisories }

// Setup creates the events stream, the dead-letter stream, the durable
// pull consumer, and the advisory stream with its consumer (see
// SetupConfig.Advisories), idempotently: what exists with the same
// settings is left alone. created reports what was created. A stream or
// consumer that exists with different settings is a *MismatchError naming
// each differing field and how to fix it; nothing is changed then —
// except a consumer MaxDeliver lower than SetupConfig.MaxDeliver needs,
// which is raised in place.
//
// warnings are for the operator: limits under which the stream discards
// messages the consumer may not have read yet (MaxAge, MaxBytes, MaxMsgs
// with discard "old"), a DeliverFrom that was ignored, a MaxDeliver that
// was raised, and the like.
func Setup(ctx context.Context, js natsjs.JetStream, cfg SetupConfig) (created Created, warnings []string, err error) {
	if err := cfg.setDefaults(); err != nil {
		return created, nil, err
	}
	warnings = cfg.chooseReplicas(ctx, js)
	events := cfg.eventsStream()
	have, c1, err := ensureStream(ctx, js, events, compareEvents)
	created.Stream = c1
	if err != nil {
		return created, nil, err
	}
	warnings = append(warnings, discardWarnings(have, "the consumer "+cfg.Consumer+" has not read yet")...)
	dlq, c2, err := ensureStream(ctx, js, cfg.deadLetterStream(), compareDeadLetters)
	created.DeadLetters = c2
	if err != nil {
		return created, warnings, err
	}
	warnings = append(warnings, deadLetterRetention(dlq)...)

	want := cfg.consumer()
	c3 := false
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if errors.Is(err, natsjs.ErrConsumerNotFound) {
		cons, err = js.CreateConsumer(ctx, cfg.Stream, want)
		if err == nil {
			c3 = true
		} else if errors.Is(err, natsjs.ErrConsumerExists) { // created concurrently by another setup
			cons, err = js.Consumer(ctx, cfg.Stream, cfg.Consumer)
		}
	}
	created.Consumer = c3
	if err != nil {
		return created, warnings, fmt.Errorf("jetstream setup: consumer %q on stream %q: %w", cfg.Consumer, cfg.Stream, err)
	}
	if !c3 {
		have := cons.CachedInfo().Config
		if diffs := compareConsumer(&have, &want); len(diffs) > 0 {
			return created, warnings, &MismatchError{Kind: "consumer", Name: cfg.Consumer, Stream: cfg.Stream, Diffs: diffs}
		}
		if !allowsDeliveries(have.MaxDeliver, want.MaxDeliver) {
			if err := raiseMaxDeliver(ctx, js, cfg.Stream, have, want.MaxDeliver); err != nil {
				return created, warnings, fmt.Errorf("jetstream setup: %w", err)
			}
			warnings = append(warnings, fmt.Sprintf("consumer %s: max_deliver raised from %d to %d (--max-deliver %d plus one), so that the server delivers a message as often as the workers need",
				cfg.Consumer, have.MaxDeliver, want.MaxDeliver, cfg.MaxDeliver))
		}
		if cfg.DeliverFrom != (DeliverFrom{}) {
			warnings = append(warnings, fmt.Sprintf("consumer %s exists already: DeliverFrom was ignored (it only applies to a new consumer)", cfg.Consumer))
		}
	}
	// The advisory stream keeps its advisories as long as the events
	// stream keeps the messages they name: no warning of its own.
	created.Advisories, err = setupAdvisories(ctx, js, &cfg)
	if err != nil {
		return created, warnings, err
	}
	return created, warnings, nil
}

// ensureStream creates the stream if it does not exist, else compares its
// settings with want. It returns the stream's settings.
func ensureStream(ctx context.Context, js natsjs.JetStream, want natsjs.StreamConfig,
	compare func(have, want *natsjs.StreamConfig) []FieldDiff) (natsjs.StreamConfig, bool, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err == nil {
			return s.CachedInfo().Config, true, nil
		}
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) { // created concurrently
			s, err = js.Stream(ctx, want.Name)
		}
	}
	if err != nil {
		return want, false, fmt.Errorf("jetstream setup: stream %q (subjects %s): %w", want.Name, strings.Join(want.Subjects, " "), err)
	}
	have := s.CachedInfo().Config
	if diffs := compare(&have, &want); len(diffs) > 0 {
		return have, false, &MismatchError{Kind: "stream", Name: want.Name, Diffs: diffs}
	}
	return have, false, nil
}

type differ []FieldDiff

func (d *differ) add(field string, have, want any) {
	h, w := fmt.Sprint(have), fmt.Sprint(want)
	if h != w {
		*d = append(*d, FieldDiff{Field: field, Have: h, Want: w})
	}
}

// compareCommon compares what both streams must have: the subjects they
// capture (others may be added), retention, storage and replicas.
func compareCommon(d *differ, have, want *natsjs.StreamConfig) {
	for _, s := range want.Subjects {
		if !slices.Contains(have.Subjects, s) {
			d.add("subjects", strings.Join(have.Subjects, ","), strings.Join(want.Subjects, ","))
			break
		}
	}
	d.add("retention", have.Retention, want.Retention)
	d.add("storage", have.Storage, want.Storage)
	d.add("num_replicas", have.Replicas, want.Replicas)
}

func compareEvents(have, want *natsjs.StreamConfig) []FieldDiff {
	var d differ
	compareCommon(&d, have, want)
	d.add("discard", have.Discard, want.Discard)
	d.add("max_age", age(have.MaxAge), age(want.MaxAge))
	d.add("max_bytes", limit(have.MaxBytes), limit(want.MaxBytes))
	d.add("max_msgs", limit(have.MaxMsgs), limit(want.MaxMsgs))
	d.add("duplicate_window", have.Duplicates, want.Duplicates)
	d.add("persist_mode", persistMode(have.PersistMode), persistMode(want.PersistMode))
	return d
}

// persistMode names a persist mode as the server's JSON does.
func persistMode(m natsjs.PersistModeType) string {
	if m == natsjs.AsyncPersistMode {
		return "async"
	}
	return "default"
}

// compareDeadLetters leaves the dead-letter stream's limits to the
// operator (discardWarnings reports them).
func compareDeadLetters(have, want *natsjs.StreamConfig) []FieldDiff {
	var d differ
	compareCommon(&d, have, want)
	if have.Duplicates == 0 {
		d.add("duplicate_window", have.Duplicates, want.Duplicates)
	}
	return d
}

func compareConsumer(have, want *natsjs.ConsumerConfig) []FieldDiff {
	var d differ
	if have.DeliverSubject != "" {
		d = append(d, FieldDiff{Field: "deliver_subject", Have: fmt.Sprintf("%q (a push consumer)", have.DeliverSubject), Want: "none (a pull consumer)"})
	}
	d.add("ack_policy", have.AckPolicy, want.AckPolicy)
	d.add("ack_wait", have.AckWait, want.AckWait)
	// max_deliver is raised in place when lower (Setup), never a mismatch.
	d.add("max_ack_pending", have.MaxAckPending, want.MaxAckPending)
	d.add("filter_subject", quoteOrNone(have.FilterSubject+strings.Join(have.FilterSubjects, ",")), quoteOrNone(""))
	return d
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return fmt.Sprintf("%q", s)
}

func age(d time.Duration) string {
	if d <= 0 {
		return "unlimited"
	}
	return d.String()
}

func limit(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

// deadLetterRetention says how long the dead-letter stream keeps dead
// letters, or nothing if it keeps them until an operator removes them.
func deadLetterRetention(c natsjs.StreamConfig) []string {
	limits := discardLimits(c)
	if len(limits) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("dead-letter stream %s discards dead letters %s: look at them with 'indexer dlq list' and requeue or purge them before",
		c.Name, strings.Join(limits, " or "))}
}

// discardWarnings lists the limits under which a stream with discard
// policy "old" drops messages whatever their state.
func discardWarnings(c natsjs.StreamConfig, unread string) []string {
	limits := discardLimits(c)
	if len(limits) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("stream %s discards its oldest messages %s, including messages %s: keep the consumer's lag well inside that limit (watch 'indexer status')",
		c.Name, strings.Join(limits, " or "), unread)}
}

// discardLimits names the limits under which a stream with discard policy
// "old" drops its oldest messages.
func discardLimits(c natsjs.StreamConfig) []string {
	if c.Discard != natsjs.DiscardOld {
		return nil
	}
	var limits []string
	if c.MaxAge > 0 {
		limits = append(limits, "older than "+c.MaxAge.String()+" (max_age)")
	}
	if c.MaxBytes > 0 {
		limits = append(limits, fmt.Sprintf("beyond %d bytes (max_bytes)", c.MaxBytes))
	}
	if c.MaxMsgs > 0 {
		limits = append(limits, fmt.Sprintf("beyond %d messages (max_msgs)", c.MaxMsgs))
	}
	if c.MaxMsgsPerSubject > 0 {
		limits = append(limits, fmt.Sprintf("beyond %d messages per subject (max_msgs_per_subject)", c.MaxMsgsPerSubject))
	}
	return limits
}

// Cluster describes the NATS servers a connection reaches: the cluster's
// name ("" for a single server) and how many servers it knows of (those
// given in the URL and those the servers announced).
func Cluster(js natsjs.JetStream) (name string, servers int) {
	nc := js.Conn()
	return nc.ConnectedClusterName(), len(nc.Servers())
}

// chooseReplicas settles Replicas 0 (3 on a cluster of 3 or more servers
// unless PersistAsync, 1 otherwise; an existing events stream's own), and returns a warning
// when one replica is chosen on a cluster: the stream is then unavailable
// while its one server is down, and lost with its disk.
func (c *SetupConfig) chooseReplicas(ctx context.Context, js natsjs.JetStream) []string {
	cluster, servers := Cluster(js)
	if c.Replicas == 0 {
		c.Replicas = 1
		if s, err := js.Stream(ctx, c.Stream); err == nil {
			c.Replicas = s.CachedInfo().Config.Replicas
		} else if cluster != "" && servers >= 3 && !c.PersistAsync {
			c.Replicas = 3
		}
	}
	if cluster == "" || c.Replicas > 1 {
		return nil
	}
	return []string{fmt.Sprintf("stream %s has only 1 replica on the %d-server cluster %q: while the server holding it is down, nothing can be published or consumed, and a lost disk loses the stream; use --replicas 3 (an existing stream: 'nats stream edit %s --replicas 3')",
		c.Stream, servers, cluster, c.Stream)}
}
