// Package docker tests deploy/: the FROM scratch image, the 5-node compose
// ring, and the Grafana dashboard's metric names.
//
//   - TestComposeFileIsValid and TestDashboardUsesContractMetrics need no
//     engine: they only run `docker compose config` (or `docker-compose
//     config`) and read the dashboard JSON, so they run in `make unit` too.
//   - TestComposeCluster builds an image from the binary named by
//     CHORDKV_BIN (no pull: the image is FROM scratch), starts the compose
//     file's five chordkv nodes under a unique project name, and checks the
//     ring, puts and gets through node1's published port, a docker kill, a
//     network partition and its repair, and a rolling restart. It skips,
//     saying why, when CHORDKV_BIN is unset or no docker engine answers.
//
// `make e2e-docker` (part of `make test`) builds bin/chordkv and runs them.
// Every wait is a bounded poll; none asserts a speed.
package docker
