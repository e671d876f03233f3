// Package tlstest makes throwaway certificates for tests: a CA, a node
// certificate for 127.0.0.1 that serves and dials peers, a client
// certificate, and a client certificate from a CA nobody trusts.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are the PEM files New wrote.
type Files struct {
	CA                    string
	NodeCert, NodeKey     string // SANs 127.0.0.1 and localhost; server and client auth
	ClientCert, ClientKey string // signed by CA; client auth
	RogueCert, RogueKey   string // signed by another CA; client auth
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New writes a fresh set of certificates, valid for an hour, to a
// t.TempDir().
func New(t testing.TB) Files {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, "chordkv test CA")
	rogue := newCA(t, "rogue CA")
	f := Files{CA: filepath.Join(dir, "ca.crt")}
	writePEM(t, f.CA, "CERTIFICATE", ca.cert.Raw)
	f.NodeCert, f.NodeKey = ca.issue(t, dir, "node", func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.DNSNames = []string{"localhost"}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
	clientAuth := func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }
	f.ClientCert, f.ClientKey = ca.issue(t, dir, "client", clientAuth)
	f.RogueCert, f.RogueKey = rogue.issue(t, dir, "rogue", clientAuth)
	return f
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func template(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Minute), // tolerate a little clock skew
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func newCA(t testing.TB, name string) issuer {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{cert: cert, key: key}
}

// issue signs a leaf certificate adjusted by tweak and writes NAME.crt and
// NAME.key to dir.
func (ca issuer) issue(t testing.TB, dir, name string, tweak func(*x509.Certificate)) (certPath, keyPath string) {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tweak(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "PRIVATE KEY", keyDER)
	return certPath, keyPath
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
