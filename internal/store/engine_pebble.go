package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleEngine is the production Engine: a Pebble LSM in a directory.
// Pebble's commit pipeline writes concurrent batches to the WAL together and
// lets every synced batch in flight share one fsync, which is what makes
// Store.Apply's one-sync-per-call affordable under load.
type pebbleEngine struct {
	db *pebble.DB

	// closeMu makes Close wait for calls in flight and turns later calls
	// into ErrClosed; Pebble itself panics when used after Close.
	closeMu sync.RWMutex
	closed  bool
}

type pebbleConfig struct {
	dir           string
	cacheBytes    int64
	memTableBytes uint64
	walMinSync    time.Duration // Options.WALMinSyncInterval
	logger        *slog.Logger
	fs            vfs.FS // nil: the OS file system; tests inject crashable memory
}

func openPebble(c pebbleConfig) (*pebbleEngine, error) {
	cache := pebble.NewCache(c.cacheBytes)
	// The DB takes its own reference; ours goes when Open returns.
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: c.memTableBytes,
		// Two memtables (one filling, one flushing) bound memtable memory
		// at 2 × MemTableSize, keeping an idle node small.
		MemTableStopWritesThreshold: 2,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{c.logger},
	}
	// Every write looks up the key's stored version (last writer wins),
	// and a key the cache does not hold is mostly a new one: a join's
	// take-over, a bulk load, a key space larger than the cache. Without a
	// filter, Pebble searches every level's table for it. Ten bits a key
	// (1.25 B of filter per key, held in the block cache) makes a lookup
	// of an absent key skip about 99% of tables, as CockroachDB configures.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if c.fs != nil {
		opts.FS = c.fs
	}
	if c.walMinSync > 0 {
		minSync := c.walMinSync
		opts.WALMinSyncInterval = func() time.Duration { return minSync }
	}
	opts.EventListener = stallLogger(c.logger)
	db, err := pebble.Open(c.dir, opts)
	if err != nil {
		return nil, err
	}
	return &pebbleEngine{db: db}, nil
}

func (p *pebbleEngine) Get(key []byte) ([]byte, bool, error) {
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	if p.closed {
		return nil, false, ErrClosed
	}
	v, closer, err := p.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	// Pebble's slice is valid only until closer.Close.
	v = bytes.Clone(v)
	if err := closer.Close(); err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func (p *pebbleEngine) Write(ops []Op, sync bool) error {
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	b, err := p.batch(ops)
	if err != nil {
		return err
	}
	defer b.Close()
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	return b.Commit(wo)
}

// WriteDeferredSync implements deferredSyncer with Pebble's
// ApplyNoSyncWait (marked experimental by Pebble, and what CockroachDB
// uses for its Raft log): the batch is in the WAL queue and visible when
// it returns, exactly as with a synced Commit before its fsync, and wait
// blocks until the fsync the batch shares with its group is done.
func (p *pebbleEngine) WriteDeferredSync(ops []Op) (wait func() error, err error) {
	p.closeMu.RLock()
	if p.closed {
		p.closeMu.RUnlock()
		return nil, ErrClosed
	}
	b, err := p.batch(ops)
	if err == nil {
		err = p.db.ApplyNoSyncWait(b, pebble.Sync)
	}
	if err != nil {
		// Nothing waits on the sync of a batch that was not committed.
		if b != nil {
			_ = b.Close()
		}
		p.closeMu.RUnlock()
		return nil, err
	}
	return func() error {
		// Close waits for closeMu, so the DB stays open until the sync.
		defer p.closeMu.RUnlock()
		err := b.SyncWait()
		if cerr := b.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

func (p *pebbleEngine) batch(ops []Op) (*pebble.Batch, error) {
	b := p.db.NewBatch()
	for _, op := range ops {
		var err error
		if op.Delete {
			err = b.Delete(op.Key, nil)
		} else {
			err = b.Set(op.Key, op.Value, nil)
		}
		if err != nil {
			_ = b.Close()
			return nil, err
		}
	}
	return b, nil
}

func (p *pebbleEngine) Iterate(lower, upper []byte, fn func(key, value []byte) bool) (err error) {
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := it.Close(); err == nil {
			err = cerr
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if !fn(it.Key(), v) {
			return nil
		}
	}
	return it.Error()
}

// GetSorted walks one iterator bounded by the first and last key. Each
// lookup first compares with where the iterator stands: when it is already
// past the key (a gap in what the engine holds, as when a node takes over a
// range it held nothing of) the key is absent without a seek, and once the
// iterator is exhausted so are the rest. Otherwise it seeks, and Pebble
// turns a forward seek close to the last one into a few steps (its
// TrySeekUsingNext). Iterators skip bloom filters, so for a few keys spread
// over a large store, a Get each is cheaper; the Store decides.
func (p *pebbleEngine) GetSorted(keys [][]byte, fn func(i int, value []byte, ok bool) error) (err error) {
	if len(keys) == 0 {
		return nil
	}
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	last := keys[len(keys)-1]
	upper := append(bytes.Clone(last), 0) // the smallest key after last
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: keys[0], UpperBound: upper})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := it.Close(); err == nil {
			err = cerr
		}
	}()
	valid := it.First()
	for i, k := range keys {
		if valid && bytes.Compare(it.Key(), k) < 0 {
			valid = it.SeekGE(k)
		}
		if !valid {
			if err := it.Error(); err != nil {
				return err
			}
			if err := fn(i, nil, false); err != nil {
				return err
			}
			continue
		}
		if !bytes.Equal(it.Key(), k) {
			if err := fn(i, nil, false); err != nil {
				return err
			}
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(i, v, true); err != nil {
			return err
		}
	}
	return nil
}

func (p *pebbleEngine) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.closed = true
	return p.db.Close()
}

// stallLogger reports Pebble's write stalls (every write waits until a
// flush or compaction catches up): a stall holds up every synced Apply in
// flight, so it shows as a latency spike that the operator should be able
// to explain from the log.
func stallLogger(log *slog.Logger) *pebble.EventListener {
	var (
		mu    sync.Mutex
		start time.Time
	)
	return &pebble.EventListener{
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			mu.Lock()
			start = time.Now()
			mu.Unlock()
			log.Warn("write stall", "component", "pebble", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			mu.Lock()
			took := time.Since(start)
			mu.Unlock()
			log.Info("write stall over", "component", "pebble", "took", took)
		},
	}
}

// pebbleLogger routes Pebble's messages to slog. Pebble's informational
// chatter (WAL recovery on every open) goes to Debug.
type pebbleLogger struct{ l *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is Pebble's report of an unrecoverable internal state (for example a
// failed WAL sync, after which durability can no longer be promised). Pebble
// requires that it not return; like Pebble's default logger we exit, so the
// node restarts from what is durable rather than acknowledging writes that
// may be lost.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.l.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	os.Exit(1)
}
