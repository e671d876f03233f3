package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

func node(b byte) ring.ID {
	var id ring.ID
	id[len(id)-1] = b
	return id
}

func TestVersionOrder(t *testing.T) {
	hiNode := node(1)
	hiNode[0] = 0xff // differs in the first byte: node bytes compare big-endian
	tests := []struct {
		name string
		a, b Version
		want int
	}{
		{"equal", Version{5, node(1)}, Version{5, node(1)}, 0},
		{"higher HLC wins", Version{6, node(1)}, Version{5, node(9)}, 1},
		{"lower HLC loses", Version{5, node(9)}, Version{6, node(1)}, -1},
		{"same HLC: node breaks tie", Version{5, node(2)}, Version{5, node(1)}, 1},
		{"same HLC: node bytes big-endian", Version{5, node(200)}, Version{5, hiNode}, -1},
		{"zero is oldest", Version{}, Version{1, ring.ID{}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Compare(tt.b); got != tt.want {
				t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := tt.b.Compare(tt.a); got != -tt.want {
				t.Errorf("antisymmetry: %v.Compare(%v) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
			if got := tt.a.After(tt.b); got != (tt.want > 0) {
				t.Errorf("After = %v, want %v", got, tt.want > 0)
			}
		})
	}
}

// fakeTime is a settable wall clock.
type fakeTime struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeTime) now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeTime) set(t time.Time) { f.mu.Lock(); f.t = t; f.mu.Unlock() }

func TestClock(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	ft := &fakeTime{t: base}
	c := NewClock(ft.now)

	t1 := c.Now()
	if t1 != HLCAt(base) {
		t.Fatalf("first Now = %d, want wall time %d", t1, HLCAt(base))
	}
	t2 := c.Now()
	if t2 != t1+1 {
		t.Fatalf("same millisecond: Now = %d, want logical tick %d", t2, t1+1)
	}
	ft.set(base.Add(-time.Hour)) // wall clock steps back
	t3 := c.Now()
	if t3 <= t2 {
		t.Fatalf("after wall clock went back: Now = %d, not after %d", t3, t2)
	}
	ft.set(base.Add(time.Second))
	t4 := c.Now()
	if t4 != HLCAt(base.Add(time.Second)) {
		t.Fatalf("wall clock ahead again: Now = %d, want %d", t4, HLCAt(base.Add(time.Second)))
	}

	remote := HLCAt(base.Add(10*time.Second)) + 7
	if err := c.Observe(remote); err != nil {
		t.Fatalf("Observe within drift: %v", err)
	}
	if got := c.Now(); got <= remote {
		t.Fatalf("Now after Observe(%d) = %d, want larger", remote, got)
	}
	if err := c.Observe(HLCAt(base.Add(time.Hour))); !errors.Is(err, ErrClockDrift) {
		t.Fatalf("Observe an hour ahead: err = %v, want ErrClockDrift", err)
	}
	if got := c.Now(); HLCTime(got).After(base.Add(time.Minute)) {
		t.Fatalf("rejected remote timestamp still moved the clock to %v", HLCTime(got))
	}
	c.SetMaxDrift(0)
	if err := c.Observe(HLCAt(base.Add(time.Hour))); err != nil {
		t.Fatalf("Observe with drift check off: %v", err)
	}
}

func TestClockConcurrentUnique(t *testing.T) {
	ft := &fakeTime{t: time.UnixMilli(1_700_000_000_000)} // frozen: all logical
	c := NewClock(ft.now)
	const workers, each = 8, 2000
	out := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			prev := uint64(0)
			for range each {
				ts := c.Now()
				if ts <= prev {
					t.Errorf("worker %d: %d after %d", w, ts, prev)
				}
				prev = ts
				out[w] = append(out[w], ts)
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, ts := range out {
		for _, x := range ts {
			if seen[x] {
				t.Fatalf("timestamp %d issued twice", x)
			}
			seen[x] = true
		}
	}
}
