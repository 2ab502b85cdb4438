package portal

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
)

// session is one signed-in person's: who, until when, and the token its
// forms must carry (CSRF).
type session struct {
	principal auth.Principal
	// role is the person's portal role: RoleViewer or RoleFinance.
	role    string
	csrf    string
	expires time.Time
}

// sessions are kept in the collector's memory, by random id: signing out
// ends one at once, and a restart ends them all. Their number is bounded,
// so that sign-ins cannot exhaust memory.
type sessions struct {
	mu    sync.Mutex
	byID  map[string]*session
	ttl   time.Duration
	limit int
}

var errTooManySessions = errors.New("too many people are signed in to the portal; try again later")

// randomID returns 256 random bits, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start opens a session for p in role and returns its id.
func (s *sessions) start(p auth.Principal, role string, now time.Time) (string, *session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.limit {
		for id, ss := range s.byID {
			if !now.Before(ss.expires) {
				delete(s.byID, id)
			}
		}
		if len(s.byID) >= s.limit {
			return "", nil, errTooManySessions
		}
	}
	id := randomID()
	ss := &session{principal: p, role: role, csrf: randomID(), expires: now.Add(s.ttl)}
	s.byID[id] = ss
	return id, ss, nil
}

// get returns the live session of id.
func (s *sessions) get(id string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	if !now.Before(ss.expires) {
		delete(s.byID, id)
		return nil, false
	}
	return ss, true
}

// end closes the session of id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// sameToken compares two CSRF tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
