package store

import (
	"bytes"
	"errors"
	"sync"

	"github.com/google/btree"
)

// Engine is the ordered byte-key store underneath a Store. The Store owns the
// encoding of keys and values; an Engine only keeps bytes in order, durably
// when asked. Implementations must be safe for concurrent use.
type Engine interface {
	// Get returns a copy of the value stored under key; ok is false when the
	// key is absent.
	Get(key []byte) (value []byte, ok bool, err error)

	// Write applies every op atomically: after a crash either all of them
	// are visible or none. With sync it returns only once the batch is
	// durable; an engine should let concurrent synced writes share one sync.
	Write(ops []Op, sync bool) error

	// Iterate calls fn on each key in [lower, upper) in ascending byte order
	// over a point-in-time view, until fn returns false. A nil bound is
	// unbounded. key and value are valid only during the call.
	Iterate(lower, upper []byte, fn func(key, value []byte) bool) error

	// Close releases the engine. Calls after Close return ErrClosed.
	Close() error
}

// deferredSyncer is an Engine that can split a synced Write in two: the
// batch is made visible (and queued for the log) at once, and wait returns
// once it is durable. Apply holds the keys' stripe locks only for the
// first half, so that a write to a key whose last write is still waiting
// for its fsync can join that same fsync instead of the next one. wait must
// be called exactly once.
type deferredSyncer interface {
	WriteDeferredSync(ops []Op) (wait func() error, err error)
}

// sortedGetter is an Engine that looks up many keys at once, faster than a
// Get each when the keys are close together: one iterator walks them in
// order, so a run of keys that the engine does not hold (a range a node
// is taking over) costs one seek rather than a search of every level per
// key. A Store uses it for the cache misses of a large Apply.
type sortedGetter interface {
	// GetSorted calls fn once for each of keys, which must be in
	// ascending order without duplicates, with the value stored under
	// it (nil and ok false when absent), over one point-in-time view.
	// value is valid only during the call. An error from fn stops the
	// walk and is returned.
	GetSorted(keys [][]byte, fn func(i int, value []byte, ok bool) error) error
}

// Op is one put or delete in an Engine write batch.
type Op struct {
	Key    []byte
	Value  []byte // ignored when Delete
	Delete bool
}

// ErrClosed is returned by operations on a closed Store or Engine.
var ErrClosed = errors.New("store: closed")

// memEngine keeps the data in a copy-on-write B-tree. An iteration clones
// the tree (O(1); later writes copy the nodes they touch) and walks the
// clone without holding the lock, so it sees a point-in-time view and its
// callback may call back into the store. It is meant for tests and
// simulations: nothing is durable, and sync is ignored.
type memEngine struct {
	mu     sync.Mutex
	tree   *btree.BTreeG[memKV]
	closed bool
}

type memKV struct{ key, value []byte }

func lessKV(a, b memKV) bool { return bytes.Compare(a.key, b.key) < 0 }

func newMemEngine() *memEngine { return &memEngine{tree: btree.NewG(32, lessKV)} }

func (m *memEngine) Get(key []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	kv, ok := m.tree.Get(memKV{key: key})
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(kv.value), true, nil
}

func (m *memEngine) Write(ops []Op, _ bool) error {
	// Copy before locking, so the lock covers only the tree edits.
	kvs := make([]memKV, len(ops))
	for i, op := range ops {
		kvs[i] = memKV{bytes.Clone(op.Key), bytes.Clone(op.Value)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for i, op := range ops {
		if op.Delete {
			m.tree.Delete(kvs[i])
		} else {
			m.tree.ReplaceOrInsert(kvs[i])
		}
	}
	return nil
}

// view is a point-in-time copy of the tree, for a walk that holds no lock.
func (m *memEngine) view() (*btree.BTreeG[memKV], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.tree.Clone(), nil
}

func (m *memEngine) Iterate(lower, upper []byte, fn func(key, value []byte) bool) error {
	view, err := m.view()
	if err != nil {
		return err
	}
	visit := func(kv memKV) bool { return fn(kv.key, kv.value) }
	switch {
	case lower == nil && upper == nil:
		view.Ascend(visit)
	case lower == nil:
		view.AscendLessThan(memKV{key: upper}, visit)
	case upper == nil:
		view.AscendGreaterOrEqual(memKV{key: lower}, visit)
	case bytes.Compare(lower, upper) < 0:
		view.AscendRange(memKV{key: lower}, memKV{key: upper}, visit)
	}
	return nil
}

func (m *memEngine) GetSorted(keys [][]byte, fn func(i int, value []byte, ok bool) error) error {
	view, err := m.view()
	if err != nil {
		return err
	}
	for i, k := range keys {
		kv, ok := view.Get(memKV{key: k})
		if err := fn(i, kv.value, ok); err != nil {
			return err
		}
	}
	return nil
}

func (m *memEngine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.tree = nil
	return nil
}
