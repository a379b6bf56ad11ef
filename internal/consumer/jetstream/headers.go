package jetstream

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/publish/natspub"
)

// Header names this package writes and reads. Dead letters carry the
// Indexer-* headers.
const (
	HeaderContentType     = natspub.HeaderContentType
	HeaderReason          = "Indexer-Reason"           // why, in words an operator can act on
	HeaderOriginalSeq     = "Indexer-Original-Seq"     // the stream sequence in the events stream
	HeaderOriginalSubject = "Indexer-Original-Subject" // where the event was published
	HeaderDeliveries      = "Indexer-Deliveries"       // deliveries before it was dead-lettered
	HeaderDataSize        = "Indexer-Data-Size"        // the whole payload's size (the data may be its first bytes)
	HeaderDataSHA256      = "Indexer-Data-SHA256"      // the whole payload's hex SHA-256 digest
)

const (
	maxReasonHeaderLength  = 2048
	unknownDeadLetterTable = "_unknown._unknown"
)

// TableSubject is the subject events of database.table are published to:
// natspub.TableSubject. Names may contain '.', so a subject is compared
// with the one built from an event (onTableSubject), never split.
func TableSubject(prefix, database, table string) string {
	return natspub.TableSubject(prefix, database, table)
}

// onTableSubject reports whether subject is TableSubject(prefix,
// database, table), without building it.
func onTableSubject(subject, prefix, database, table string) bool {
	p, d := len(prefix), len(database)
	return len(subject) == p+d+len(table)+2 &&
		subject[:p] == prefix && subject[p] == '.' &&
		subject[p+1:p+1+d] == database && subject[p+1+d] == '.' &&
		subject[p+2+d:] == table
}

// deadLetterSubject maps an events subject <prefix>.<database>.<table> to
// <dlqPrefix>.<database>.<table>, and anything else to
// <dlqPrefix>._unknown._unknown.
func deadLetterSubject(subject, prefix, dlqPrefix string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok || strings.Count(rest, ".") < 1 || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return dlqPrefix + "." + unknownDeadLetterTable
	}
	return dlqPrefix + "." + rest
}

// headerValue makes s safe as a header value: one line, bounded length.
func headerValue(s string) string {
	if len(s) > maxReasonHeaderLength {
		s = strings.ToValidUTF8(s[:maxReasonHeaderLength], "") + "…" // drops a cut rune
	}
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// noStreamError explains a publish nobody answered: no stream captures
// the subject (an error wrapping consumer.ErrStreamMissing), or the server
// could not answer now (an error the loop retries).
func noStreamError(ctx context.Context, js natsjs.JetStream, subject string) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := natspub.CheckStream(lctx, js, subject); err != nil {
		return err
	}
	return fmt.Errorf("jetstream publish to %s: %w", subject, nats.ErrNoResponders)
}
