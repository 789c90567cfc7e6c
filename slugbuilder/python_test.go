package slugbuilder

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testWheel builds a pure-Python wheel of the package gantry_slugtest 1.0.
func testWheel(t *testing.T) []byte {
	t.Helper()
	files := []struct{ name, data string }{
		{"gantry_slugtest/__init__.py", "GREETING = 'hello from a wheel'\n"},
		{"gantry_slugtest-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: gantry-slugtest\nVersion: 1.0\n"},
		{"gantry_slugtest-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: slugbuilder-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.data)); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(f.data))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.data))
	}
	record.WriteString("gantry_slugtest-1.0.dist-info/RECORD,,\n")
	w, err := zw.Create("gantry_slugtest-1.0.dist-info/RECORD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(record.String())); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// packageIndex serves a PEP 503 "simple" index holding one wheel.
func packageIndex(t *testing.T) string {
	t.Helper()
	wheel := testWheel(t)
	sum := sha256.Sum256(wheel)
	const file = "gantry_slugtest-1.0-py3-none-any.whl"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /simple/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!DOCTYPE html><html><body><a href="/simple/gantry-slugtest/">gantry-slugtest</a></body></html>`)
	})
	mux.HandleFunc("GET /simple/gantry-slugtest/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!DOCTYPE html><html><body><a href="/files/%s#sha256=%s">%s</a></body></html>`, file, hex.EncodeToString(sum[:]), file)
	})
	mux.HandleFunc("GET /files/"+file, func(w http.ResponseWriter, r *http.Request) {
		w.Write(wheel)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/simple/"
}

// pythonApp makes a Python app whose requirements.txt lists reqs.
func pythonApp(t *testing.T, reqs string) string {
	t.Helper()
	dir := app(t, "python")
	if err := os.WriteFile(filepath.Join(dir, "requirements.txt"), []byte(reqs), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPythonInstallsRequirements(t *testing.T) {
	needsTools(t)
	t.Parallel()
	index := packageIndex(t)
	b := build(t, pythonApp(t, "# from the test index\ngantry-slugtest==1.0\n"), func(c *Config) {
		c.Env = map[string]string{"PIP_INDEX_URL": index}
		withCache(filepath.Join(t.TempDir(), "cache.tgz"))(c)
	})
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	if !strings.Contains(b.out, "-----> Installing requirements.txt with pip from "+index+" (PIP_INDEX_URL)") ||
		!strings.Contains(b.out, "Successfully installed gantry-slugtest-1.0") {
		t.Errorf("output lacks the install:\n%s", b.out)
	}
	slug := readSlug(t, b)
	var installed bool
	for name, e := range slug {
		if strings.HasSuffix(name, "site-packages/gantry_slugtest/__init__.py") && strings.Contains(e.data, "hello from a wheel") {
			installed = true
		}
	}
	if !installed {
		t.Error("the slug lacks the installed package")
	}
	profile := slug[".profile.d/python.sh"].data
	if !strings.Contains(profile, "export VIRTUAL_ENV=") || !strings.Contains(profile, `export PATH="$VIRTUAL_ENV/bin:$PATH"`) {
		t.Errorf(".profile.d/python.sh:\n%s", profile)
	}
}

func TestPythonIndexUnreachable(t *testing.T) {
	needsTools(t)
	t.Parallel()
	// A port that was just free: nothing answers there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	index := "http://" + l.Addr().String() + "/simple/"
	l.Close()
	b := build(t, pythonApp(t, "gantry-slugtest==1.0\n"), func(c *Config) {
		c.Env = map[string]string{"PIP_INDEX_URL": index}
	})
	if !errors.Is(b.err, ErrCompile) {
		t.Fatalf("err = %v, want ErrCompile\n%s", b.err, b.out)
	}
	if !strings.Contains(b.out, " !     compile failed: buildpack gantry/python: dependencies were not installed: the package index "+index+" (PIP_INDEX_URL) does not answer") {
		t.Errorf("output does not say why:\n%s", b.out)
	}
}
