package gitreceiver

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		raw     string
		service string
		app     string
		ok      bool
	}{
		{"git-receive-pack 'demo.git'", "git-receive-pack", "demo", true},
		{"git-receive-pack '/demo.git'", "git-receive-pack", "demo", true},
		{"git-receive-pack demo", "git-receive-pack", "demo", true},
		{"git-upload-pack 'demo.git'", "git-upload-pack", "demo", true},
		{"git receive-pack 'my-app.git'", "git-receive-pack", "my-app", true},
		{`git-receive-pack "demo.git"`, "git-receive-pack", "demo", true},
		{"", "", "", false},
		{"ls -la", "", "", false},
		{"git-upload-archive 'demo.git'", "", "", false},
		{"git-receive-pack", "", "", false},
		{"git-receive-pack 'a.git' 'b.git'", "", "", false},
		{"git-receive-pack '../etc/passwd'", "", "", false},
		{"git-receive-pack 'Demo.git'", "", "", false},
		{"git-receive-pack 'x'", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseCommand(tc.raw)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseCommand(%q) = %+v, %v; want ok=%v", tc.raw, got, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadCommand) {
					t.Fatalf("error %v is not ErrBadCommand", err)
				}
				return
			}
			if got.Service != tc.service || got.App != tc.app {
				t.Fatalf("ParseCommand(%q) = %+v", tc.raw, got)
			}
		})
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"git-receive-pack 'demo.git'", "git upload-pack /x.git", "", "'", "git-receive-pack ''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseCommand(raw)
		if err != nil {
			return
		}
		if types.ValidateAppName(c.App) != nil || strings.ContainsAny(c.App, "/.") {
			t.Fatalf("accepted app %q from %q", c.App, raw)
		}
		if c.Service != "git-receive-pack" && c.Service != "git-upload-pack" {
			t.Fatalf("accepted service %q", c.Service)
		}
	})
}

const (
	idA = "1111111111111111111111111111111111111111"
	idB = "2222222222222222222222222222222222222222"
)

func TestDeployRef(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    string
		errLike string
		reason  string
	}{
		{"main", idA + " " + idB + " refs/heads/main\n", "refs/heads/main", "", ""},
		{"master first push", zeroID + " " + idB + " refs/heads/master\n", "refs/heads/master", "", ""},
		{"other branch", idA + " " + idB + " refs/heads/feature\n", "", "only the main and master branches deploy", "not a deploy branch"},
		{"tag", zeroID + " " + idB + " refs/tags/v1\n", "", "only the main and master", "not a deploy branch"},
		{"delete main", idA + " " + zeroID + " refs/heads/main\n", "", "deleting the deploy branch is not supported", "deleting the deploy branch is not supported"},
		{"two deploy branches", idA + " " + idB + " refs/heads/main\n" + idA + " " + idB + " refs/heads/master\n", "", "one deploy branch", "one deploy branch per push"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ups, err := ParseRefUpdates(tc.input)
			if err != nil {
				t.Fatal(err)
			}
			got, err := deployRef(ups)
			if tc.errLike != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errLike) {
					t.Fatalf("err = %v, want %q", err, tc.errLike)
				}
				var rej *Rejection
				if !errors.As(err, &rej) || rej.Reason != tc.reason {
					t.Fatalf("err = %#v, want a rejection with reason %q", err, tc.reason)
				}
				return
			}
			if err != nil || got.Name != tc.want {
				t.Fatalf("deployRef = %+v, %v", got, err)
			}
		})
	}
}

func FuzzParseRefUpdates(f *testing.F) {
	f.Add(idA + " " + idB + " refs/heads/main\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		ups, err := ParseRefUpdates(s)
		if err != nil {
			return
		}
		for _, u := range ups {
			if !isObjectID(u.Old) || !isObjectID(u.New) || !strings.HasPrefix(u.Name, "refs/") {
				t.Fatalf("accepted %+v", u)
			}
		}
	})
}
