package jetstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startServer starts a plain nats-server (no JetStream) with opts on a
// free loopback port, for connection tests.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func dialQuiet(cfg ConnConfig) (*nats.Conn, error) {
	cfg.Logger = slog.New(slog.DiscardHandler)
	return Dial(cfg)
}

func TestDialToken(t *testing.T) {
	s := startServer(t, &server.Options{Authorization: "s3cret"})
	addr := s.Addr().String()

	_, err := dialQuiet(ConnConfig{URL: "nats://wrongtoken@" + addr})
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("Dial with a bad token: %v, want nats.ErrAuthorization", err)
	}
	if !strings.Contains(err.Error(), "--nats-token") || strings.Contains(err.Error(), "wrongtoken") {
		t.Errorf("error %q should say which option to fix and never show the token", err)
	}
	if _, err := dialQuiet(ConnConfig{URL: "nats://" + addr}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("Dial without a token: %v", err)
	}
	for _, cfg := range []ConnConfig{{URL: "nats://s3cret@" + addr}, {URL: "nats://" + addr, Token: "s3cret"}} {
		nc, err := dialQuiet(cfg)
		if err != nil {
			t.Fatalf("Dial %s: %v", RedactURL(cfg.URL), err)
		}
		nc.Close()
	}
}

func TestDialNoServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = dialQuiet(ConnConfig{URL: "nats://user:pw@" + addr})
	if err == nil || !strings.Contains(err.Error(), "--nats-url") || strings.Contains(err.Error(), "pw@") {
		t.Errorf("Dial with nobody listening: %v", err)
	}
}

func TestDialTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, cert := writeTestCerts(t, dir)
	s := startServer(t, &server.Options{TLS: true, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	url := "tls://" + s.Addr().String()

	_, err := dialQuiet(ConnConfig{URL: url})
	if err == nil {
		t.Fatal("Dial accepted a certificate signed by an unknown authority")
	}
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) || !strings.Contains(err.Error(), "--nats-ca") {
		t.Errorf("Dial without the CA: %v; want an x509.UnknownAuthorityError that says --nats-ca", err)
	}
	for name, cfg := range map[string]ConnConfig{
		"with CAFile":        {URL: url, CAFile: caFile},
		"insecure":           {URL: url, InsecureSkipVerify: true},
		"nats:// and CAFile": {URL: "nats://" + s.Addr().String(), CAFile: caFile},
	} {
		nc, err := dialQuiet(cfg)
		if err != nil {
			t.Errorf("Dial %s: %v", name, err)
			continue
		}
		if _, err := nc.TLSConnectionState(); err != nil {
			t.Errorf("Dial %s: not a TLS connection: %v", name, err)
		}
		nc.Close()
	}
	if _, err := dialQuiet(ConnConfig{URL: url, CertFile: "x.pem"}); err == nil || !strings.Contains(err.Error(), "--nats-key") {
		t.Errorf("Dial with a certificate and no key: %v", err)
	}
}

// writeTestCerts writes a CA certificate to dir/ca.pem and returns its
// path and a server certificate for 127.0.0.1 that the CA signed.
func writeTestCerts(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "indexer test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}

// TestDialErrorHidesPassword: a URL that does not parse, or a server that
// is not there, gives an error without the URL's password.
func TestDialErrorHidesPassword(t *testing.T) {
	for _, u := range []string{"nats://u:Sentinel7pw%zz@127.0.0.1:1", "nats://u:Sentinel7pw@127.0.0.1:1", "nats://Sentinel7pw@127.0.0.1:99999"} {
		_, err := Dial(ConnConfig{URL: u, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || strings.Contains(err.Error(), "Sentinel7pw") {
			t.Errorf("Dial(%s): %v", RedactURL(u), err)
		}
	}
}
