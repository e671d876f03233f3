// Package metrics owns the daemon's Prometheus surface: the chordkv_*
// metric families, the gRPC server metrics, the Go and process collectors,
// and the HTTP handler that serves them on /metrics (with net/http/pprof
// beside it when asked).
//
// It is the only package that imports the Prometheus client. internal/chord
// and internal/kv report events through their small Observer interfaces,
// which *Metrics implements; gauges of routing state and stored data are
// computed at scrape time from chord.Node.State and the store, so a node
// does no metrics work between scrapes beyond bumping counters and
// histograms. Client requests are counted by a gRPC interceptor, which sees
// the status code exactly as the client receives it.
//
// Names follow Prometheus conventions (base units, _total, _seconds) and
// are a contract: dashboards in deploy/ and users' alerts depend on them.
package metrics
