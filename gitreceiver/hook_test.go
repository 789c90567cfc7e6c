package gitreceiver

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func pkt(lines ...string) string {
	var b bytes.Buffer
	if err := writePktLines(&b, lines...); err != nil {
		panic(err)
	}
	return b.String()
}

func TestProcReceiveHandshake(t *testing.T) {
	old, new := strings.Repeat("a", 40), strings.Repeat("b", 40)
	cases := []struct {
		name    string
		in      string
		want    int // ref updates
		wantErr string
	}{
		{"one update", pkt("version=1\x00atomic") + pkt(old+" "+new+" refs/heads/main"), 1, ""},
		{"two updates", pkt("version=1") + pkt(old+" "+new+" refs/heads/main", zeroID+" "+new+" refs/heads/x"), 2, ""},
		{"other version", pkt("version=2") + pkt(), 0, "unsupported"},
		{"no version", pkt(), 0, "no version"},
		{"bad length", "zzzz", 0, "bad pkt-line length"},
		{"truncated", "0010vers", 0, "EOF"},
		{"bad update", pkt("version=1") + pkt("nonsense"), 0, "is not `<old> <new> <ref>`"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := procReceiveHandshake(bufio.NewReader(strings.NewReader(tc.in)), &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d updates, want %d", len(got), tc.want)
			}
			if out.String() != "000eversion=1\n0000" {
				t.Fatalf("answer %q", out.String())
			}
		})
	}
}

func FuzzReadPktLines(f *testing.F) {
	f.Add(pkt("version=1\x00atomic"))
	f.Add("0000")
	f.Add("0004")
	f.Add("fff0abc")
	f.Fuzz(func(t *testing.T, in string) {
		lines, err := readPktLines(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		// What was read writes back as the same packets.
		var b bytes.Buffer
		if err := writePktLines(&b, lines...); err != nil {
			return
		}
		again, err := readPktLines(bufio.NewReader(&b))
		if err != nil || len(again) != len(lines) {
			t.Fatalf("round trip of %q: %q, %v", lines, again, err)
		}
	})
}
