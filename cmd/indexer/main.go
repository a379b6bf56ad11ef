// Command indexer keeps GigAPI's file index in Redis, fed by events from a
// Redis Stream or a NATS JetStream stream. Run 'indexer --help'.
//
// This package is the only one that reads flags, the environment and
// config files; it turns them into the Config structs of the internal
// packages.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	redis.SetLogger(goRedisLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		getenv:    os.Getenv,
		stderrTTY: isTerminal(os.Stderr),
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
