// Package transport carries chord's remote calls over gRPC: the wire format
// of proto/chordkv/v1, a pooled client that implements chord.Transport, and
// the server side of the Chord and Admin services.
//
// It owns the boundary between the network and the node. Everything read off
// the wire is validated here (IDs are 20 bytes, a Peer's ID is the SHA-1 of
// its address, addresses are host:port) so that internal/chord only ever sees
// well-formed peers, and chord's errors are mapped to gRPC status codes here.
package transport
