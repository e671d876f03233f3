// Package e2e holds chordkv's end-to-end tests: real `chordkv serve`
// processes on 127.0.0.1, real kill -9 and restarts, and the CLI driven the
// way a shell script drives it (exec the binary, -o json, exit codes).
//
// The tests need a built binary named by CHORDKV_BIN (an absolute path).
// Without it they skip, so a plain `go test ./...` stays fast; `make e2e` and
// `make test` build bin/chordkv and set CHORDKV_BIN themselves:
//
//	make e2e
//	make e2e E2E_FLAGS='-v -run TestRing'   # also prints convergence timings
//
// Every wait in the harness is a bounded poll: a check is retried until it
// holds or a deadline passes, and the failure names the last thing that was
// wrong. On failure each node's log is printed.
package e2e
