package store

import (
	"errors"
	"testing"
)

// TestBuildHost records the host of an app's builds: none at first, the
// latest one after, ErrAppNotFound for a missing app.
func TestBuildHost(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.CreateApp(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		set  string // "" reads only
		want string
	}{
		{name: "before any build", want: ""},
		{name: "first build", set: "host-1", want: "host-1"},
		{name: "moved", set: "host-2", want: "host-2"},
	}
	for _, st := range steps {
		if st.set != "" {
			if err := s.SetBuildHost(ctx, "cached", st.set); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if got, err := s.BuildHost(ctx, "cached"); err != nil || got != st.want {
			t.Errorf("%s: BuildHost = %q, %v; want %q", st.name, got, err, st.want)
		}
	}
	if _, err := s.BuildHost(ctx, "nope"); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("BuildHost of a missing app: %v", err)
	}
	if err := s.SetBuildHost(ctx, "nope", "host-1"); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("SetBuildHost of a missing app: %v", err)
	}
}
