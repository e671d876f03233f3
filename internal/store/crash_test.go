package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const crashChildEnv = "CHORDKV_STORE_CRASH_CHILD_DIR"

// TestKill9KeepsAcknowledgedWrites runs a writer in a child process (this
// test binary again), SIGKILLs it mid-stream and checks that every write the
// child acknowledged is in the store after reopening. A kill leaves the OS
// page cache intact, so this proves writes reach the WAL before Apply
// returns; TestPowerCutKeepsSyncedWrites covers the fsync itself.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(20 * time.Second)
	for len(acked) < 3000 && time.Now().Before(deadline) && sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			key, value, _ := strings.Cut(line, "=")
			acked[key] = value
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 100 {
		t.Fatalf("child acknowledged only %d writes before the deadline", len(acked))
	}

	s := mustOpen(t, Options{Dir: dir, Logger: quiet})
	defer s.Close()
	for key, value := range acked {
		e, ok, err := s.Get([]byte(key))
		if err != nil || !ok || string(e.Value) != value {
			t.Errorf("acknowledged %s=%s, after kill -9: %q ok=%v err=%v", key, value, e.Value, ok, err)
		}
	}
	t.Logf("%d acknowledged writes survived kill -9; store holds %d keys", len(acked), s.Stats().Keys)
	checkAccounting(t, s)
}

// crashChild writes from several goroutines until it is killed, printing
// "ack key=value" after each Apply returns.
func crashChild(dir string) {
	s, err := Open(Options{Dir: dir, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key, value := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("v%d", i)
				if _, err := s.Apply(put(key, uint64(i+1), byte(w), value)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %s=%s\n", key, value)
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Minute) // the parent kills us long before
	os.Exit(3)
}

// TestPowerCutKeepsSyncedWrites runs Pebble on a file system that can be
// cut back to what was last fsynced, as a power failure would, and checks
// that every acknowledged Apply survives while an unsynced write does not:
// Apply really syncs, also when WALMinSyncInterval holds syncs back.
func TestPowerCutKeepsSyncedWrites(t *testing.T) {
	for _, minSync := range []time.Duration{0, DefaultWALMinSyncInterval, 5 * time.Millisecond} {
		t.Run(fmt.Sprintf("min sync interval %s", minSync), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s := mustOpen(t, Options{Dir: "db", fs: fs, Logger: quiet, WALMinSyncInterval: minSync})
			applyFromWriters(t, s, 8, 200)
			// A write that skips the sync, straight to the engine.
			unsynced := put("unsynced", 1, 1, "v")
			if err := s.eng.Write([]Op{{Key: storageKey(unsynced.Key), Value: encodeValue(&unsynced)}}, false); err != nil {
				t.Fatal(err)
			}

			cut := fs.CrashClone(vfs.CrashCloneCfg{}) // only what was synced
			s.Close()
			s = mustOpen(t, Options{Dir: "db", fs: cut, Logger: quiet})
			defer s.Close()
			if got := s.Stats().Keys; got != 8*200 {
				t.Errorf("after power cut: %d keys, want %d", got, 8*200)
			}
			if _, ok, _ := s.Get(unsynced.Key); ok {
				t.Error("unsynced write survived the power cut: the crash model is not cutting anything")
			}
		})
	}
}

// applyFromWriters runs writers goroutines, each applying its own each keys
// (w<writer>-<i>) one after another, so every Apply waits for its sync
// before the writer's next.
func applyFromWriters(t *testing.T, s *Store, writers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Apply(put(fmt.Sprintf("w%d-%d", w, i), 1, byte(w), "v")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// TestWALMinSyncIntervalSpacesSyncs checks that the option reaches Pebble
// (syncCountingFS is in bench_test.go): with syncs at least interval apart,
// a stream of concurrent synced writes lasting d cannot have fsynced the log
// more than d/interval + 1 times, while each of them still waited for a sync
// (TestPowerCutKeepsSyncedWrites). The bound cannot hold by luck: each
// writer's 25 writes follow one another, so they need at least 25 syncs,
// and without the option they take far less than 25 intervals.
func TestWALMinSyncIntervalSpacesSyncs(t *testing.T) {
	const interval = 20 * time.Millisecond
	fs := &syncCountingFS{FS: vfs.NewMem()}
	s := mustOpen(t, Options{Dir: "db", fs: fs, Logger: quiet, WALMinSyncInterval: interval})
	defer s.Close()
	before := fs.walSyncs.Load()
	start := time.Now()
	applyFromWriters(t, s, 8, 25)
	syncs, took := fs.walSyncs.Load()-before, time.Since(start)
	if syncs < 25 {
		t.Errorf("%d log syncs counted for 25 writes in a row per writer: the counting file system misses the WAL", syncs)
	}
	if most := int64(took/interval) + 1; syncs > most {
		t.Errorf("%d log syncs in %s with WALMinSyncInterval %s; at most %d possible", syncs, took, interval, most)
	}
}
