package store

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
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

// Op is one put or delete in an Engine write batch.
type Op struct {
	Key    []byte
	Value  []byte // ignored when Delete
	Delete bool
}

// ErrClosed is returned by operations on a closed Store or Engine.
var ErrClosed = errors.New("store: closed")

// memEngine keeps the data in a sorted slice that is replaced, never
// modified, on every write: reads and iterations work on an immutable
// snapshot without locks, writes cost O(n). It is meant for tests and small
// simulations, where obviously correct beats fast.
type memEngine struct {
	mu     sync.Mutex // serialises writers
	data   atomic.Pointer[[]memKV]
	closed atomic.Bool
}

type memKV struct{ key, value []byte }

func newMemEngine() *memEngine {
	m := &memEngine{}
	m.data.Store(&[]memKV{})
	return m
}

func cmpKV(a memKV, k []byte) int { return bytes.Compare(a.key, k) }

func (m *memEngine) Get(key []byte) ([]byte, bool, error) {
	if m.closed.Load() {
		return nil, false, ErrClosed
	}
	data := *m.data.Load()
	i, ok := slices.BinarySearchFunc(data, key, cmpKV)
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(data[i].value), true, nil
}

func (m *memEngine) Write(ops []Op, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	data := slices.Clone(*m.data.Load())
	for _, op := range ops {
		i, ok := slices.BinarySearchFunc(data, op.Key, cmpKV)
		switch {
		case op.Delete && ok:
			data = slices.Delete(data, i, i+1)
		case op.Delete:
		case ok:
			data[i].value = bytes.Clone(op.Value)
		default:
			data = slices.Insert(data, i, memKV{bytes.Clone(op.Key), bytes.Clone(op.Value)})
		}
	}
	m.data.Store(&data)
	return nil
}

func (m *memEngine) Iterate(lower, upper []byte, fn func(key, value []byte) bool) error {
	if m.closed.Load() {
		return ErrClosed
	}
	data := *m.data.Load()
	i := 0
	if lower != nil {
		i, _ = slices.BinarySearchFunc(data, lower, cmpKV)
	}
	for ; i < len(data); i++ {
		if upper != nil && bytes.Compare(data[i].key, upper) >= 0 {
			break
		}
		if !fn(data[i].key, data[i].value) {
			break
		}
	}
	return nil
}

func (m *memEngine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Swap(true) {
		return ErrClosed
	}
	m.data.Store(&[]memKV{})
	return nil
}
