package hostusage

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestReadCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       CPUTimes
		wantErr    bool
	}{
		{"kernel 6", "cpu  100 10 50 800 40 5 5 0 0 0\ncpu0 50 5 25 400 20 2 3 0 0 0\nintr 1\n", CPUTimes{Busy: 170, Total: 1010}, false},
		{"old kernel, four fields", "cpu 1 2 3 4\n", CPUTimes{Busy: 6, Total: 10}, false},
		{"no cpu line", "intr 1\n", CPUTimes{}, true},
		{"garbage", "cpu a b c d\n", CPUTimes{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "stat"), []byte(tc.stat), 0o644)
			got, err := ReadCPU(dir)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ReadCPU = %+v, %v; want %+v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if c := (CPUTimes{Busy: 150, Total: 1200}).Cores(CPUTimes{Busy: 50, Total: 1000}, 2); math.Abs(c-1) > 1e-9 {
		t.Errorf("Cores = %v, want 1 (half of 2 cores busy)", c)
	}
	if c := (CPUTimes{Busy: 1, Total: 1}).Cores(CPUTimes{Busy: 1, Total: 1}, 2); c != 0 {
		t.Errorf("Cores over no time = %v, want 0", c)
	}
}

func TestReadMemory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "meminfo"), []byte("MemTotal:       24000 kB\nMemFree:  100 kB\nMemAvailable:   16000 kB\n"), 0o644)
	m, err := ReadMemory(dir)
	if err != nil || m.Total != 24000<<10 || m.Available != 16000<<10 || m.Used() != 8000<<10 {
		t.Fatalf("ReadMemory = %+v (used %d), %v", m, m.Used(), err)
	}
	os.WriteFile(filepath.Join(dir, "meminfo"), []byte("nothing\n"), 0o644)
	if _, err := ReadMemory(dir); err == nil {
		t.Error("ReadMemory without MemTotal: no error")
	}
}

// TestThisHost reads the real figures of the machine the test runs on.
func TestThisHost(t *testing.T) {
	if _, err := ReadCPU(""); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMemory("")
	if err != nil || m.Total == 0 || m.Used() == 0 {
		t.Fatalf("memory %+v, %v", m, err)
	}
	d, err := ReadDisk(t.TempDir())
	if err != nil || d.Total == 0 || d.Used() == 0 || d.Fraction() <= 0 || d.Fraction() > 1 {
		t.Fatalf("disk %+v, %v", d, err)
	}
	if _, err := ReadDisk(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadDisk of a missing path: no error")
	}
}
