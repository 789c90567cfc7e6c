package types

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	routertypes "github.com/gantryhq/gantry/router/types"
)

func TestValidateAppName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
		why  string
	}{
		{"demo", true, ""},
		{"ab", true, ""},
		{"brave-otter-4821", true, ""},
		{"a" + strings.Repeat("b", 29), true, ""},
		{"a-b-c", true, ""},
		{"", false, "too short"},
		{"a", false, "too short"},
		{"a" + strings.Repeat("b", 30), false, "too long"},
		{"Demo", false, "start with a lowercase letter"},
		{"1demo", false, "start with a lowercase letter"},
		{"-demo", false, "start with a lowercase letter"},
		{"demo-", false, "end with a dash"},
		{"de_mo", false, "only lowercase letters"},
		{"déjà", false, "only lowercase letters"},
		{"demo app", false, "only lowercase letters"},
		{"demo\n", false, "only lowercase letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAppName(tt.name)
			if tt.ok {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("err %q does not say %q", err, tt.why)
			}
		})
	}
}

func FuzzValidateAppName(f *testing.F) {
	for _, s := range []string{"demo", "a", "demo-", "Demo", "brave-otter-4821", "a-b", "é", "\x00", strings.Repeat("z", 31)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateAppName(name)
		if err == nil {
			if !AppNameRegexp.MatchString(name) || strings.HasSuffix(name, "-") {
				t.Fatalf("accepted %q, which the rules reject", name)
			}
			return
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("rejection of %q is not ErrInvalid: %v", name, err)
		}
		if AppNameRegexp.MatchString(name) && !strings.HasSuffix(name, "-") {
			t.Fatalf("rejected the valid name %q: %v", name, err)
		}
	})
}

func TestValidateConfigVar(t *testing.T) {
	tests := []struct {
		name, key, value string
		why              string // "" when valid
	}{
		{"plain", "DATABASE_URL", "postgres://x", ""},
		{"underscore first", "_X", "", ""},
		{"lowercase", "port", "5000", ""},
		{"max value", "BIG", strings.Repeat("v", MaxConfigValue), ""},
		{"empty name", "", "v", "invalid config var name"},
		{"digit first", "1X", "v", "invalid config var name"},
		{"dash", "MY-VAR", "v", "invalid config var name"},
		{"equals", "A=B", "v", "invalid config var name"},
		{"value too large", "BIG", strings.Repeat("v", MaxConfigValue+1), "the limit is 32768"},
		{"NUL", "N", "a\x00b", "NUL"},
		{"invalid UTF-8", "U", "\xff", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateConfigVar(tt.key, tt.value)
			if tt.why == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.why)
			}
		})
	}
}

func TestValidateProcessType(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"w", true},
		{"clock_2", true},
		{"release-phase", true},
		{"a" + strings.Repeat("b", 29), true},
		{"", false},
		{"Web", false},
		{"2web", false},
		{"_web", false},
		{"we b", false},
		{"web/x", false},
		{"a" + strings.Repeat("b", 30), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateProcessType(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateProcessType(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), strconv.Quote(tt.name))) {
				t.Errorf("err = %v, want ErrInvalid naming the type", err)
			}
		})
	}
}

func TestValidateDomain(t *testing.T) {
	long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61) // 253 bytes
	tests := []struct {
		domain string
		why    string // "" when valid
	}{
		{"www.example.test", ""},
		{"localhost", ""},
		{"demo.localhost", ""},
		{"*.example.test", ""},
		{"*.test", ""},
		{"a-b.x1.example", ""},
		{"xn--bcher-kva.example", ""},
		{long, ""},
		{"", "empty"},
		{long + "c", "longer than 253"},
		{"*.", "wildcard needs a domain"},
		{"*", "only as the first label"},
		{"example.test.", "trailing dot"},
		{"a..b", "empty label"},
		{".a", "empty label"},
		{"a.*.test", "only as the first label"},
		{"*.*.test", "only as the first label"},
		{strings.Repeat("a", 64) + ".test", "longer than 63"},
		{"-a.test", "starts or ends with a dash"},
		{"a-.test", "starts or ends with a dash"},
		{"WWW.example.test", "lower-case"},
		{"a_b.test", "lower-case"},
		{"a.test:80", "lower-case"},
		{"bücher.test", "lower-case"},
		{"a b.test", "lower-case"},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			err := ValidateDomain(tt.domain)
			if tt.why == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if rerr := routertypes.ValidDomain(tt.domain); rerr != nil {
					t.Errorf("the router rejects a domain the API accepts: %v", rerr)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.why)
			}
		})
	}
}

// FuzzValidateDomain checks that every domain the API accepts is one the
// router accepts too, and that rejections are ErrInvalid.
func FuzzValidateDomain(f *testing.F) {
	for _, s := range []string{"www.example.test", "*.example.test", "localhost", "a..b", "*.", "A.b", "-a.b", "a.*.b", "\x00", strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, domain string) {
		err := ValidateDomain(domain)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection of %q is not ErrInvalid: %v", domain, err)
			}
			return
		}
		if rerr := routertypes.ValidDomain(domain); rerr != nil {
			t.Fatalf("accepted %q, which the router rejects: %v", domain, rerr)
		}
		if len(domain) > MaxDomain || strings.ToLower(domain) != domain || strings.Count(domain, "*") > 1 {
			t.Fatalf("accepted %q", domain)
		}
	})
}

func TestValidateProcesses(t *testing.T) {
	many := map[string]string{}
	for i := range MaxProcessTypes + 1 {
		many["p"+strconv.Itoa(i)] = "/w"
	}
	hundred := map[string]string{}
	for i := range MaxProcessTypes {
		hundred["p"+strconv.Itoa(i)] = "/w"
	}
	large := map[string]string{}
	for i := range 3 {
		large["p"+strconv.Itoa(i)] = strings.Repeat("x", MaxProcessCommand)
	}
	tests := []struct {
		name     string
		commands map[string]string
		why      string // "" when valid
	}{
		{"one", map[string]string{"web": "./server"}, ""},
		{"a hundred", hundred, ""},
		{"too many", many, "101 process types, the limit is 100"},
		{"bad type", map[string]string{"Web": "x"}, `invalid process type "Web"`},
		{"long command", map[string]string{"web": strings.Repeat("x", MaxProcessCommand+1)}, "the command is 32769 bytes, the limit is 32768"},
		{"NUL", map[string]string{"web": "a\x00b"}, "NUL byte"},
		{"invalid UTF-8", map[string]string{"web": "a\xffb"}, "invalid UTF-8"},
		{"too large in all", large, "the limit is 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateProcesses(tt.commands)
			switch {
			case tt.why == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.why != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.why)):
				t.Errorf("err = %v, want invalid: ...%s...", err, tt.why)
			}
		})
	}
}

func TestValidateRouteDomain(t *testing.T) {
	tests := []struct {
		domain, why string // why "" when valid
	}{
		{"www.example.com", ""},
		{"*.example.com", ""},
		{"localhost.example.com", ""},
		{"example", ""},
		{"*.com", "at least two labels below the *"},
		{"localhost", "reserved"},
		{"*.localhost", "reserved"},
		{"demo.localhost", "reserved"},
		{"a.b.localhost", "reserved"},
		{"127.0.0.1", "IP address"},
		{"1.2.3.999", "IP address"},
		{"12", "IP address"},
		{"::1", "use lower-case letters"},
		{"Www.example.com", "use lower-case letters"},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			err := ValidateRouteDomain(tt.domain, "localhost")
			switch {
			case tt.why == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.why != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.why)):
				t.Errorf("err = %v, want invalid: ...%s...", err, tt.why)
			}
		})
	}
}

func TestValidateConfigChange(t *testing.T) {
	big := map[string]string{"A": strings.Repeat("x", MaxConfigTotal)}
	small := map[string]string{"A": "1"}
	if err := ValidateConfigChange(small, big); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "65537 bytes") {
		t.Errorf("growing over the limit: %v", err)
	}
	if err := ValidateConfigChange(nil, map[string]string{"A": strings.Repeat("x", MaxConfigTotal-1)}); err != nil {
		t.Errorf("exactly at the limit: %v", err)
	}
	bigger := map[string]string{"A": strings.Repeat("x", MaxConfigTotal), "B": "2"}
	if err := ValidateConfigChange(bigger, big); err != nil {
		t.Errorf("shrinking while over the limit: %v", err)
	}
}
