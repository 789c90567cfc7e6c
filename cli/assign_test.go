package cli

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestParseAssignment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg       string
		wantKey   string
		wantValue string
		wantErr   string
	}{
		{arg: "A=1", wantKey: "A", wantValue: "1"},
		{arg: "DATABASE_URL=postgres://u:p@h/db?sslmode=disable", wantKey: "DATABASE_URL", wantValue: "postgres://u:p@h/db?sslmode=disable"},
		{arg: "EQ=a=b=c", wantKey: "EQ", wantValue: "a=b=c"},
		{arg: "EMPTY=", wantKey: "EMPTY", wantValue: ""},
		{arg: "_x9=with spaces ", wantKey: "_x9", wantValue: "with spaces "},
		{arg: "NL=a\nb", wantKey: "NL", wantValue: "a\nb"},
		{arg: "A", wantErr: `invalid argument "A": expected KEY=VALUE`},
		{arg: "", wantErr: `invalid argument "": expected KEY=VALUE`},
		{arg: "=1", wantErr: `invalid argument "=1": the name is empty`},
		{arg: "1A=1", wantErr: `invalid argument "1A=1": "1A" is not a valid config var name`},
		{arg: "A-B=1", wantErr: `"A-B" is not a valid config var name`},
		{arg: "A B=1", wantErr: `"A B" is not a valid config var name`},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			k, v, err := parseAssignment(tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseAssignment(%q) = %q, %q, %v; want error %q", tt.arg, k, v, err, tt.wantErr)
				}
				return
			}
			if err != nil || k != tt.wantKey || v != tt.wantValue {
				t.Fatalf("parseAssignment(%q) = %q, %q, %v; want %q, %q", tt.arg, k, v, err, tt.wantKey, tt.wantValue)
			}
		})
	}
}

func FuzzParseAssignment(f *testing.F) {
	for _, s := range []string{"A=1", "A==", "=", "", "A", "1=2", "_=x=y", "a b=c", "K=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		k, v, err := parseAssignment(arg)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(arg)) {
				t.Fatalf("error %q does not name the argument %q", err, arg)
			}
			return
		}
		if k+"="+v != arg {
			t.Fatalf("parseAssignment(%q) = %q, %q: does not rebuild the argument", arg, k, v)
		}
		if !types.ConfigVarNameRegexp.MatchString(k) {
			t.Fatalf("parseAssignment(%q) accepted the invalid name %q", arg, k)
		}
		if strings.Contains(k, "=") {
			t.Fatalf("parseAssignment(%q): key %q holds '='", arg, k)
		}
	})
}
