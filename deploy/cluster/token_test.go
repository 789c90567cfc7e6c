package cluster

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

var (
	secret = strings.Repeat("ab", 16)
	fp     = strings.Repeat("0f", 32)
)

func TestParseToken(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"a token", tokenPrefix + secret + "." + fp, true},
		{"spaces around", "  " + tokenPrefix + secret + "." + fp + "\n", true},
		{"no prefix", secret + "." + fp, false},
		{"short secret", tokenPrefix + secret[1:] + "." + fp, false},
		{"upper case", tokenPrefix + strings.ToUpper(secret) + "." + fp, false},
		{"no fingerprint", tokenPrefix + secret, false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseToken(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseToken(%q) = %v, %v; want ok %v", tc.in, tok, err, tc.ok)
			}
			if tc.ok && (tok.Secret != secret || tok.CAFingerprint != fp || tok.String() != strings.TrimSpace(tc.in)) {
				t.Errorf("ParseToken(%q) = %+v", tc.in, tok)
			}
		})
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add(tokenPrefix + secret + "." + fp)
	f.Add("gantryjoin1..")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("ParseToken(%q) = %+v, but its String %q reads back as %+v, %v", s, tok, tok.String(), again, err)
		}
	})
}

// TestCheckToken stores tokens in a real etcd and checks them: a valid
// one, an unknown one, an expired one, each with its answer.
func TestCheckToken(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	etcd := testenv.Etcd(t)
	space := keyspace.MustNew("c-12345678")
	valid, expires, err := CreateToken(t.Context(), etcd, space, fp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(expires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("a token of one hour expires in %s", d)
	}
	if valid.CAFingerprint != fp {
		t.Errorf("token %v does not carry the fingerprint", valid)
	}
	short, _, err := CreateToken(t.Context(), etcd, space, fp, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []time.Duration{0, -time.Second, MaxTokenTTL + time.Second} {
		if _, _, err := CreateToken(t.Context(), etcd, space, fp, ttl); err == nil {
			t.Errorf("CreateToken with a TTL of %s succeeded", ttl)
		}
	}
	for _, tc := range []struct {
		name, secret string
		now          time.Time
		want         string // "" for accepted
	}{
		{"valid", valid.Secret, time.Now(), ""},
		{"unknown", strings.Repeat("cd", 16), time.Now(), "not one of this cluster's"},
		{"expired", short.Secret, time.Now().Add(2 * time.Second), "expired at"},
		{"another cluster's", valid.Secret, time.Now(), "not one of this cluster's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := space
			if tc.name == "another cluster's" {
				sp = keyspace.MustNew("c-87654321")
			}
			err := CheckToken(t.Context(), etcd, sp, tc.secret, tc.now)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var apiErr *types.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !strings.Contains(apiErr.Message, tc.want) {
				t.Fatalf("CheckToken: %v; want a 403 saying %q", err, tc.want)
			}
		})
	}
}
