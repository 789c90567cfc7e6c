package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// job is the part of `gantry ps --json` the tests read.
type job struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	State    string `json:"state"`
	Addr     string `json:"addr"`
	Restarts int    `json:"restarts"`
}

func (p *platform) jobs(app string) []job {
	p.t.Helper()
	var jobs []job
	if err := json.Unmarshal([]byte(p.ok("ps", "-a", app, "--json")), &jobs); err != nil {
		p.t.Fatalf("ps --json: %v", err)
	}
	return jobs
}

func upCount(jobs []job) int {
	n := 0
	for _, j := range jobs {
		if j.State == "up" {
			n++
		}
	}
	return n
}

// appContainers lists the running containers of app in the platform's
// cluster, by ID.
func (p *platform) appContainers(docker *client.Client, app string) map[string]container.Summary {
	p.t.Helper()
	id, err := os.ReadFile(filepath.Join(p.data, "cluster-id"))
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+strings.TrimSpace(string(id))),
		filters.Arg("label", keyspace.LabelApp+"="+app),
	)})
	if err != nil {
		p.t.Fatal(err)
	}
	out := map[string]container.Summary{}
	for _, c := range list {
		out[c.ID] = c
	}
	return out
}

// get sends a GET through the router with the given Host header.
func (p *platform) get(host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, p.httpURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestImageApp runs an image release as a user would: create, release,
// scale, ps, route, kill, restart gantryd, scale to zero.
func TestImageApp(t *testing.T) {
	p := newPlatform(t)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))

	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")

	// Bad input is refused with a clear message and changes nothing.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown process type", []string{"scale", "-a", "web1", "worker=1"}, "worker"},
		{"negative count", []string{"scale", "-a", "web1", "web=-1"}, "web=-1"},
		{"release without image", []string{"release", "create", "-a", "web1", "--process", "web=serve"}, "image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := p.run("", nil, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q: want a refusal naming %q", r.code, r.stderr, tc.want)
			}
		})
	}

	out := p.ok("scale", "-a", "web1", "web=3")
	if !strings.Contains(out, "web=3") {
		t.Fatalf("scale output: %s", out)
	}
	jobs := p.jobs("web1")
	if upCount(jobs) != 3 {
		t.Fatalf("after scale web=3: %+v", jobs)
	}
	for _, j := range jobs {
		if code, _, err := getURL("http://" + j.Addr + "/"); err != nil || code != http.StatusOK {
			t.Fatalf("job %s at %s: %d %v", j.ID, j.Addr, code, err)
		}
	}
	if out := p.ok("ps", "-a", "web1"); !strings.Contains(out, "web.1") || !strings.Contains(out, "up") {
		t.Fatalf("ps: %s", out)
	}

	// 300 requests through the router reach all 3 instances.
	seen := map[string]int{}
	for range 300 {
		code, body, err := p.get("web1.localhost", "/")
		if err != nil || code != http.StatusOK {
			t.Fatalf("through the router: %d %v %q", code, err, body)
		}
		seen[strings.TrimSpace(body)]++
	}
	if len(seen) != 3 {
		t.Fatalf("300 requests reached %d instances: %v", len(seen), seen)
	}
	t.Logf("300 requests through the router: %v", seen)
	if code, body, _ := p.get("nosuchapp.localhost", "/"); code != http.StatusNotFound || !strings.Contains(strings.ToLower(body), "no app") {
		t.Fatalf("unknown host: %d %q", code, body)
	}

	// A custom domain, then HTTPS with its certificate chosen by SNI.
	p.ok("route", "add", "-a", "web1", "www.example.test")
	eventually(t, time.Minute, "the custom domain routed", func() bool {
		code, _, err := p.get("www.example.test", "/")
		return err == nil && code == http.StatusOK
	})
	certFile, keyFile, pool := selfSigned(t, "secure.example.test")
	p.ok("route", "add", "-a", "web1", "secure.example.test", "--cert", certFile, "--key", keyFile)
	eventually(t, time.Minute, "HTTPS for secure.example.test", func() bool {
		// The name resolves to the router's loopback address, as DNS
		// would point it at the platform.
		var d net.Dialer
		client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, p.httpsAddr)
			},
		}}
		resp, err := client.Get("https://secure.example.test/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && resp.ProtoMajor == 2
	})

	// docker kill of one job: a replacement comes up within seconds.
	before := p.appContainers(docker, "web1")
	if len(before) != 3 {
		t.Fatalf("%d containers, want 3", len(before))
	}
	var victim string
	for id := range before {
		victim = id
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := docker.ContainerKill(ctx, victim, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, 30*time.Second, "a replacement for the killed job", func() bool {
		cs := p.appContainers(docker, "web1")
		_, still := cs[victim]
		jobs := p.jobs("web1")
		restarted := false
		for _, j := range jobs {
			restarted = restarted || j.Restarts > 0
		}
		return !still && len(cs) == 3 && upCount(jobs) == 3 && restarted
	})

	// Ctrl-C on gantryd and up again: the same containers keep running,
	// never restarted.
	started := startTimes(t, docker, p.appContainers(docker, "web1"))
	p.terminate()
	p.start()
	eventually(t, 30*time.Second, "3 jobs up after the restart", func() bool { return upCount(p.jobs("web1")) == 3 })
	after := startTimes(t, docker, p.appContainers(docker, "web1"))
	if len(after) != 3 {
		t.Fatalf("%d containers after the restart, want 3", len(after))
	}
	for id, at := range started {
		if after[id] != at {
			t.Fatalf("container %s was not adopted as it was across the gantryd restart (started %q, now %q)", id[:12], at, after[id])
		}
	}

	p.ok("scale", "-a", "web1", "web=0")
	eventually(t, 30*time.Second, "no container of web1 left", func() bool { return len(p.appContainers(docker, "web1")) == 0 })
}

func getURL(url string) (int, string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// selfSigned writes a self-signed certificate and key for domain and
// returns their files and a pool that trusts the certificate.
func selfSigned(t *testing.T, domain string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// startTimes returns each container's start time, by ID.
func startTimes(t *testing.T, docker *client.Client, cs map[string]container.Summary) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := docker.ContainerInspect(ctx, id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out[id] = info.State.StartedAt
	}
	return out
}
