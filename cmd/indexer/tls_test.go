package main

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
	"strings"
	"testing"
	"time"

	"github.com/streamindex/indexer/internal/testserver"
)

// TestRedisTLSVerifiedByDefault: rediss:// verifies the server's
// certificate; an untrusted one is refused with a line naming --redis-ca,
// and the CA makes it work.
func TestRedisTLSVerifiedByDefault(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := selfSigned(t, nil, nil, true)
	cert, key := selfSigned(t, ca, caKey, false)
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	certFile := write("cert.pem", &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := write("key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	tlsPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	testserver.Redis(t, testserver.RedisConfig{Args: []string{"--tls-port", tlsPort,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-auth-clients", "no"}})
	url := "rediss://:secret-in-url@127.0.0.1:" + tlsPort + "/0"

	r := indexer(t, nil, "", "stats", "--redis-url", url)
	if r.Code != exitFail || !strings.Contains(r.Stderr, "--redis-ca") || strings.Contains(r.Stderr, "secret-in-url") {
		t.Fatalf("untrusted certificate: %+v", r)
	}
	if r := indexer(t, nil, "", "stats", "--redis-url", url, "--redis-ca", caFile); r.Code != exitOK {
		t.Fatalf("with --redis-ca: %+v", r)
	}
	if r := indexer(t, nil, "", "stats", "--redis-url", strings.Replace(url, "rediss", "redis", 1), "--redis-ca", caFile); r.Code != exitUsage {
		t.Fatalf("TLS flags without rediss://: %+v", r)
	}
}

// selfSigned makes a certificate for 127.0.0.1 signed by parent (a CA
// when isCA).
func selfSigned(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "indexer test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
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
