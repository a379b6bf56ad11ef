package testserver

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
	"strconv"
	"testing"
	"time"
)

// TLSFiles are PEM files for TLS tests: a CA, and a certificate for
// 127.0.0.1 it signed (usable by servers and by clients) with its key.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
}

// NewTLSFiles writes a fresh CA and certificate into a t.TempDir().
func NewTLSFiles(t testing.TB) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := certificate(t, nil, nil)
	cert, key := certificate(t, ca, caKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return TLSFiles{
		CAFile:   write("ca.pem", "CERTIFICATE", ca.Raw),
		CertFile: write("cert.pem", "CERTIFICATE", cert.Raw),
		KeyFile:  write("key.pem", "EC PRIVATE KEY", der),
	}
}

// RedisArgs are the redis-server arguments that serve TLS on port with
// these files; with clientCerts the server requires client certificates
// signed by the CA.
func (f TLSFiles) RedisArgs(port int, clientCerts bool) []string {
	auth := "no"
	if clientCerts {
		auth = "yes"
	}
	return []string{"--tls-port", strconv.Itoa(port), "--tls-cert-file", f.CertFile, "--tls-key-file", f.KeyFile,
		"--tls-ca-cert-file", f.CAFile, "--tls-auth-clients", auth}
}

// FreePort returns a free loopback TCP port (another process may take it
// before it is used).
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// certificate makes a CA (parent nil) or a certificate for 127.0.0.1
// signed by parent.
func certificate(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "indexer test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.Subject.CommonName = "indexer test CA"
	} else {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
