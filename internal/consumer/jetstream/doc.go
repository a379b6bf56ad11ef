// Package jetstream is the NATS JetStream source of the consume loop
// (docs/DESIGN.md §5): a durable pull consumer with explicit acks, read in
// batches, with poison messages published to a dead-letter stream and then
// terminated. It also creates the streams and the consumer ('indexer
// setup'), publishes events ('indexer publish'), and dials NATS.
//
// Subjects follow docs/DESIGN.md §2: events are published to
// idx.events.<database>.<table> with the headers Content-Type
// (application/json or application/msgpack) and Nats-Msg-Id (the event id,
// which the stream de-duplicates within its window); dead letters go to
// idx.dlq.<database>.<table>. The Source checks that an event came on its
// own table's subject (Source.CheckEvent), so that subject permissions
// confine writers.
//
// Delivery limits. The consumer must deliver a message once more than the
// loop's MaxDeliver, so that the loop dead-letters it rather than the
// server dropping it: New raises a lower consumer MaxDeliver (or refuses to
// start), and Advisories dead-letters what the server gives up on all the
// same, from its max-deliveries advisories (maxdeliver.go, advisory.go).
//
// Pulling. Each Fetch sends one pull request for at most max messages that
// waits at most wait for the first one and ends as soon as some were
// delivered ("no_wait" with "expires"): a backlog comes back in one round
// trip, an idle stream costs one request per wait, and a short linger wait
// (10 ms) is honoured. nats.go's Consumer.Fetch has no such mode (it waits
// for the full batch or the expiry), and Consumer.Messages keeps pull
// requests open while nobody reads, so an idle or stuck worker would hold
// messages another worker could take.
//
// Acknowledging. Ack publishes "+ACK" for each message (like nats.go's
// Ack: no round trip) rather than DoubleAck (a round trip per message):
// a lost ack only causes a redelivery, which the idempotent index absorbs.
// The last ack of each call asks for the server's answer, which comes once
// the server processed every ack before it (it processes one connection's
// acks in order). Ack does not wait for it, so the server records one
// batch's acks while the loop applies the next; Flush and Close do wait,
// and a "no consumer" answer fails the next Ack. DeadLetter waits for its
// terminations the same way before it returns.
package jetstream
