package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chordkv/chordkv/internal/ring"
)

// Entry is one key's state on this node: its latest value, or a tombstone
// when the latest write was a delete. Entries returned by the Store own their
// byte slices; the caller may keep and modify them.
type Entry struct {
	Key       []byte
	Value     []byte // nil for a tombstone
	Version   Version
	Tombstone bool
}

// ErrCorrupt marks a stored record that cannot be decoded. The store treats
// such a record as absent: scans and digests skip it (with a log line) and
// the next Apply to its key overwrites it.
var ErrCorrupt = errors.New("store: corrupt record")

// On-disk layout. Engine keys order entries by ring position:
//
//	storage key = SHA-1(key) [20 bytes] || key
//
// so that a ring interval is one contiguous key range (two when it wraps past
// zero), and the top 12 bits of the key are its digest bucket.
//
// Engine values, format 1:
//
//	[0]      format version, 1
//	[1]      flags: bit 0 tombstone; other bits must be zero
//	[2:10]   HLC, big-endian
//	[10:30]  writer node ID
//	[30:]    value bytes (empty for a tombstone)
const (
	idLen        = len(ring.ID{})
	recordFormat = 1
	flagTomb     = 1 << 0
	headerLen    = 2 + 8 + idLen
)

// storageKey is the engine key of user key k.
func storageKey(k []byte) []byte {
	h := ring.HashKey(k)
	sk := make([]byte, 0, idLen+len(k))
	sk = append(sk, h[:]...)
	return append(sk, k...)
}

// encodeValue is the engine value of e.
func encodeValue(e *Entry) []byte {
	n := headerLen
	if !e.Tombstone {
		n += len(e.Value)
	}
	b := make([]byte, headerLen, n)
	b[0] = recordFormat
	if e.Tombstone {
		b[1] = flagTomb
	}
	binary.BigEndian.PutUint64(b[2:10], e.Version.HLC)
	copy(b[10:headerLen], e.Version.Node[:])
	if !e.Tombstone {
		b = append(b, e.Value...)
	}
	return b
}

// decodeValue parses an engine value into e's Version, Tombstone and Value
// (a copy). It never panics: any malformed input yields ErrCorrupt.
func decodeValue(b []byte, e *Entry) error {
	if len(b) < headerLen {
		return fmt.Errorf("%w: value is %d bytes, want at least %d", ErrCorrupt, len(b), headerLen)
	}
	if b[0] != recordFormat {
		return fmt.Errorf("%w: unknown format %d", ErrCorrupt, b[0])
	}
	if b[1]&^flagTomb != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, b[1])
	}
	e.Tombstone = b[1]&flagTomb != 0
	e.Version.HLC = binary.BigEndian.Uint64(b[2:10])
	copy(e.Version.Node[:], b[10:headerLen])
	rest := b[headerLen:]
	switch {
	case e.Tombstone && len(rest) > 0:
		return fmt.Errorf("%w: tombstone carries %d value bytes", ErrCorrupt, len(rest))
	case e.Tombstone:
		e.Value = nil
	default:
		e.Value = append(make([]byte, 0, len(rest)), rest...)
	}
	return nil
}

// decodeRecord parses an engine key and value into a full Entry, checking
// that the key's ring-position prefix matches its SHA-1.
func decodeRecord(sk, v []byte) (Entry, ring.ID, error) {
	var e Entry
	if len(sk) <= idLen {
		return e, ring.ID{}, fmt.Errorf("%w: storage key is %d bytes, want more than %d", ErrCorrupt, len(sk), idLen)
	}
	pos := ring.ID(sk[:idLen])
	if ring.HashKey(sk[idLen:]) != pos {
		return e, pos, fmt.Errorf("%w: key %q is stored under the wrong ring position", ErrCorrupt, sk[idLen:])
	}
	if err := decodeValue(v, &e); err != nil {
		return e, pos, err
	}
	e.Key = append([]byte(nil), sk[idLen:]...)
	return e, pos, nil
}

// storedSize is what an entry counts towards Stats.Bytes: key plus value.
func storedSize(e *Entry) int64 { return int64(len(e.Key) + len(e.Value)) }
