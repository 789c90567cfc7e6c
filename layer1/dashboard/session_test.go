package dashboard

import (
	"crypto/sha256"
	"testing"
	"time"
)

func TestSessionLife(t *testing.T) {
	t.Parallel()
	const idle, maxAge = time.Hour, 3 * time.Hour
	for _, tc := range []struct {
		name string
		// uses are the times, after sign-in, of the requests before the
		// last one at check.
		uses  []time.Duration
		check time.Duration
		live  bool
	}{
		{"fresh", nil, time.Minute, true},
		{"idle just under the limit", nil, idle - time.Second, true},
		{"idle to the limit", nil, idle, false},
		{"kept alive by use", []time.Duration{50 * time.Minute, 100 * time.Minute}, 150 * time.Minute, true},
		{"busy past the maximum age", []time.Duration{time.Hour - time.Second, 2*time.Hour - 2*time.Second, 3*time.Hour - 3*time.Second}, maxAge, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
			now := start
			s := newSessions(idle, maxAge, 10)
			s.now = func() time.Time { return now }
			id, sess := s.create(sha256.Sum256([]byte("gty_x")))
			if got := s.expires(sess); !got.Equal(start.Add(idle)) {
				t.Fatalf("a new session expires at %v, want %v", got, start.Add(idle))
			}
			for _, u := range tc.uses {
				now = start.Add(u)
				if _, ok := s.get(id); !ok {
					t.Fatalf("the session ended at +%v", u)
				}
			}
			now = start.Add(tc.check)
			if _, ok := s.get(id); ok != tc.live {
				t.Fatalf("live at +%v = %v, want %v", tc.check, ok, tc.live)
			}
			if !tc.live && s.len() != 0 {
				t.Errorf("an expired session is still kept")
			}
		})
	}
}

func TestSessionsBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, 12*time.Hour, 3)
	s.now = func() time.Time { return now }
	var ids []string
	for i := range 3 {
		now = now.Add(time.Second)
		id, _ := s.create(sha256.Sum256([]byte{byte(i)}))
		ids = append(ids, id)
	}
	// The first session is used last, so the second is the one to go.
	now = now.Add(time.Second)
	if _, ok := s.get(ids[0]); !ok {
		t.Fatal("session 0 ended")
	}
	now = now.Add(time.Second)
	fourth, _ := s.create(sha256.Sum256([]byte("4")))
	if s.len() != 3 {
		t.Fatalf("%d sessions kept, want at most 3", s.len())
	}
	for i, id := range append(ids, fourth) {
		_, ok := s.get(id)
		if want := i != 1; ok != want {
			t.Errorf("session %d live = %v, want %v", i, ok, want)
		}
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	s := newSessions(time.Hour, time.Hour, 10)
	_, a := s.create(sha256.Sum256([]byte("a")))
	_, b := s.create(sha256.Sum256([]byte("a")))
	for _, tc := range []struct {
		name, got string
		ok        bool
	}{
		{"its own token", a.csrf, true},
		{"none", "", false},
		{"another session's", b.csrf, false},
		{"a prefix", a.csrf[:10], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok := a.validCSRF(tc.got); ok != tc.ok {
				t.Errorf("validCSRF = %v, want %v", ok, tc.ok)
			}
		})
	}
}
