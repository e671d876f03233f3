package transport

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/chordkv/chordkv/internal/ring"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

func TestValidateAddr(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7000", true},
		{"node-1.example:1", true},
		{"[::1]:65535", true},
		{"", false},
		{"127.0.0.1", false},
		{":7000", false},
		{"127.0.0.1:0", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:http", false},
		{"a:b:c", false},
	}
	for _, tt := range tests {
		if err := ValidateAddr(tt.addr); (err == nil) != tt.ok {
			t.Errorf("ValidateAddr(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

// FuzzDecodePeer checks that any id and address either decode to a peer
// whose ID is the hash of its address or fail, and never panic.
func FuzzDecodePeer(f *testing.F) {
	id := ring.HashAddr("127.0.0.1:7000")
	f.Add(id[:], "127.0.0.1:7000")
	f.Add([]byte{}, "")
	f.Add(id[:19], "127.0.0.1:7000")
	f.Add(id[:], "[::1]:7000")
	f.Fuzz(func(t *testing.T, id []byte, addr string) {
		p, err := DecodePeer(&pb.Peer{Id: id, Addr: addr})
		if err != nil {
			return
		}
		if p.Addr != addr || p.ID != ring.HashAddr(addr) {
			t.Fatalf("decoded %+v from id %x addr %q", p, id, addr)
		}
	})
}

// FuzzDecodeWire feeds arbitrary bytes to every message decoder a node runs
// on network input, as a request or as a peer's reply.
func FuzzDecodeWire(f *testing.F) {
	good := &pb.Peer{Id: func() []byte { id := ring.HashAddr("h:1"); return id[:] }(), Addr: "h:1"}
	for _, m := range []proto.Message{
		&pb.LeaveNotice{Leaving: good, Predecessor: good, Successors: []*pb.Peer{good, nil}},
		&pb.GetNeighborsResponse{Predecessor: good, Successors: []*pb.Peer{good}},
		&pb.FindSuccessorStepResponse{Done: true, Successors: []*pb.Peer{good}, Next: []*pb.Peer{{Addr: "x"}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var leave pb.LeaveNotice
		if proto.Unmarshal(b, &leave) == nil {
			if n, err := decodeLeave(&leave); err == nil && n.Leaving.IsZero() {
				t.Fatal("decoded a leave notice without a leaving peer")
			}
		}
		var nb pb.GetNeighborsResponse
		if proto.Unmarshal(b, &nb) == nil {
			_, _ = decodeNeighbors(&nb)
		}
		var st pb.FindSuccessorStepResponse
		if proto.Unmarshal(b, &st) == nil {
			if s, err := decodeStep(&st); err == nil && len(s.Successors)+len(s.Next) > maxPeerList*2 {
				t.Fatal("decoded more peers than the limit")
			}
		}
		var req pb.FindSuccessorStepRequest
		if proto.Unmarshal(b, &req) == nil {
			_, _ = DecodeID(req.GetId())
		}
	})
}
