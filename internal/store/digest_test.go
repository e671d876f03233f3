package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// TestEntryHashIsStable pins entryHash to its definition: the first 8 bytes,
// big-endian, of SHA-256 over storage key || HLC || writer || tombstone.
// Replicas of different builds compare digests made of these hashes, so a
// change to the bytes hashed would make every bucket differ and every
// replica re-send its data. The golden values also pin the storage key's
// layout, which the hash covers.
func TestEntryHashIsStable(t *testing.T) {
	reference := func(sk []byte, e *Entry) uint64 {
		h := sha256.New()
		h.Write(sk)
		var hlc [8]byte
		binary.BigEndian.PutUint64(hlc[:], e.Version.HLC)
		h.Write(hlc[:])
		h.Write(e.Version.Node[:])
		if e.Tombstone {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
		return binary.BigEndian.Uint64(h.Sum(nil)[:8])
	}
	var writer [idLen]byte
	copy(writer[:], "node-that-wrote-this")
	for _, tc := range []struct {
		name   string
		keyLen int
		tomb   bool
		golden uint64 // what every build since the digest's first (2388285) computes
	}{
		{"short key", 3, false, 0x5ea2a186e549b6e2},
		{"short key tombstone", 3, true, 0xbc31428933d1f07a},
		{"key of 200 bytes", 200, false, 0x3a326bbe4364f193},
		{"long key tombstone", 1000, true, 0x19269a978f6b3f8e},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := bytes.Repeat([]byte{'k'}, tc.keyLen)
			e := Entry{Key: key, Version: Version{HLC: 0x0102030405060708, Node: writer}, Tombstone: tc.tomb}
			if !tc.tomb {
				e.Value = []byte("value")
			}
			sk := storageKey(key)
			got := entryHash(sk, &e)
			if want := reference(sk, &e); got != want {
				t.Fatalf("entryHash = %#x, want %#x", got, want)
			}
			if got != tc.golden {
				t.Fatalf("entryHash = %#x, want the earlier builds' %#x", got, tc.golden)
			}
		})
	}
}

func BenchmarkEntryHash(b *testing.B) {
	e := Entry{Key: []byte("bench-key-000000042"), Value: make([]byte, 100), Version: Version{HLC: 1}}
	sk := storageKey(e.Key)
	b.ReportAllocs()
	for b.Loop() {
		entryHash(sk, &e)
	}
}
