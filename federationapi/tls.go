package federationapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// LoadCertificate reads the federation listener's certificate and key (PEM). When generate
// is set and the files do not exist yet, it first writes a self-signed certificate for the
// host of serverName there, so that later starts reuse it.
func LoadCertificate(certPath, keyPath string, serverName spec.ServerName, generate bool) (tls.Certificate, error) {
	if generate {
		if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
			if err := writeSelfSigned(certPath, keyPath, serverName); err != nil {
				return tls.Certificate{}, fmt.Errorf("create self-signed federation certificate: %w", err)
			}
		}
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("federation TLS certificate: %w", err)
	}
	return cert, nil
}

// writeSelfSigned writes a self-signed ECDSA P-256 certificate, valid ten years, for the host
// of serverName (an IP address or a DNS name; the port is not part of a certificate).
func writeSelfSigned(certPath, keyPath string, serverName spec.ServerName) error {
	host, _, ok := spec.ParseAndValidateServerName(serverName)
	if !ok {
		return fmt.Errorf("invalid server name %q", serverName)
	}
	if len(host) > 1 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return err
	}
	// The key first: a certificate without its key would not be regenerated.
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// LoadCertPool returns the system's roots plus the certificates of the PEM file caPath
// (none when caPath is empty), the authorities trusted for outbound federation.
func LoadCertPool(caPath string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caPath == "" {
		return pool, nil
	}
	pemBytes, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("federation.tls_ca: %w", err)
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("federation.tls_ca: %s holds no PEM certificate", caPath)
	}
	return pool, nil
}
