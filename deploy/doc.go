// Package deploy checks what deploy/ ships — the Prometheus alerting rules,
// the Grafana dashboard, the Compose file — against the worker itself:
// the rules are parsed and validated as `promtool check rules` does
// (Prometheus's rulefmt and PromQL parser), every series the rules and the
// dashboard name is one the worker exports (read from its metrics
// registry), each alert is evaluated by Prometheus's PromQL engine against
// series that must fire it and series that must not, and every file the
// Compose file refers to exists.
//
// It is a module of its own so that Prometheus's dependencies stay out of
// indexer's go.mod; `make test` runs it.
package deploy
