package transport

import (
	"container/list"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
)

var errPoolClosed = errors.New("transport: client is closed")

// pool keeps at most size client connections, one per peer address, and
// evicts the least recently used one to make room. A connection is closed
// only once no call is using it, so eviction or a redial never cuts off a
// call in flight.
type pool struct {
	dial func(addr string) (*grpc.ClientConn, error)
	size int

	mu     sync.Mutex
	conns  map[string]*list.Element // of *pooledConn
	lru    *list.List               // front is most recently used
	closed bool
}

type pooledConn struct {
	addr    string
	cc      *grpc.ClientConn
	refs    int  // calls in flight; guarded by pool.mu
	retired bool // out of the pool; close when refs drops to 0
}

func newPool(size int, dial func(string) (*grpc.ClientConn, error)) *pool {
	return &pool{dial: dial, size: size, conns: map[string]*list.Element{}, lru: list.New()}
}

// acquire returns addr's connection, dialling one if needed. The caller
// must release it.
func (p *pool) acquire(addr string) (*pooledConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	if e, ok := p.conns[addr]; ok {
		p.lru.MoveToFront(e)
		pc := e.Value.(*pooledConn)
		pc.refs++
		return pc, nil
	}
	// grpc.NewClient does no I/O (it connects lazily on the first call), so
	// holding the lock here is cheap.
	cc, err := p.dial(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	pc := &pooledConn{addr: addr, cc: cc, refs: 1}
	p.conns[addr] = p.lru.PushFront(pc)
	for p.lru.Len() > p.size {
		p.retireLocked(p.lru.Back().Value.(*pooledConn))
	}
	return pc, nil
}

// release ends one call's use of pc.
func (p *pool) release(pc *pooledConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc.refs--
	if pc.retired && pc.refs == 0 {
		_ = pc.cc.Close()
	}
}

// drop takes pc out of the pool so that the next call to its address dials
// afresh instead of waiting out the old connection's reconnect backoff.
func (p *pool) drop(pc *pooledConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !pc.retired {
		p.retireLocked(pc)
	}
}

func (p *pool) retireLocked(pc *pooledConn) {
	if e, ok := p.conns[pc.addr]; ok && e.Value == pc {
		p.lru.Remove(e)
		delete(p.conns, pc.addr)
	}
	pc.retired = true
	if pc.refs == 0 {
		_ = pc.cc.Close()
	}
}

// len is the number of pooled connections.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// close retires every connection; calls in flight finish first.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for p.lru.Len() > 0 {
		p.retireLocked(p.lru.Front().Value.(*pooledConn))
	}
}
