package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/chordkv/chordkv/internal/ring"
)

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
	}{
		{"value", Entry{Key: []byte("k"), Value: []byte("hello"), Version: Version{42, node(7)}}},
		{"empty value", Entry{Key: []byte("k"), Value: []byte{}, Version: Version{1, node(1)}}},
		{"tombstone", Entry{Key: []byte("k"), Version: Version{1 << 60, node(255)}, Tombstone: true}},
		{"binary key and value", Entry{Key: []byte{0, 0xff, 0}, Value: bytes.Repeat([]byte{0xab}, 1000), Version: Version{^uint64(0), ring.HashKey([]byte("n"))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sk := storageKey(tt.e.Key)
			h := ring.HashKey(tt.e.Key)
			if !bytes.Equal(sk[:idLen], h[:]) || !bytes.Equal(sk[idLen:], tt.e.Key) {
				t.Fatalf("storage key %x is not SHA-1(key) || key", sk)
			}
			v := encodeValue(&tt.e)
			if len(v) != headerLen+len(tt.e.Value) {
				t.Errorf("encoded %d bytes, want header %d + value %d", len(v), headerLen, len(tt.e.Value))
			}
			got, pos, err := decodeRecord(sk, v)
			if err != nil {
				t.Fatal(err)
			}
			if pos != h {
				t.Errorf("position %s, want %s", pos, h)
			}
			if !entriesEqual(got, tt.e) {
				t.Errorf("round trip: got %+v, want %+v", got, tt.e)
			}
		})
	}
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	good := encodeValue(&Entry{Key: []byte("k"), Value: []byte("v"), Version: Version{9, node(1)}})
	tomb := encodeValue(&Entry{Key: []byte("k"), Version: Version{9, node(1)}, Tombstone: true})
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	tests := []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"short header", good[:headerLen-1]},
		{"unknown format", mod(good, func(b []byte) []byte { b[0] = 2; return b })},
		{"unknown flag", mod(good, func(b []byte) []byte { b[1] |= 0x80; return b })},
		{"tombstone with value", append(bytes.Clone(tomb), 'x')},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Entry
			if err := decodeValue(tt.v, &e); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeValue(%x) = %v, want ErrCorrupt", tt.v, err)
			}
		})
	}
	sk := storageKey([]byte("k"))
	for name, k := range map[string][]byte{
		"storage key without user key": sk[:idLen],
		"wrong ring position":          append(bytes.Clone(sk[:idLen]), 'j'),
	} {
		if _, _, err := decodeRecord(k, good); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeRecord = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecode checks that no input makes the decoder panic, and that whatever
// it accepts re-encodes to the same bytes (the format has one encoding).
func FuzzDecode(f *testing.F) {
	f.Add([]byte("k"), encodeValue(&Entry{Key: []byte("k"), Value: []byte("v"), Version: Version{9, node(1)}}))
	f.Add([]byte("k"), encodeValue(&Entry{Key: []byte("k"), Version: Version{9, node(1)}, Tombstone: true}))
	f.Add([]byte{}, []byte{})
	f.Add([]byte("x"), []byte{1, 1})
	f.Fuzz(func(t *testing.T, key, v []byte) {
		var e Entry
		if err := decodeValue(v, &e); err == nil {
			if again := encodeValue(&e); !bytes.Equal(again, v) {
				t.Fatalf("decode/encode not canonical: %x -> %+v -> %x", v, e, again)
			}
		}
		// Arbitrary storage keys, and well-formed ones carrying key.
		_, _, _ = decodeRecord(key, v)
		if len(key) > 0 {
			if got, _, err := decodeRecord(storageKey(key), v); err == nil && !bytes.Equal(got.Key, key) {
				t.Fatalf("decoded key %q, want %q", got.Key, key)
			}
		}
	})
}

func entriesEqual(a, b Entry) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Tombstone == b.Tombstone
}
