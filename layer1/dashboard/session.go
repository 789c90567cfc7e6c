package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one signed-in browser.
type session struct {
	// tokenSum is the SHA-256 of the API token that signed in: each
	// request checks that the token still exists.
	tokenSum [sha256.Size]byte
	// csrf is the token every change made with the session must carry.
	csrf string
	// created and lastUsed bound the session's life (see sessions.get).
	created, lastUsed time.Time
}

// sessions keeps the sessions in memory, by the SHA-256 of their IDs (a
// copy of the map reveals no usable ID). It is bounded: the session used
// least recently is ended to make room.
type sessions struct {
	idle, maxAge time.Duration
	max          int
	now          func() time.Time

	mu   sync.Mutex
	byID map[[sha256.Size]byte]*session
}

func newSessions(idle, maxAge time.Duration, max int) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, max: max, now: time.Now,
		byID: map[[sha256.Size]byte]*session{}}
}

// randomString returns 32 random bytes in unpadded base64url.
func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for the API token whose SHA-256 is tokenSum and
// returns its ID (the cookie's value) and the session.
func (s *sessions) create(tokenSum [sha256.Size]byte) (string, session) {
	id := randomString()
	now := s.now()
	sess := &session{tokenSum: tokenSum, csrf: randomString(), created: now, lastUsed: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	for len(s.byID) >= s.max {
		s.evictLocked()
	}
	s.byID[sha256.Sum256([]byte(id))] = sess
	return id, *sess
}

// get returns the live session with ID id and marks it used. A session
// ends SessionIdle after its last use and SessionMaxAge after it started.
func (s *sessions) get(id string) (session, bool) {
	key := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[key]
	if !ok {
		return session{}, false
	}
	if s.expired(sess, now) {
		delete(s.byID, key)
		return session{}, false
	}
	sess.lastUsed = now
	return *sess, true
}

// expires returns when sess ends if it is not used again.
func (s *sessions) expires(sess session) time.Time {
	idle := sess.lastUsed.Add(s.idle)
	if abs := sess.created.Add(s.maxAge); abs.Before(idle) {
		return abs
	}
	return idle
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return !now.Before(s.expires(*sess))
}

// end ends the session with ID id, if there is one.
func (s *sessions) end(id string) {
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, key)
}

// len returns the number of sessions kept, expired ones included until
// the next sweep.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// sweepLocked drops the expired sessions.
func (s *sessions) sweepLocked(now time.Time) {
	for k, sess := range s.byID {
		if s.expired(sess, now) {
			delete(s.byID, k)
		}
	}
}

// evictLocked drops the session used least recently.
func (s *sessions) evictLocked() {
	var oldest [sha256.Size]byte
	var at time.Time
	first := true
	for k, sess := range s.byID {
		if first || sess.lastUsed.Before(at) {
			oldest, at, first = k, sess.lastUsed, false
		}
	}
	delete(s.byID, oldest)
}

// validCSRF reports whether got is the session's CSRF token, in constant
// time.
func (sess session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}
